"""Azurite, the real Azure Storage emulator, installed by `npm ci` (pinned 3.35.0 for Node 20)."""

from __future__ import annotations

import shutil
from pathlib import Path

from localrun.processes import ChildProcess

# Azurite's well-known development account: public, documented, not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_bin(root: Path) -> Path | None:
    local = root / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def connection_string(blob_port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{ACCOUNT};"
    )


def azurite_blob(
    root: Path, *, port: int, location: Path | None = None, log_path: Path | None = None
) -> ChildProcess:
    """The blob service only (devhost keeps Durable state in SQLite, so queues and tables are
    not needed); in memory unless ``location`` is given (data that must survive a restart)."""
    binary = azurite_bin(root)
    if binary is None:
        raise FileNotFoundError("Azurite is not installed: run `make setup` (npm ci)")
    argv = [
        str(binary),
        "--silent",
        "--skipApiVersionCheck",
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
    ]
    if location is None:
        argv.append("--inMemoryPersistence")
    else:
        argv += ["--location", str(location)]
    return ChildProcess("azurite", argv, port=port, log_path=log_path)
