"""The engine's public exceptions, which the management API maps to HTTP answers.

A module of their own so that every engine module can raise them without importing the Engine;
`devhost.engine` re-exports them, and callers import them from there.
"""

from __future__ import annotations

__all__ = [
    "InstanceAlreadyExists",
    "InstanceNotActive",
    "InstanceNotFound",
    "UnknownEntity",
    "UnknownOrchestrator",
]


class InstanceNotFound(Exception):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"No orchestration instance with id '{instance_id}'.")
        self.instance_id = instance_id


class InstanceAlreadyExists(Exception):
    def __init__(self, instance_id: str, runtime_status: str) -> None:
        super().__init__(
            f"An Orchestration instance with the status {runtime_status} already exists."
        )
        self.instance_id = instance_id
        self.runtime_status = runtime_status


class InstanceNotActive(Exception):
    def __init__(self, instance_id: str, runtime_status: str) -> None:
        super().__init__(
            f"The orchestration instance '{instance_id}' is {runtime_status} and cannot take this"
            " operation."
        )
        self.instance_id = instance_id
        self.runtime_status = runtime_status


class UnknownOrchestrator(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
        )
        self.name = name


class UnknownEntity(Exception):
    """The entity name is not an entity function of this app (the extension's
    ThrowIfFunctionDoesNotExist for FunctionType.Entity)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The function '{name}' doesn't exist, is disabled, or is not an entity function."
        )
        self.name = name
