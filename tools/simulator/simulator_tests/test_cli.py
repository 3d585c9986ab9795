"""``python -m simulator`` and ``python -m simulator.bench`` as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from loopserver import free_port, wait_for_port

ROOT = Path(__file__).parents[1]


@pytest.mark.subprocess
def test_cli_serves_prints_its_urls_and_stops_cleanly_on_ctrl_c():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--time-scale",
            "1000",
            "--config",
            str(ROOT / "simulator/examples/openai-tier1.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, alive=lambda: process.poll() is None)
        response = httpx.post(
            f"{url}/v1/images/generations",
            headers={"Authorization": "Bearer sk-local-test"},
            json={"model": "gpt-image-2", "prompt": "x", "quality": "low", "output_format": "jpeg"},
            timeout=30,
        )
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-images"] == "5"
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0
    assert f"{url}/v1" in stdout
    assert "Traceback" not in stderr


@pytest.mark.subprocess
def test_cli_rejects_a_bad_config_naming_the_key(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"openai": {"keyz": []}}')
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "openai.keyz" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.subprocess
@pytest.mark.bench
def test_bench_smoke_run():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.bench",
            "--streams",
            "3",
            "--size",
            "1024x1024",
            "--quality",
            "low",
            "--format",
            "jpeg",
            "--time-scale",
            "200",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "completed: 3/3" in done.stdout
    assert "images/s" in done.stdout
    assert "VmHWM" in done.stdout
