"""Host keys: the master key, function keys and the Durable extension's system key.

The real host keeps them in a JSON file (`host.json` under its secrets folder) that it creates on
its first start; devhost does the same under the state directory, in the same shape, so a key
printed by `python -m devhost keys` keeps working across restarts:

    {"masterKey": {"name": "master", "value": ..., "encrypted": false},
     "functionKeys": [{"name": "default", "value": ..., "encrypted": false}],
     "systemKeys": [{"name": "durabletask_extension", "value": ..., "encrypted": false}]}

Authorisation rules (AuthenticationLevelHandler in the host): `x-functions-key` wins over
`?code=`; the master key is admin level and passes everywhere; host function keys pass function
level; system keys do not pass function level; anonymous always passes; extension webhooks
(`/runtime/webhooks/{extension}`) need the master key or that extension's system key.
Keys never appear in logs or error messages.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "DURABLE_SYSTEM_KEY_NAME",
    "AuthLevel",
    "HostKeys",
    "KeyFileError",
    "generate_key",
    "key_file_path",
    "load_or_create_keys",
    "presented_key",
]

DURABLE_SYSTEM_KEY_NAME = "durabletask_extension"
KEY_FILE_NAME = "host.json"


class AuthLevel(Enum):
    ANONYMOUS = "anonymous"
    FUNCTION = "function"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: object) -> AuthLevel:
        """Accept the SDK's enum (`AuthLevel.FUNCTION`), its value or its name, any case."""
        text = str(getattr(value, "value", value)).strip().lower()
        for level in cls:
            if level.value == text or level.name.lower() == text:
                return level
        raise ValueError(f"unknown auth level {value!r} (anonymous, function or admin)")


class KeyFileError(Exception):
    """The key file exists but cannot be read as the host's key file; carries the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot read the key file {path}: {reason}")
        self.path = path


def generate_key() -> str:
    """40 random bytes, URL-safe base64, as the host's SecretManager makes them."""
    return secrets.token_urlsafe(40)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class HostKeys:
    master_key: str = field(repr=False)
    function_keys: Mapping[str, str] = field(repr=False)
    system_keys: Mapping[str, str] = field(repr=False)

    @classmethod
    def generate(cls) -> HostKeys:
        return cls(
            master_key=generate_key(),
            function_keys={"default": generate_key()},
            system_keys={DURABLE_SYSTEM_KEY_NAME: generate_key()},
        )

    @property
    def default_function_key(self) -> str:
        return self.function_keys["default"]

    @property
    def durable_system_key(self) -> str:
        return self.system_keys[DURABLE_SYSTEM_KEY_NAME]

    def is_master(self, key: str | None) -> bool:
        return key is not None and _same(key, self.master_key)

    def allows(self, level: AuthLevel, key: str | None) -> bool:
        """Whether a request presenting `key` may call a function of `level`."""
        if level is AuthLevel.ANONYMOUS:
            return True
        if key is None or key == "":
            return False
        if self.is_master(key):
            return True
        if level is AuthLevel.ADMIN:
            return False
        return any(_same(key, v) for v in self.function_keys.values())

    def allows_extension(self, extension: str, key: str | None) -> bool:
        """Webhooks of an extension: the master key or that extension's system key."""
        if key is None or key == "":
            return False
        if self.is_master(key):
            return True
        system = self.system_keys.get(f"{extension}_extension")
        return system is not None and _same(key, system)

    def to_json(self) -> dict[str, Any]:
        def entry(name: str, value: str) -> dict[str, Any]:
            return {"name": name, "value": value, "encrypted": False}

        return {
            "masterKey": entry("master", self.master_key),
            "functionKeys": [entry(n, v) for n, v in self.function_keys.items()],
            "systemKeys": [entry(n, v) for n, v in self.system_keys.items()],
            "hostName": None,
            "instanceId": secrets.token_hex(16),
            "source": "runtime",
            "decryptionKeyId": "",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostKeys:
        master = data["masterKey"]["value"]
        functions = {k["name"]: k["value"] for k in data.get("functionKeys", [])}
        system = {k["name"]: k["value"] for k in data.get("systemKeys", [])}
        if not isinstance(master, str) or not master:
            raise ValueError("masterKey.value is empty")
        if any(k.get("encrypted") for k in [data["masterKey"], *data.get("functionKeys", [])]):
            raise ValueError("encrypted keys are not supported by devhost")
        return cls(master_key=master, function_keys=functions, system_keys=system)


def key_file_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "secrets" / KEY_FILE_NAME


def load_or_create_keys(state_dir: str | Path) -> tuple[HostKeys, bool]:
    """Read the key file under `state_dir`, or create it; returns (keys, created).

    Missing entries (a file written by hand without a default function key or without the Durable
    system key) are added and the file is rewritten, as the host does.
    """
    path = key_file_path(state_dir)
    if not path.exists():
        keys = HostKeys.generate()
        _write(path, keys)
        return keys, True
    try:
        keys = HostKeys.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(path, str(exc)) from exc
    functions = dict(keys.function_keys)
    system = dict(keys.system_keys)
    changed = False
    if "default" not in functions:
        functions["default"] = generate_key()
        changed = True
    if DURABLE_SYSTEM_KEY_NAME not in system:
        system[DURABLE_SYSTEM_KEY_NAME] = generate_key()
        changed = True
    if changed:
        keys = HostKeys(master_key=keys.master_key, function_keys=functions, system_keys=system)
        _write(path, keys)
    return keys, False


def _write(path: Path, keys: HostKeys) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # The file holds secrets: owner-only, written whole, then moved into place.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(keys.to_json(), f, indent=2)
    os.replace(tmp, path)


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The key a request presents: the `x-functions-key` header wins over `?code=`."""
    header = headers.get("x-functions-key")
    if header:
        return header
    for name, value in query.items():
        if name.lower() == "code" and value:
            return value
    return None
