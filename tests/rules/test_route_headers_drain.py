"""A route that answers every request with its rate-limit headers, as OpenAI's does (a sliding
minute; remaining and the time until the window is empty), drained by the governor: the headers
of a full window of our own sends never stall the route, and a count lower than our own sends
explain (another client on the quota) does hold it."""

from __future__ import annotations

import heapq
import itertools

from rules import pacing, route_model
from rules.route_model import RouteState
from rules.route_records import AdmitRequest, AttemptReport, Priority
from rules.route_stats import calibrated

WINDOW = 4.0  # a route minute at time scale 15
PACE = pacing.Pace(requests_per_minute=10, images_per_minute=10, window_s=WINDOW, burst=1)
SPACING = WINDOW / 10 * (1 + pacing.MARGIN)
GENERATION_S = 1.5


def drain(
    jobs: int, *, foreign: int = 0, first_byte_s: float = 0.1, slow_every: int = 0
) -> list[float]:
    """Send times of ``jobs`` attempts asking at once; each report carries the headers the
    route showed at its arrival, with ``foreign`` other requests in every window, seen
    ``first_byte_s`` after the send. With ``slow_every``, every such job comes back a
    spacing after it was told (a busy host): the sends are not evenly spaced."""
    state, start = RouteState(), 1000.0
    arrivals: list[float] = []
    events: list[tuple[float, int, str, object]] = [(start, i, "ask", f"j{i}") for i in range(jobs)]
    heapq.heapify(events)
    sends: list[float] = []
    seq = jobs
    while events:
        now, _, kind, item = heapq.heappop(events)
        if kind == "report":
            assert isinstance(item, AttemptReport)
            state = route_model.on_report(state, PACE, item, now)
            continue
        ask = AdmitRequest(
            str(item),
            1,
            Priority.BATCH,
            1,
            "s",
            calibrated(GENERATION_S, first_partial_share=None),
            start,
        )
        state, answer = route_model.on_admit(state, PACE, ask, now)
        seq += 1
        if not answer.admitted:
            assert answer.ask_again_at is not None
            back = answer.ask_again_at
            if slow_every and int(str(item)[1:]) % slow_every == slow_every - 1:
                back += SPACING
            heapq.heappush(events, (back, seq, "ask", item))
            continue
        sent = answer.start_at + 0.05  # the worker's own moment
        arrivals.append(sent)
        sends.append(sent)
        held = [a for a in arrivals if sent - a < WINDOW]
        remaining = max(0, 10 - len(held) - foreign)
        headers = {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{max(held) + WINDOW - sent:.3f}s",
        }
        report = AttemptReport(
            str(item),
            1,
            "s",
            None,
            sent_at=sent,
            first_byte_s=first_byte_s,
            total_s=GENERATION_S,
            rate_limit=headers,
            headers_at=sent + first_byte_s,
            ended_at=sent + GENERATION_S,
        )
        heapq.heappush(events, (sent + GENERATION_S, seq, "report", report))
    return sends


def test_the_headers_of_our_own_full_window_never_stall_the_route():
    sends = drain(40)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert max(gaps) < 2 * SPACING
    # Forty sends at the even pace: within 5% of 39 spacings.
    assert sends[-1] - sends[0] < 39 * SPACING * 1.05


def test_headers_that_come_back_long_after_the_send_are_judged_at_the_send():
    """An image's first byte (and its headers) comes seconds after the route counted the
    request: the full window of our own sends the headers describe is the one up to the send,
    not up to the headers' arrival, or its oldest send would seem gone and ``remaining: 0``
    would hold the route for a whole window."""
    # 4 route seconds, as a 1024x1024 image's; some sends late, so a window's ten sends span
    # nearly the whole window.
    sends = drain(40, first_byte_s=WINDOW / 15, slow_every=7)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert max(gaps) < 2 * SPACING
    assert sends[-1] - sends[0] < 39 * SPACING * 1.1


def test_someone_else_on_the_quota_holds_the_route():
    sends = drain(30, foreign=3)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert max(gaps) > 2 * SPACING  # held until a reset at least once
