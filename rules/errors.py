"""The project's error tree. Every domain error carries the job id when there is one.

    ImageJobError                     base; ``job_id`` (None before a job exists)
    ├── RequestInvalid                a client's request breaks a rule: 400 naming ``field``
    └── SettingsInvalid               an app setting is missing or wrong: names the setting

What goes wrong during an attempt is not raised at all: the activity translates every httpx
exception, error response, stream error and storage failure into one ``Failure`` record
(rules/outcome.py; activities/upstream_errors.py does the translating, in ONE place), returns it
to the orchestrator as data, and the retry policy decides from it.
"""

from __future__ import annotations


class ImageJobError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        self.job_id = job_id
        self.message = message
        super().__init__(f"job {job_id}: {message}" if job_id else message)


class RequestInvalid(ImageJobError):
    """A request to start a job breaks a rule; ``field`` names the request field at fault."""

    def __init__(self, field: str, code: str, message: str, *, job_id: str | None = None) -> None:
        self.field = field
        self.code = code
        super().__init__(message, job_id=job_id)


class SettingsInvalid(ImageJobError):
    """An app setting is missing or malformed; ``setting`` names it (never its value)."""

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"setting {setting}: {message}")
