"""The app settings a test's code reads through ``wiring.settings()`` (cached per worker): only
the given ones, none of the machine's, and the cache cleared before and after."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest

import wiring


@contextmanager
def only_settings(monkeypatch: pytest.MonkeyPatch, values: Mapping[str, str]) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("IMAGE_", "IMAGES_")):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    try:
        yield
    finally:
        wiring.settings.cache_clear()
