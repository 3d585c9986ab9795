"""devhost.history: event builders and the historyEvents rendering of the host reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devhost import history as h

T0 = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_timestamps_use_dotnet_round_trip_and_status_forms() -> None:
    assert h.event_timestamp(T0) == "2024-05-01T10:00:00.1234560Z"
    assert h.status_time(T0) == "2024-05-01T10:00:00Z"
    assert h.parse_time("2024-05-01T10:00:00.1234567Z") == T0
    assert h.parse_time("2024-05-01T10:00:00.123456Z") == T0
    assert h.parse_time("2024-05-01T10:00:00.123456+00:00") == T0


def test_every_event_has_the_common_fields() -> None:
    event = h.task_scheduled(T0, task_id=3, name="hello", input_json='"x"')
    assert event == {
        "EventType": 4,
        "EventId": 3,
        "IsPlayed": False,
        "Timestamp": "2024-05-01T10:00:00.1234560Z",
        "Name": "hello",
        "Version": "",
        "Input": '"x"',
    }
    assert h.timer_fired(T0, timer_id=2, fire_at=T0)["TimerId"] == 2
    assert h.task_failed(T0, task_id=1, reason="r", details="d")["EventId"] == -1


def sample() -> list[h.Event]:
    later = T0 + timedelta(seconds=1)
    return [
        h.orchestrator_started(T0),
        h.execution_started(
            T0, name="orch", input_json='{"a": 1}', instance_id="i", execution_id="e"
        ),
        h.task_scheduled(T0, task_id=0, name="hello", input_json='"x"'),
        h.timer_created(T0, timer_id=1, fire_at=later),
        h.orchestrator_completed(T0),
        h.orchestrator_started(later),
        h.task_completed(later, task_id=0, result_json='{"ok": true}'),
        h.timer_fired(later, timer_id=1, fire_at=later),
        h.task_scheduled(later, task_id=2, name="pending", input_json="null"),
        h.execution_completed(later, status="Completed", result_json='"done"'),
        h.orchestrator_completed(later),
    ]


def test_render_folds_scheduled_into_completed_and_drops_orchestrator_events() -> None:
    events = h.render_history(sample(), show_history_output=True, show_input=True)
    assert [e["EventType"] for e in events] == [
        "ExecutionStarted",
        "TimerCreated",
        "TaskCompleted",
        "TimerFired",
        "TaskScheduled",
        "ExecutionCompleted",
    ]
    started, timer, completed, fired, pending, finished = events
    assert started == {
        "EventType": "ExecutionStarted",
        "Timestamp": "2024-05-01T10:00:00.1234560Z",
        "Input": '{"a": 1}',
        "FunctionName": "orch",
    }
    assert completed["FunctionName"] == "hello"
    assert completed["ScheduledTime"] == "2024-05-01T10:00:00.1234560Z"
    assert completed["Input"] == '"x"'
    assert completed["Result"] == {"ok": True}
    assert "TaskScheduledId" not in completed
    assert "EventId" not in completed
    assert "IsPlayed" not in completed
    assert "TimerId" not in fired
    assert "FireAt" in timer
    assert pending["Name"] == "pending"
    assert "Version" not in pending
    assert finished["Result"] == "done"


def test_render_hides_results_and_inputs_unless_asked() -> None:
    events = h.render_history(sample(), show_history_output=False, show_input=False)
    for event in events:
        assert "Result" not in event
        assert "Input" not in event
