"""The app refuses to start on bad settings: importing function_app.py reads them.

In Azure a failing import stops the Functions host from indexing the app (no function is served,
the error is in the host's log), which is the right refusal for a wrong timeout budget: the first
POST must not be where it shows. Each import runs in a fresh interpreter, as the worker's does,
with the sample settings and one change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]

pytestmark = pytest.mark.subprocess


def import_app(**changes: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), **SAMPLE, **changes}
    return subprocess.run(
        [sys.executable, "-c", "import function_app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sample_settings_import():
    done = import_app()
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"IMAGE_READ_IDLE_TIMEOUT_S": "1000"}, ["IMAGE_READ_IDLE_TIMEOUT_S (1000s)", "900s"]),
        ({"IMAGE_REQUEST_TIMEOUT_S": "2000"}, ["IMAGE_REQUEST_TIMEOUT_S", "IMAGE_ACTIVITY"]),
        ({"IMAGE_JOB_ID_SECRET": "short"}, ["IMAGE_JOB_ID_SECRET"]),
        ({"IMAGE_ROUTES": ""}, ["IMAGE_ROUTES"]),
    ],
)
def test_a_bad_setting_fails_the_import_naming_it(changes, named):
    done = import_app(**changes)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rules.errors.SettingsInvalid: setting ")
    for text in named:
        assert text in last
