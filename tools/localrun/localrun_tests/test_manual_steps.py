"""The README's manual steps ("Piece by piece, by hand") start Azurite as localrun does.

- The README's Azurite command carries every flag localrun starts Azurite with (FLAGS), and the
  installed Azurite knows each of them (an upgrade that renames one fails here).
- That command, run as written (on a free port, in memory), serves the pinned Blob SDK; without
  `--skipApiVersionCheck` the SDK is refused, which is why the flag is there.
- The steps name the three pieces in the order they are started: Azurite, simulator, devhost.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from localrun.azurite import FLAGS, azurite_bin, connection_string
from localrun.processes import ChildProcess
from localrun_tests.conftest import ROOT
from loopserver import free_port


def manual_steps() -> list[str]:
    """The commands of the README's manual-steps block, continuations joined, comments out."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^### Piece by piece, by hand\n(.*?)(?=^##|\Z)", text, re.M | re.S)
    assert section, "README.md has no '### Piece by piece, by hand' section"
    block = re.search(r"^```sh\n(.*?)^```", section.group(1), re.M | re.S)
    assert block
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def readme_azurite_argv(port: int) -> list[str]:
    [command] = [c for c in manual_steps() if "azurite" in c.split()[0]]
    argv = shlex.split(command)
    argv[argv.index("--blobPort") + 1] = str(port)
    at = argv.index("--location")
    return [str(ROOT / argv[0]), *argv[1:at], "--inMemoryPersistence", *argv[at + 2 :]]


def test_the_steps_start_azurite_then_the_simulator_then_devhost():
    pieces = [c.split()[0] if "azurite" in c else c.split()[2] for c in manual_steps()]
    assert pieces == ["node_modules/.bin/azurite-blob", "simulator", "devhost"]


def test_the_readmes_azurite_command_has_every_flag_localrun_uses():
    argv = readme_azurite_argv(10000)
    assert set(FLAGS) <= set(argv)
    assert {"--skipApiVersionCheck", "--disableTelemetry"} <= set(FLAGS)


@pytest.fixture
def azurite_help(needs_azurite) -> str:
    binary = azurite_bin(ROOT)
    assert binary is not None
    done = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.mark.subprocess
def test_the_installed_azurite_knows_every_flag(azurite_help):
    for flag in FLAGS:
        assert f"--{flag.lstrip('-')} " in azurite_help or f", {flag}" in azurite_help, flag


def start(argv: list[str], port: int) -> ChildProcess:
    child = ChildProcess("azurite", argv, port=port)
    child.start()
    return child


@pytest.fixture
def running() -> Iterator[list[ChildProcess]]:
    started: list[ChildProcess] = []
    yield started
    for child in started:
        child.stop()


def create_container(port: int) -> None:
    with BlobServiceClient.from_connection_string(connection_string(port)) as client:
        client.create_container("manual-steps")


@pytest.mark.subprocess
def test_the_readmes_azurite_serves_the_pinned_blob_sdk(needs_azurite, running):
    port = free_port()
    running.append(start(readme_azurite_argv(port), port))
    create_container(port)


@pytest.mark.subprocess
def test_without_skip_api_version_check_the_sdk_is_refused(needs_azurite, running):
    port = free_port()
    argv = [a for a in readme_azurite_argv(port) if a != "--skipApiVersionCheck"]
    running.append(start(argv, port))
    with pytest.raises(HttpResponseError, match="not supported by Azurite"):
        create_container(port)
