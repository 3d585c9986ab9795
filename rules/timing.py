"""The timing record of one attempt: every clock field report A asks for, in one place.

The activity fills it as the call goes (``Clocks`` holds monotonic marks, pure arithmetic turns
them into milliseconds), metadata.json and the job's log event carry it, and the status answer
shows it. Milliseconds are from ``request_started_at``; None means the moment never came.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from rules.outcome import Timings

TIMING_FIELDS = (
    "request_started_at",
    "connect_ms",
    "first_byte_ms",
    "first_partial_image_ms",
    "final_image_ms",
    "download_ms",
    "upload_ms",
    "read_inputs_ms",
    "upload_inputs_ms",
)


@dataclass
class Clocks:
    """Monotonic marks (seconds) of one attempt; ``started`` is the send."""

    started_at_iso: str
    started: float
    connected: float | None = None
    first_byte: float | None = None
    first_partial: float | None = None
    final_image: float | None = None
    body_done: float | None = None
    upload_started: float | None = None
    upload_done: float | None = None
    # An edit's input images: read from Blob before the send, then sent as the request body.
    inputs_read_started: float | None = None
    inputs_read_done: float | None = None
    inputs_send_started: float | None = None
    inputs_sent: float | None = None
    partials: list[float] = field(default_factory=list)

    def record(self) -> Timings:
        """The timing record: milliseconds since the send, or None."""
        return Timings(
            request_started_at=self.started_at_iso,
            connect_ms=_ms(self.started, self.connected),
            first_byte_ms=_ms(self.started, self.first_byte),
            first_partial_image_ms=_ms(self.started, self.first_partial),
            final_image_ms=_ms(self.started, self.final_image),
            # Download: from the first byte to the end of the body (for a stream, the final
            # event's bytes arriving after the model finished).
            download_ms=_ms(self.final_image or self.first_byte, self.body_done),
            upload_ms=_ms(self.upload_started, self.upload_done),
            read_inputs_ms=_ms(self.inputs_read_started, self.inputs_read_done),
            # Sending an edit's inputs: the request body, apart from the generation after it.
            upload_inputs_ms=_ms(self.inputs_send_started, self.inputs_sent),
            partial_images_ms=[_ms(self.started, mark) for mark in self.partials],
        )


def iso_utc(moment: datetime) -> str:
    """``2026-05-07T13:46:12.123Z``: the one way this project writes a moment."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_iso(seconds: float) -> str:
    """Seconds since the epoch, written as ``iso_utc`` writes a moment."""
    return iso_utc(datetime.fromtimestamp(seconds, UTC))


def epoch_ms(iso: str) -> int:
    """``iso`` (as ``iso_utc`` writes it) as milliseconds since the epoch."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _ms(start: float | None, end: float | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start) * 1000))
