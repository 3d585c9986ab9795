"""`python -m clients.cli` as a person runs it, against the real local stack (devhost running
function_app.py, the simulator, Azurite) on free ports at time scale 25.

A missing Azurite fails under CI=true (loopserver.testing.missing_service), skips elsewhere.
"""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from clients.api import ExitCode, python_command
from localrun.azurite import azurite_bin
from localrun.stack import LocalStack
from loopserver import free_port
from loopserver.testing import missing_service

# How the CLI names this interpreter in the commands it suggests (.venv/bin/python here).
PY = python_command()

pytestmark = [pytest.mark.subprocess, pytest.mark.azurite]

ROOT = Path(__file__).resolve().parents[3]
PROMPT = "a red apple on a white background, studio light"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    if azurite_bin(ROOT) is None:
        missing_service("Azurite", "run `make setup` (npm ci installs azurite 3.35.0)")
    state = tmp_path_factory.mktemp("cli-stack")
    with LocalStack(
        ROOT,
        state_dir=state,
        azurite_port=0,
        simulator_port=0,
        devhost_port=0,
        time_scale=25.0,
    ) as local:
        yield local


@pytest.fixture(scope="module")
def key(stack: LocalStack) -> str:
    return stack.function_key


def env_for(stack: LocalStack, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEJOBS_")}
    env.update({"IMAGEJOBS_URL": stack.devhost_url, "PYTHONUNBUFFERED": "1", "COLUMNS": "100"})
    if key is not None:
        env["IMAGEJOBS_KEY"] = key
    return env


def cli(
    env: dict[str, str], *argv: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clients.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(stderr: str, label: str = "error") -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith(f"{label}: ")
    return lines[0]


def fault(stack: LocalStack, **spec: Any) -> None:
    response = httpx.post(f"{stack.simulator_url}/_sim/faults", json=spec, timeout=10)
    assert response.status_code == 201, response.text


def test_generate_wait_with_n_2_saves_both_images_and_the_previews(stack, key, tmp_path):
    out = tmp_path / "apple.png"
    previews = tmp_path / "previews"
    done = cli(
        env_for(stack, key),
        "generate",
        "--prompt",
        PROMPT,
        "--size",
        "1024x1024",
        "--quality",
        "low",
        "-n",
        "2",
        "--partial-images",
        "1",
        "--wait",
        "--poll-interval",
        "0.1",
        "--out",
        str(out),
        "--previews-dir",
        str(previews),
    )
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for path in (out, tmp_path / "apple-1.png"):
        with Image.open(path) as picture:
            assert picture.format == "PNG"
            assert picture.size == (1024, 1024)
    assert sorted(p.suffix for p in previews.iterdir()) == [".png", ".png"]
    lines = done.stdout.splitlines()
    job_id = lines[0].split()[1]
    assert job_id.startswith("img-")
    for clock in ("connect", "first byte", "first partial image", "final image", "upload"):
        assert clock in done.stdout
    assert "image 0: 1024x1024 image/png" in done.stdout
    assert "image 1: 1024x1024 image/png" in done.stdout
    links = [line.strip() for line in lines if line.startswith("  http://")]
    assert len([link for link in links if "/image-" in link]) == 2
    for link in links:  # whole, as printed: the blob links open as they are
        if "/api/images/" not in link:  # the status URL needs the key
            assert httpx.get(link, timeout=10).status_code == 200
    assert key not in done.stdout + done.stderr

    status = cli(env_for(stack, key), "status", job_id, "--json")
    assert status.returncode == ExitCode.OK, status.stderr
    answer = json.loads(status.stdout)
    assert answer["state"] == "saved"
    assert len(answer["images"]) == 2

    human = cli(env_for(stack, key), "status", job_id)
    assert human.returncode == ExitCode.OK
    assert f"job {job_id}: saved" in human.stdout
    assert "Saved: the image is stored." in human.stdout


def test_cancel_a_running_job_then_wait_sees_it_cancelled(stack, key):
    fault(stack, kind="slow_first_byte", delay_s=150, count=1, match={"route": "openai"})
    env = env_for(stack, key)
    started = cli(env, "generate", "--prompt", PROMPT + " to cancel", "--route", "openai")
    assert started.returncode == ExitCode.OK, started.stderr
    job_id = started.stdout.split()[1]
    assert f"follow it: {PY} -m clients.cli --url {stack.devhost_url} wait {job_id}" in (
        started.stdout
    )
    cancelled = cli(env, "cancel", job_id)
    assert cancelled.returncode == ExitCode.OK, cancelled.stderr
    assert f"job {job_id}: cancelling" in cancelled.stdout
    waited = cli(env, "wait", job_id, "--poll-interval", "0.1")
    assert waited.returncode == ExitCode.JOB_CANCELLED, waited.stdout + waited.stderr
    assert "cancelled" in waited.stdout


def test_a_wrong_key_is_one_line_that_says_where_the_key_comes_from(stack):
    done = cli(env_for(stack, "not-the-key"), "generate", "--prompt", PROMPT)
    assert done.returncode == ExitCode.AUTH
    line = one_error_line(done.stderr)
    assert "HTTP 401: the service refused the function key" in line
    assert f"`{PY} -m devhost keys`" in line
    assert "not-the-key" not in done.stdout + done.stderr
    missing = cli(env_for(stack, None), "status", "img-0123456789abcdef01234567-1")
    assert missing.returncode == ExitCode.AUTH
    assert "no function key was sent" in one_error_line(missing.stderr)


def test_an_unknown_job_is_the_services_404_envelope(stack, key):
    done = cli(env_for(stack, key), "status", "img-0123456789abcdef01234567-1")
    assert done.returncode == ExitCode.REFUSED
    assert "HTTP 404 not_found (field id)" in one_error_line(done.stderr)


def test_a_refused_request_names_the_field(stack, key):
    done = cli(env_for(stack, key), "generate", "--prompt", PROMPT, "--size", "7x7")
    assert done.returncode == ExitCode.REFUSED
    assert "HTTP 400 invalid_value (field size)" in one_error_line(done.stderr)


def test_a_stopped_stack_is_connection_refused_and_says_make_run(stack, key):
    url = f"http://127.0.0.1:{free_port()}"
    done = cli(env_for(stack, key), "--url", url, "status", "img-0123456789abcdef01234567-1")
    assert done.returncode == ExitCode.UNREACHABLE
    line = one_error_line(done.stderr)
    assert f"cannot connect to {url} (connection refused)" in line
    assert "is the stack running? `make run`" in line


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> str:
    """What the process printed on stdout until a line holds ``text``."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} in {seen!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            assert line, f"stdout closed before {text!r}: {seen!r}"
            seen += line
    return seen


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_following_cleanly_and_the_job_goes_on(stack, key, presses):
    fault(stack, kind="slow_first_byte", delay_s=100, count=1, match={"route": "openai"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clients.cli",
            "generate",
            "--prompt",
            f"{PROMPT} interrupted {presses}",
            "--route",
            "openai",
            "--wait",
            "--poll-interval",
            "0.2",
        ],
        cwd=ROOT,
        env=env_for(stack, key),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = read_until(proc, " attempt ")
        job_id = seen.split()[1]
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    line = one_error_line(stderr, "interrupted")
    assert f"stopped following job {job_id}; it goes on" in line
    assert f"wait {job_id}" in line
    assert f"cancel {job_id}" in line
    # It went on: following it again sees it to the end.
    waited = cli(env_for(stack, key), "wait", job_id, "--poll-interval", "0.2")
    assert waited.returncode == ExitCode.OK, waited.stdout + waited.stderr


def test_compare_runs_a_tiny_matrix_for_real_and_writes_its_csv_and_chart(stack, key, tmp_path):
    summary, chart = tmp_path / "compare.csv", tmp_path / "compare.png"
    done = cli(
        env_for(stack, key),
        "compare",
        "--route",
        "azure,openai",
        "--quality",
        "low",
        "--size",
        "1024x1024",
        "--format",
        "jpeg",
        "--runs",
        "2",
        "--concurrency",
        "4",
        "--poll-interval",
        "0.1",
        "--csv",
        str(summary),
        "--chart",
        str(chart),
    )
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    rows = list(csv.DictReader(summary.open()))
    assert [(r["route"], r["quality"], r["size"], r["format"]) for r in rows] == [
        ("azure", "low", "1024x1024", "jpeg"),
        ("openai", "low", "1024x1024", "jpeg"),
    ]
    for row in rows:
        assert row["runs"] == "2"
        assert row["saved"] == "2", row
        assert row["success_rate"] == "1.0000"
        assert row["errors"] == ""
        for clock in ("first_byte", "first_partial", "final_image", "total"):
            p50, p95 = float(row[f"{clock}_p50_ms"]), float(row[f"{clock}_p95_ms"])
            assert 0 <= p50 <= p95, (clock, row)
        # The clocks come in their order; total (start to saved, seen here) after the image.
        assert float(row["first_byte_p50_ms"]) <= float(row["final_image_p50_ms"])
        assert float(row["final_image_p50_ms"]) < float(row["total_p50_ms"])
        assert float(row["cost_usd"]) > 0
    runs = list(csv.DictReader((tmp_path / "compare-runs.csv").open()))
    assert len(runs) == 4
    assert len({r["job_id"] for r in runs}) == 4  # four real jobs, none folded into another
    with Image.open(chart) as picture:
        picture.verify()
    with Image.open(chart) as picture:
        assert picture.format == "PNG"
    assert "azure/low/1024x1024/jpeg" in done.stdout


def test_list_and_evidence_of_a_real_job(stack, key, tmp_path):
    env = env_for(stack, key)
    started = cli(env, "generate", "--prompt", PROMPT + " for the record", "--quality", "low")
    assert started.returncode == ExitCode.OK, started.stderr
    job_id = started.stdout.split()[1]
    waited = cli(env, "wait", job_id, "--poll-interval", "0.1")
    assert waited.returncode == ExitCode.OK, waited.stdout + waited.stderr

    listed = cli(env, "list", "--json")
    assert listed.returncode == ExitCode.OK, listed.stderr
    assert job_id in [item["id"] for item in json.loads(listed.stdout)]
    table = cli(env, "list", "--limit", "50")
    assert job_id in table.stdout

    packet = cli(env, "evidence", job_id, "--format", "json")
    assert packet.returncode == ExitCode.OK, packet.stderr
    body = json.loads(packet.stdout)
    assert body["id"] == job_id
    assert body["complete"] is True
    assert body["state"] == "saved"
    assert body["moment"]["local"]["timezone"]
    assert body["route"]["host"].startswith("[ip]:")
    assert "Azurite (Blob Storage)" in body["infrastructure"]["localStandIns"]
    assert PROMPT not in packet.stdout
    assert "127.0.0.1" not in packet.stdout

    out = tmp_path / "evidence.md"
    written = cli(env, "evidence", job_id, "--format", "md", "--out", str(out))
    assert written.returncode == ExitCode.OK, written.stderr
    text = out.read_text()
    assert text.startswith(f"# Escalation packet: image job {job_id}")
    assert "## Reproduction" in text
    assert PROMPT not in text
