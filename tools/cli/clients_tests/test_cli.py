"""The CLI against a scripted service: every error class as one line and its exit code, all the
images of an n > 1 job, previews, unwrapped links, the pace the service asks, Ctrl-C, and never
a second job."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from clients.api import ExitCode, python_command
from clients_tests.fakes import (
    BLOB,
    JOB,
    SAS,
    SERVICE,
    Clock,
    Service,
    error,
    image,
    run_cli,
    saved,
    started,
    status,
)

# How the CLI names this interpreter in the commands it suggests (.venv/bin/python here).
PY = python_command()
GENERATE = ("generate", "--prompt", "a red apple")


def one_error_line(err: str, label: str = "error") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"{label}: ")
    return lines[0]


# --- following a job to the end ------------------------------------------------------------


def test_generate_wait_follows_each_change_and_ends_with_the_clocks_and_the_image(tmp_path):
    service = Service(
        polls=[
            status("queued", attempt=0),
            status("generating"),
            status("generating"),
            status("preview_available", previews=[{"index": 0, "url": f"{BLOB}/p.png{SAS}"}]),
            status("finalizing"),
            saved(),
        ]
    )
    out = tmp_path / "apple.png"
    run = run_cli(service, *GENERATE, "--size", "1024x1024", "--wait", "--out", str(out))
    assert run.code == ExitCode.OK, run.err
    assert len(service.requests("POST")) == 1
    assert service.requests("POST")[0].headers["x-functions-key"] == "k-1"
    body = service.requests("POST")[0].read()
    assert b'"prompt": "a red apple"' in body or b'"prompt":"a red apple"' in body
    states = re.findall(r"^ +[0-9.]+s  (\w+) ", run.out, flags=re.MULTILINE)
    assert states == ["queued", "generating", "preview_available", "finalizing", "saved"]
    assert "Generating: a sentence." in run.out  # the state's sentence, as the service says it
    for clock in ("connect", "first byte", "first partial image", "final image", "download"):
        assert clock in run.out
    assert "upload" in run.out
    assert f"image 0: 1024x1024 image/png, 10 bytes -> saved to {out}" in run.out
    assert out.read_bytes() == f"/devstoreaccount1/images/{JOB}/image.png".encode()
    assert "metadata" in run.out
    assert "k-1" not in run.out + run.err


def test_all_images_of_an_n_2_job_are_listed_and_saved_beside_out(tmp_path):
    service = Service(polls=[status("generating"), saved(n=2)])
    out = tmp_path / "sub" / "apple.png"
    run = run_cli(service, *GENERATE, "-n", "2", "--wait", "--out", str(out))
    assert run.code == ExitCode.OK, run.err
    second = tmp_path / "sub" / "apple-1.png"
    assert out.read_bytes().endswith(b"/image-0.png")
    assert second.read_bytes().endswith(b"/image-1.png")
    assert f"image 0: 1024x1024 image/png, 10 bytes -> saved to {out}" in run.out
    assert f"image 1: 1024x1024 image/png, 11 bytes -> saved to {second}" in run.out
    for k in range(2):
        assert f"  {image(k, 2)['url']}" in run.out.splitlines()


def test_out_dir_holds_every_image_under_the_job_id(tmp_path):
    service = Service(polls=[saved(n=3)])
    run = run_cli(service, "wait", JOB, "--out-dir", str(tmp_path / "images"))
    assert run.code == ExitCode.OK, run.err
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == [f"{JOB}-1.png", f"{JOB}-2.png", f"{JOB}.png"]
    assert not service.requests("POST")  # wait never starts a job


def test_without_out_the_images_are_listed_not_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_cli(Service(polls=[saved(n=2)]), "wait", JOB)
    assert run.code == ExitCode.OK
    assert "image 1: 1024x1024 image/png, 11 bytes" in run.out
    assert "saved to" not in run.out
    assert list(tmp_path.iterdir()) == []


def test_previews_are_saved_as_they_appear(tmp_path):
    first = {"index": 0, "url": f"{BLOB}/{JOB}/preview-1-0.png{SAS}"}
    second = {"index": 1, "url": f"{BLOB}/{JOB}/preview-1-1.png{SAS}"}
    service = Service(
        polls=[
            status("generating"),
            status("preview_available", previews=[first]),
            status("preview_available", previews=[first]),
            status("preview_available", previews=[first, second]),
            saved(previews=[first, second]),
        ]
    )
    folder = tmp_path / "previews"
    run = run_cli(service, *GENERATE, "--wait", "--previews-dir", str(folder))
    assert run.code == ExitCode.OK, run.err
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{JOB}-preview-1-0.png",
        f"{JOB}-preview-1-1.png",
    ]
    fetched = [r.url.path for r in service.seen if r.url.host == "blob.test"]
    assert fetched.count(f"/devstoreaccount1/images/{JOB}/preview-1-0.png") == 1  # once each
    assert "preview 1 saved to" in run.out


def test_a_preview_that_cannot_be_fetched_is_a_warning_and_the_job_goes_on(tmp_path):
    broken = {"index": 0, "url": f"{BLOB}/{JOB}/preview-1-0.png{SAS}"}
    service = Service(
        polls=[status("preview_available", previews=[broken]), saved(previews=[broken])],
        blobs={f"/devstoreaccount1/images/{JOB}/preview-1-0.png": httpx.Response(404)},
    )
    run = run_cli(service, "wait", JOB, "--previews-dir", str(tmp_path))
    assert run.code == ExitCode.OK
    assert run.err.count("warning: preview 0: its link answered HTTP 404") == 1


def test_a_failed_job_shows_its_error_and_exits_1():
    failure = {
        "layer": "model",
        "kind": "returned_error",
        "httpStatus": 400,
        "type": "invalid_request_error",
        "code": "moderation_blocked",
        "message": "Your request was rejected.",
        "requestId": "req-1",
    }
    service = Service(polls=[status("failed", failure="returned_error", error=failure)])
    run = run_cli(service, "wait", JOB)
    assert run.code == ExitCode.JOB_FAILED
    assert (
        "error: model HTTP 400 invalid_request_error moderation_blocked: Your request was "
        "rejected. (request id req-1)"
    ) in run.out


def test_a_cancelled_job_exits_3():
    assert run_cli(Service(polls=[status("cancelled")]), "wait", JOB).code == 3


def test_waiting_to_retry_shows_when_and_why():
    retry = {"at": "2099-01-01T00:00:00.000Z", "reason": "rate limited (429)"}
    service = Service(polls=[status("waiting_to_retry", retry=retry), saved()])
    run = run_cli(service, "wait", JOB)
    assert run.code == ExitCode.OK
    assert "waiting_to_retry" in run.out
    assert "(rate limited (429))" in run.out


# --- links ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 80])
def test_links_are_printed_whole_on_one_line_at_any_width(width):
    service = Service(polls=[saved(n=2)])
    run = run_cli(service, *GENERATE, "-n", "2", "--wait", width=width)
    lines = run.out.splitlines()
    for url in (image(0, 2)["url"], image(1, 2)["url"], f"{BLOB}/{JOB}/metadata.json{SAS}"):
        assert f"  {url}" in lines
    assert f"  {SERVICE}/api/images/{JOB}" in lines  # the status URL too


def test_status_shows_preview_links_whole():
    preview = {"index": 0, "url": f"{BLOB}/{JOB}/preview-1-0.png{SAS}"}
    run = run_cli(Service(polls=[status("preview_available", previews=[preview])]), "status", JOB)
    assert f"  {preview['url']}" in run.out.splitlines()


# --- the pace: Retry-After, capped; --poll-interval; never a second job ----------------------


def running(state: str, retry_after: str) -> httpx.Response:
    body = {"id": JOB, "state": state}
    return httpx.Response(202, json=body, headers={"retry-after": retry_after})


def test_retry_after_is_honoured_from_the_start_answer_on():
    service = Service(
        start=[started(retry_after="3")],
        polls=[
            running("queued", "1"),
            running("generating", "4"),
            saved(),
        ],
    )
    clock = Clock()
    run = run_cli(service, *GENERATE, "--wait", clock=clock)
    assert run.code == ExitCode.OK, run.err
    assert clock.sleeps == [3.0, 1.0, 4.0]


def test_a_long_retry_after_is_capped_and_an_http_date_is_read():
    service = Service(
        polls=[
            running("queued", "600"),
            running("queued", "Wed, 21 Oct 2015 07:28:00 GMT"),  # a date in the past: at once
            saved(),
        ]
    )
    clock = Clock()
    assert run_cli(service, "wait", JOB, clock=clock).code == ExitCode.OK
    assert clock.sleeps == [30.0, 0.05]


def test_poll_interval_overrides_retry_after():
    service = Service(polls=[status("queued"), status("generating"), saved()])
    clock = Clock()
    run = run_cli(service, *GENERATE, "--wait", "--poll-interval", "0.5", clock=clock)
    assert run.code == ExitCode.OK
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_a_slow_job_times_out_without_a_second_start():
    service = Service(polls=[status("queued")])
    clock = Clock()
    run = run_cli(service, *GENERATE, "--wait", "--timeout", "30", clock=clock)
    assert run.code == ExitCode.TIMEOUT
    line = one_error_line(run.err)
    assert f"job {JOB} is still queued after 30s of waiting" in line
    assert f"{PY} -m clients.cli --url {SERVICE} wait {JOB}" in line
    assert len(service.requests("POST")) == 1
    assert sum(clock.sleeps) == pytest.approx(30.0)


def test_failed_polls_are_tried_again_within_patience():
    service = Service(
        polls=[
            status("generating"),
            httpx.ConnectError("[Errno 111] Connection refused"),
            error(503, "store_error", "service", "the job store failed", **{"retry-after": "5"}),
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.ReadTimeout("timed out"),
            saved(),
        ]
    )
    clock = Clock()
    run = run_cli(service, *GENERATE, "--wait", clock=clock)
    assert run.code == ExitCode.OK, run.err
    assert clock.sleeps == [2.0, 2.0, 2.0, 5.0, 2.0, 2.0]
    assert run.err.count("warning: poll failed, trying again") == 4
    assert len(service.requests("POST")) == 1


def test_polls_failing_past_patience_end_with_the_failure_and_how_to_resume():
    service = Service(polls=[status("generating"), httpx.ConnectError("Connection refused")])
    run = run_cli(service, "wait", JOB, "--patience", "10")
    assert run.code == ExitCode.UNREACHABLE
    errors = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "is the stack running? `make run`" in errors[0]
    assert f"wait {JOB} follows it again" in errors[0]


def test_a_refused_key_while_following_ends_at_once():
    service = Service(polls=[status("generating"), httpx.Response(401)])
    clock = Clock()
    run = run_cli(service, "wait", JOB, clock=clock)
    assert run.code == ExitCode.AUTH
    assert len(service.requests("GET")) == 2


# --- every error class: one line that says what to do, and its exit code --------------------

ERRORS = [
    pytest.param(
        httpx.Response(401),
        ExitCode.AUTH,
        ["refused the function key", "--key", "IMAGEJOBS_KEY", f"`{PY} -m devhost keys`"],
        id="wrong-key",
    ),
    pytest.param(
        httpx.ConnectError("[Errno 111] Connection refused"),
        ExitCode.UNREACHABLE,
        [f"cannot connect to {SERVICE} (connection refused)", "is the stack running? `make run`"],
        id="connection-refused",
    ),
    pytest.param(
        httpx.Response(200, text="<html>hello</html>", headers={"content-type": "text/html"}),
        ExitCode.BAD_ANSWER,
        ["is not the service's JSON (text/html", "is --url"],
        id="not-json",
    ),
    pytest.param(
        httpx.Response(202, json=["a", "list"]),
        ExitCode.BAD_ANSWER,
        ["is not the service's JSON"],
        id="json-not-an-object",
    ),
    pytest.param(
        httpx.ReadTimeout("timed out"),
        ExitCode.TIMEOUT,
        ["no answer from", "within 30s", "--http-timeout"],
        id="timeout",
    ),
    pytest.param(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        ExitCode.UNREACHABLE,
        ["the connection to", "broke (Server disconnected"],
        id="dropped",
    ),
    pytest.param(
        error(400, "invalid_value", "size", "size must be one of 1024x1024, ..."),
        ExitCode.REFUSED,
        ["HTTP 400 invalid_value (field size): size must be one of 1024x1024, ...", "fix that"],
        id="400-envelope",
    ),
    pytest.param(
        error(409, "idempotency_key_reused", "Idempotency-Key", "the key was used for another"),
        ExitCode.REFUSED,
        ["HTTP 409 idempotency_key_reused (field Idempotency-Key)", "--idempotency-key"],
        id="409-envelope",
    ),
    pytest.param(
        error(503, "store_error", "service", "the job store failed", **{"retry-after": "5"}),
        ExitCode.SERVICE_ERROR,
        ["HTTP 503 store_error (field service): the job store failed; try again in 5s"],
        id="503-envelope",
    ),
    pytest.param(
        error(500, "internal_error", "service", "a fault of ours"),
        ExitCode.SERVICE_ERROR,
        ["HTTP 500 internal_error (field service): a fault of ours; try again later"],
        id="500-envelope",
    ),
    pytest.param(
        # The simulator's (OpenAI's) 404 for a path it does not have: --url names the simulator.
        httpx.Response(
            404,
            json={
                "error": {
                    "message": "Invalid URL (GET /api/images/x)",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        ExitCode.BAD_ANSWER,
        ["HTTP 404", "is not an answer of the image job API", "is --url"],
        id="openai-404",
    ),
    pytest.param(
        # Azure's 404 for a path it does not serve.
        httpx.Response(404, json={"error": {"code": "404", "message": "Resource not found"}}),
        ExitCode.BAD_ANSWER,
        ["HTTP 404", "is not an answer of the image job API"],
        id="azure-404",
    ),
    pytest.param(
        httpx.Response(418, json={"detail": "teapot"}),
        ExitCode.BAD_ANSWER,
        ["HTTP 418", "is not an answer of the image job API"],
        id="json-without-envelope",
    ),
]


@pytest.mark.parametrize(("reply", "code", "parts"), ERRORS)
@pytest.mark.parametrize("command", ["generate", "status", "cancel"])
def test_each_failure_is_one_line_with_its_exit_code(reply, code, parts, command):
    service = Service(start=[reply], polls=[reply], cancels=[reply])
    argv = {"generate": GENERATE, "status": ("status", JOB), "cancel": ("cancel", JOB)}[command]
    run = run_cli(service, *argv, key="secret-key-1")
    assert run.code == code
    line = one_error_line(run.err)
    for part in parts:
        assert part in line
    assert "secret-key-1" not in run.out + run.err
    assert len(service.requests("POST", "/api/images")) <= 1  # a start is never sent twice


def test_a_401_without_any_key_says_none_was_sent():
    run = run_cli(Service(polls=[httpx.Response(401)]), "status", JOB, key="")
    assert run.code == ExitCode.AUTH
    assert "no function key was sent" in one_error_line(run.err)


def test_404_names_the_id_check():
    reply = error(404, "not_found", "id", f"no job {JOB}")
    run = run_cli(Service(polls=[reply]), "status", JOB)
    assert run.code == ExitCode.REFUSED
    assert "HTTP 404 not_found (field id)" in one_error_line(run.err)


def test_an_image_that_cannot_be_fetched_exits_10_after_listing_the_images(tmp_path):
    path = f"/devstoreaccount1/images/{JOB}/image.png"
    service = Service(polls=[saved()], blobs={path: httpx.Response(403)})
    run = run_cli(service, "wait", JOB, "--out", str(tmp_path / "a.png"))
    assert run.code == ExitCode.SAVE_FAILED
    assert "image 0: 1024x1024" in run.out
    assert "image 0: its link answered HTTP 403; the link may have expired" in run.err


def test_an_image_that_cannot_be_written_exits_10(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = run_cli(Service(polls=[saved()]), "wait", JOB, "--out", str(blocker / "a.png"))
    assert run.code == ExitCode.SAVE_FAILED
    assert "cannot write" in one_error_line(run.err)


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_ctrl_c_while_following_stops_following_and_says_how_to_resume():
    service = Service(polls=[status("generating")])
    clock = Clock()

    def interrupt(_seconds: float) -> None:
        if len(clock.sleeps) == 3:
            raise KeyboardInterrupt

    clock.on_sleep = interrupt
    run = run_cli(service, *GENERATE, "--wait", clock=clock)
    assert run.code == ExitCode.INTERRUPTED
    line = one_error_line(run.err, "interrupted")
    assert f"stopped following job {JOB}; it goes on" in line
    assert f"{PY} -m clients.cli --url {SERVICE} wait {JOB}" in line
    assert f"{PY} -m clients.cli --url {SERVICE} cancel {JOB}" in line
    assert len(service.requests("POST")) == 1
    assert not service.requests("POST", "/cancel")  # stopping to follow is not cancelling


def test_ctrl_c_before_the_start_answer_says_a_job_may_exist():
    def interrupted(_request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    run = run_cli(Service(start=[interrupted]), *GENERATE, "--wait")
    assert run.code == ExitCode.INTERRUPTED
    line = one_error_line(run.err, "interrupted")
    assert "a job may have started; run the same command again" in line


# --- the other commands ------------------------------------------------------------------------


def test_generate_without_wait_prints_the_id_and_how_to_follow():
    service = Service()
    run = run_cli(service, *GENERATE, "--quality", "low", "-n", "2")
    assert run.code == ExitCode.OK
    assert f"job {JOB} accepted: queued" in run.out
    assert f"follow it: {PY} -m clients.cli --url {SERVICE} wait {JOB}" in run.out
    assert not service.requests("GET")
    sent = service.requests("POST")[0].read()
    assert b'"quality": "low"' in sent or b'"quality":"low"' in sent


def test_a_replayed_start_says_no_second_job_was_started():
    service = Service(start=[started(**{"idempotent-replayed": "true"})])
    run = run_cli(service, *GENERATE, "--idempotency-key", "order-7")
    assert f"job {JOB} already started for this request, no second job: queued" in run.out
    assert service.requests("POST")[0].headers["idempotency-key"] == "order-7"


def test_generate_json_prints_the_answer_alone_on_stdout():
    run = run_cli(Service(polls=[saved(n=2)]), *GENERATE, "--wait", "--json")
    assert run.code == ExitCode.OK
    assert [i["url"] for i in run.json()["images"]] == [image(0, 2)["url"], image(1, 2)["url"]]
    assert "saved" in run.err  # the human view went to stderr


def test_status_json_is_the_answer():
    run = run_cli(Service(polls=[status("generating")]), "status", JOB, "--json")
    assert run.code == ExitCode.OK
    assert run.json()["state"] == "generating"


def test_status_human_shows_state_sentence_request_and_how_to_follow():
    run = run_cli(Service(polls=[status("generating")]), "status", JOB)
    assert run.code == ExitCode.OK
    assert f"job {JOB}: generating" in run.out
    assert "Generating: a sentence." in run.out
    assert "request: size 1024x1024, quality low, n 1" in run.out
    assert f"follow it: {PY} -m clients.cli --url {SERVICE} wait {JOB}" in run.out


def test_cancel_running_and_ended():
    body = {"id": JOB, "state": "cancelling", "statusUrl": "x", "beforeSend": True}
    service = Service(cancels=[httpx.Response(202, json=body)])
    run = run_cli(service, "cancel", JOB)
    assert run.code == ExitCode.OK
    assert f"job {JOB}: cancelling (before its request was sent" in run.out
    assert f"wait {JOB}" in run.out
    assert service.requests("POST", "/cancel")[0].url.path == f"/api/images/{JOB}/cancel"
    ended = Service(cancels=[httpx.Response(200, json={"id": JOB, "state": "saved"})])
    assert f"job {JOB} had already ended: saved" in run_cli(ended, "cancel", JOB).out


def test_url_and_key_after_the_command_win(monkeypatch):
    monkeypatch.setenv("IMAGEJOBS_KEY", "from-env")
    service = Service(polls=[status("generating")])
    run = run_cli(service, "status", JOB, "--key", "after", "--url", SERVICE, key="")
    assert run.code == ExitCode.OK
    assert service.seen[0].headers["x-functions-key"] == "after"


def test_the_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("IMAGEJOBS_KEY", "from-env")
    service = Service(polls=[status("generating")])
    assert run_cli(service, "status", JOB, key="").code == ExitCode.OK
    assert service.seen[0].headers["x-functions-key"] == "from-env"


def test_help_documents_every_option_and_the_exit_codes_and_never_shows_the_key(
    monkeypatch, capsys
):
    from clients.cli import cli, main

    monkeypatch.setenv("IMAGEJOBS_KEY", "very-secret")
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for code in ExitCode:
        if code:
            assert f"\n    {int(code):<4} " in text
    for name, command in cli.commands.items():
        assert command.help, name
        for param in command.params:
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"{name} {param.name}"
        assert main([name, "--help"]) == 0
    assert all(getattr(p, "help", None) for p in cli.params)
    assert "very-secret" not in capsys.readouterr().out + text


def test_usage_errors_exit_2(capsys, tmp_path):
    assert run_cli(Service(), *GENERATE, "--out", str(tmp_path / "x.png")).code == 2
    assert run_cli(Service(), "generate").code == 2
    assert run_cli(Service(), "wait", JOB, "--out", "a.png", "--out-dir", ".").code == 2
    assert run_cli(Service(), "nonsense").code == 2


def test_main_reads_sys_argv_by_default(monkeypatch, capsys):
    from clients.cli import main

    monkeypatch.setattr("sys.argv", ["clients.cli", "--help"])
    assert main() == 0
    assert "Exit codes" in capsys.readouterr().out


def test_image_paths_keep_the_extension_of_each_image():
    from clients.cli import image_paths

    images = [image(0, 2, "jpeg"), image(1, 2, "jpeg")]
    assert image_paths(JOB, images, Path("out"), None) == [Path("out"), Path("out-1.jpeg")]
    assert image_paths(JOB, images, None, Path("d")) == [
        Path(f"d/{JOB}.jpeg"),
        Path(f"d/{JOB}-1.jpeg"),
    ]


def test_on_a_terminal_the_live_line_runs_and_the_log_is_kept():
    import io

    from rich.console import Console

    from clients.cli import Runtime, main
    from clients_tests.fakes import Clock

    service = Service(polls=[status("generating"), status("finalizing"), saved()])
    clock = Clock()
    out = io.StringIO()
    terminal = Console(file=out, width=80, force_terminal=True, color_system=None)
    runtime = Runtime(
        out=terminal,
        err=Console(file=io.StringIO(), width=80),
        transport=service.transport(),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    assert main(["--url", SERVICE, *GENERATE, "--wait"], runtime=runtime) == ExitCode.OK
    for state in ("generating", "finalizing", "saved"):
        assert state in out.getvalue()


def test_the_readme_lists_every_exit_code():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", readme, flags=re.MULTILINE)}
    assert listed == {int(code) for code in ExitCode}


def test_no_answer_to_a_start_says_the_same_command_returns_the_job_if_it_started():
    service = Service(start=[httpx.ReadTimeout("timed out")])
    run = run_cli(service, *GENERATE, "--wait")
    assert run.code == ExitCode.TIMEOUT
    assert "a job may have started: the same command again returns that job" in one_error_line(
        run.err
    )
    assert len(service.requests("POST")) == 1


def test_a_start_answer_without_an_id_is_not_the_service():
    service = Service(start=[httpx.Response(202, json={"state": "queued"})])
    run = run_cli(service, *GENERATE, "--wait")
    assert run.code == ExitCode.BAD_ANSWER
    assert "has no job id" in one_error_line(run.err)
    assert not service.requests("GET")


def test_a_connect_timeout_is_a_timeout_that_asks_whether_the_stack_runs():
    run = run_cli(Service(polls=[httpx.ConnectTimeout("timed out")]), "status", JOB)
    assert run.code == ExitCode.TIMEOUT
    assert "is the stack running?" in one_error_line(run.err)


def test_a_stack_that_never_answered_is_said_at_once_not_after_the_patience():
    from clients.api import Unreachable
    from clients.follow import follow

    slept: list[float] = []

    class Down:
        def status(self, job_id: str) -> object:
            raise Unreachable("cannot connect (connection refused)")

    with pytest.raises(Unreachable):
        follow(Down(), JOB, on_status=lambda *_: None, sleep=slept.append)  # type: ignore[arg-type]
    assert slept == []


def test_list_pointed_at_the_simulator_is_not_the_services_json():
    """``--url`` naming the simulator: its OpenAI-style 404 is not the service refusing."""
    body = {
        "error": {
            "message": "Invalid URL (GET /api/images)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    service = Service(lists=[httpx.Response(404, json=body)])
    run = run_cli(service, "list")
    assert run.code == ExitCode.BAD_ANSWER
    line = one_error_line(run.err)
    assert "check the job id" not in line
    assert "is --url" in line
