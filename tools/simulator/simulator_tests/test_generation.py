"""The pure timeline of a generation, with each stream fault cut into it."""

from __future__ import annotations

from simulator.faults import parse_fault
from simulator.generation import Step, build_steps, fault_time
from simulator.latency import GenerationPlan
from simulator.validation import ImageRequest, parse_generation

PLAN = GenerationPlan(first_byte_s=10.0, total_s=100.0, partial_at_s=(10.0, 50.0))


def request(n: int = 1) -> ImageRequest:
    body = {"model": "gpt-image-2", "prompt": "x", "stream": True, "partial_images": 2, "n": n}
    return parse_generation(body, owner="openai", model=None, models=("gpt-image-2",))


def kinds(steps: list[Step]) -> list[tuple[str, float, int, int]]:
    return [(s.kind, s.at_s, s.image_index, s.partial_index) for s in steps]


def test_partials_then_finals_for_every_image():
    assert kinds(build_steps(request(n=2), PLAN)) == [
        ("partial", 10.0, 0, 0),
        ("partial", 10.0, 1, 0),
        ("partial", 50.0, 0, 1),
        ("partial", 50.0, 1, 1),
        ("completed", 100.0, 0, 0),
        ("completed", 100.0, 1, 0),
    ]


def test_mid_stream_error_after_k_partials_stops_the_generation():
    fault = parse_fault({"kind": "mid_stream_error", "after_partials": 1})
    assert kinds(build_steps(request(), PLAN, fault)) == [
        ("partial", 10.0, 0, 0),
        ("error", 50.0, 0, 1),
    ]


def test_failure_after_more_partials_than_planned_comes_at_the_final():
    assert fault_time(PLAN, 3) == 100.0
    fault = parse_fault({"kind": "stream_without_completed", "after_partials": 3})
    assert [s.kind for s in build_steps(request(), PLAN, fault)] == ["partial", "partial", "end"]


def test_connection_reset_cuts_the_client_but_the_generation_runs_on():
    fault = parse_fault({"kind": "connection_reset", "at": "after_partials", "after_partials": 1})
    assert [s.kind for s in build_steps(request(), PLAN, fault)] == [
        "partial",
        "reset",
        "partial",
        "completed",
    ]
    early = parse_fault({"kind": "connection_reset"})
    assert [s.kind for s in build_steps(request(), PLAN, early)][:1] == ["reset"]


def test_faults_answered_before_a_generation_leave_the_timeline_alone():
    fault = parse_fault({"kind": "http_error", "status": 500})
    assert build_steps(request(), PLAN, fault) == build_steps(request(), PLAN)
