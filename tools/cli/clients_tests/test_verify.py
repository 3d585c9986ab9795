"""verify-webhook: a delivery's signature checked offline with the standardwebhooks library,
from files or standard input, exit 0 or 1 with one clear line, and the secret never printed."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from standardwebhooks import Webhook

from clients.api import ExitCode
from clients.cli import Runtime, main

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "whsec_" + "A" * 32
PAYLOAD = json.dumps(
    {"type": "image.saved", "timestamp": "2026-05-07T13:46:12.000Z", "data": {"id": "img-1"}},
    separators=(",", ":"),
)


def signed(at: datetime | None = None, secret: str = SECRET, body: str = PAYLOAD) -> dict[str, str]:
    moment = at or datetime.now(UTC)
    return {
        "webhook-id": "msg_img-1_saved",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_img-1_saved", moment, body),
    }


def run(*argv: str, stdin: bytes | None = None, monkeypatch: pytest.MonkeyPatch | None = None):
    out, err = io.StringIO(), io.StringIO()
    runtime = Runtime(
        out=Console(file=out, width=60, color_system=None),
        err=Console(file=err, width=60, color_system=None),
    )
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(["verify-webhook", *argv], runtime=runtime)
    return int(code), out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    payload, headers = tmp_path / "body.json", tmp_path / "headers.json"
    payload.write_text(PAYLOAD)
    headers.write_text(json.dumps(signed()))
    return payload, headers


def test_a_delivery_that_verifies(files: tuple[Path, Path]):
    payload, headers = files
    code, out, err = run("--payload", str(payload), "--headers", str(headers), "--secret", SECRET)
    assert code == ExitCode.OK, err
    assert out.startswith("verified: msg_img-1_saved (image.saved, job img-1), signed 20")
    assert SECRET not in out + err


def test_header_lines_as_curl_writes_them(tmp_path: Path, files: tuple[Path, Path]):
    payload, _ = files
    lines = tmp_path / "headers.txt"
    block = "\n".join(f"{k.title()}: {v}" for k, v in signed().items())
    lines.write_text(f"HTTP/1.1 200 OK\nContent-Type: application/json\n{block}\n\n")
    code, out, _ = run("--payload", str(payload), "--headers", str(lines), "--secret", SECRET)
    assert code == ExitCode.OK
    assert out.startswith("verified:")


def test_the_payload_from_standard_input_and_the_headers_as_options(
    monkeypatch: pytest.MonkeyPatch,
):
    headers = signed()
    monkeypatch.setenv("IMAGEJOBS_WEBHOOK_SECRET", SECRET)
    code, out, _ = run(
        "--payload",
        "-",
        "--id",
        headers["webhook-id"],
        "--timestamp",
        headers["webhook-timestamp"],
        "--signature",
        headers["webhook-signature"],
        stdin=PAYLOAD.encode(),
        monkeypatch=monkeypatch,
    )
    assert code == ExitCode.OK
    assert out.startswith("verified:")


# Signed when the test runs, not when it is collected: a suite that runs longer than the
# library's five minutes of tolerance would otherwise see every signature as too old.
CASES: dict[str, tuple[str, Callable[[], dict[str, str]], str, str]] = {
    "another body": (
        PAYLOAD.replace("img-1", "img-2"),
        lambda: signed(),
        SECRET,
        "no matching signature found",
    ),
    "another secret": (
        PAYLOAD,
        lambda: signed(secret=OTHER),
        SECRET,
        "no matching signature found",
    ),
    "an hour old": (
        PAYLOAD,
        lambda: signed(datetime.now(UTC) - timedelta(hours=1)),
        SECRET,
        "too old",
    ),
    "no timestamp": (
        PAYLOAD,
        lambda: {"webhook-id": "msg_1"},
        SECRET,
        "missing header webhook-timestamp",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_delivery_that_does_not_verify_is_one_line_and_exit_code_1(tmp_path: Path, case: str):
    body, make_headers, secret, said = CASES[case]
    headers = make_headers()
    (tmp_path / "b").write_text(body)
    (tmp_path / "h").write_text(json.dumps(headers))
    code, out, err = run(
        "--payload", str(tmp_path / "b"), "--headers", str(tmp_path / "h"), "--secret", secret
    )
    assert code == ExitCode.NOT_VERIFIED
    assert int(ExitCode.NOT_VERIFIED) == 1
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("not verified: ")
    assert said in line
    assert secret not in err


def test_any_age_checks_a_delivery_captured_earlier(tmp_path: Path):
    (tmp_path / "b").write_text(PAYLOAD)
    (tmp_path / "h").write_text(json.dumps(signed(datetime.now(UTC) - timedelta(days=2))))
    argv = ("--payload", str(tmp_path / "b"), "--headers", str(tmp_path / "h"), "--secret", SECRET)
    assert run(*argv)[0] == ExitCode.NOT_VERIFIED
    assert run(*argv, "--any-age")[0] == ExitCode.OK
    tampered = tmp_path / "b2"
    tampered.write_text(PAYLOAD + " ")
    code, _, err = run(*argv[:1], str(tampered), *argv[2:], "--any-age")
    assert code == ExitCode.NOT_VERIFIED
    assert "no matching signature found" in err


def test_a_secret_or_headers_that_cannot_be_read_are_usage_errors(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    payload, headers = files
    code, _, err = run("--payload", str(payload), "--headers", str(headers), "--secret", "%%%")
    assert code == ExitCode.USAGE
    assert "not a webhook secret" in err
    (tmp_path / "bad").write_text("{not json")
    code, _, _ = run(
        "--payload", str(payload), "--headers", str(tmp_path / "bad"), "--secret", SECRET
    )
    assert code == ExitCode.USAGE
    code, _, err = run(
        "--payload", "-", "--headers", "-", "--secret", SECRET, stdin=b"", monkeypatch=monkeypatch
    )
    assert code == ExitCode.USAGE
    assert "standard input" in err
