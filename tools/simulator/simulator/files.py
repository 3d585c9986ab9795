"""The Files API's store: uploaded batch input files and the output and error files of batches.

A batch reads its input from a file uploaded with ``purpose=batch`` and leaves its results in two
new files (``batch_output``), so the simulator keeps files the way the service does: by id, with
the ``File`` object the SDK parses (``openai.types.FileObject``). Everything is held in memory
and lives as long as the simulator (or until deleted, or ``reset``); ``expires_at`` is reported
but never enforced.

    store = FileStore()
    stored = store.add(filename="requests.jsonl", purpose="batch", data=b"...",
                       created_at=1_800_000_000, expires_at=None)
    store.get(stored.id).to_json()   # {"id": "file-...", "object": "file", "bytes": ..., ...}
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import threading
from typing import Any

__all__ = ["FILE_PURPOSES", "FileStore", "StoredFile", "new_file_id"]

# What ``POST /files`` accepts as ``purpose`` (CreateFileRequest); ``batch_output`` is the
# purpose of the files a batch writes, never of an upload.
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")

_ID_ALPHABET = string.ascii_letters + string.digits


def new_file_id() -> str:
    """``file-`` and 22 letters and digits, the shape of OpenAI's file ids."""
    return "file-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """One file: its bytes and the fields of its ``File`` object."""

    id: str
    filename: str
    purpose: str
    created_at: int
    expires_at: int | None
    data: bytes = dataclasses.field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The ``File`` object (``OpenAIFile`` in OpenAI's OpenAPI document)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            # Deprecated fields the service still sends; an upload is usable at once here.
            "status": "processed",
            "status_details": None,
        }


class FileStore:
    """Files by id, in upload order. Thread-safe: the server writes, tests read from elsewhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}

    def add(
        self, *, filename: str, purpose: str, data: bytes, created_at: int, expires_at: int | None
    ) -> StoredFile:
        stored = StoredFile(
            id=new_file_id(),
            filename=filename,
            purpose=purpose,
            created_at=created_at,
            expires_at=expires_at,
            data=data,
        )
        with self._lock:
            self._files[stored.id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def delete(self, file_id: str) -> bool:
        """Whether the file existed (it is gone either way)."""
        with self._lock:
            return self._files.pop(file_id, None) is not None

    def list(self, *, purpose: str | None = None) -> list[StoredFile]:
        """Files oldest first, optionally of one purpose."""
        with self._lock:
            return [f for f in self._files.values() if purpose is None or f.purpose == purpose]

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
