"""devhost.replay: the context JSON it builds, the state it parses, the actions it flattens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import pytest

from devhost import history as h
from devhost.replay import build_context, flatten, parse_state, run_episode

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def greet(ctx: Any) -> Any:
    name = ctx.get_input()
    result = yield ctx.call_activity("hello", name)
    return result


def start_events() -> list[h.Event]:
    return [
        h.orchestrator_started(T0),
        h.execution_started(
            T0, name="greet", input_json='"ann"', instance_id="i", execution_id="e"
        ),
    ]


def test_context_has_exactly_the_hosts_keys_and_marks_past_events_played() -> None:
    past = start_events()
    new = [h.orchestrator_started(T0), h.task_completed(T0, task_id=0, result_json='"hi"')]
    context = json.loads(
        build_context(
            instance_id="i", input_json='"ann"', past=past, new=new, parent_instance_id="p"
        )
    )
    assert set(context) == {
        "history",
        "input",
        "instanceId",
        "isReplaying",
        "parentInstanceId",
        "upperSchemaVersion",
        "upperSchemaVersionNew",
    }
    assert (context["upperSchemaVersion"], context["upperSchemaVersionNew"]) == (1, 2)
    assert [e["IsPlayed"] for e in context["history"]] == [True, True, False, False]
    assert context["parentInstanceId"] == "p"
    assert context["input"] == '"ann"'


def test_run_episode_reads_a_first_and_a_final_episode() -> None:
    handle = df.Orchestrator.create(greet)
    first = run_episode(
        handle, build_context(instance_id="i", input_json='"ann"', past=[], new=start_events())
    )
    assert first.is_done is False
    assert first.actions == [{"actionType": 0, "functionName": "hello", "input": '"ann"'}]
    done = run_episode(
        handle,
        build_context(
            instance_id="i",
            input_json='"ann"',
            past=start_events(),
            new=[
                h.orchestrator_started(T0),
                h.task_completed(T0, task_id=0, result_json='"hi ann"'),
            ],
        ),
    )
    assert done.is_done is True
    assert done.has_output is True
    assert done.output == "hi ann"


def test_run_episode_turns_a_user_exception_into_an_error_result() -> None:
    def fails(ctx: Any) -> Any:
        ctx.set_custom_status("trying")
        yield ctx.call_activity("x", None)
        raise RuntimeError("no luck")

    result = run_episode(
        df.Orchestrator.create(fails),
        build_context(
            instance_id="i",
            input_json=None,
            past=start_events(),
            new=[h.orchestrator_started(T0), h.task_completed(T0, task_id=0, result_json="1")],
        ),
    )
    assert result.error == "no luck"
    assert result.custom_status == "trying"
    assert result.is_done is False


def test_run_episode_reports_a_broken_handle_without_raising() -> None:
    def broken(_: str) -> str:
        raise KeyError("history")

    result = run_episode(broken, "{}")
    assert result.error == "KeyError: 'history'"


def test_parse_state_rejects_v1_style_multiple_lists() -> None:
    with pytest.raises(ValueError, match="one actions list"):
        parse_state(json.dumps({"isDone": False, "actions": [[], []]}))


def test_flatten_orders_nested_compound_children_as_ids_are_handed_out() -> None:
    actions = [
        {"actionType": 0, "functionName": "a"},
        {
            "actionType": 12,
            "compoundActions": [
                {"actionType": 1, "functionName": "b"},
                {"actionType": 11, "compoundActions": [{"actionType": 5}, {"actionType": 6}]},
            ],
        },
    ]
    assert [a["actionType"] for a in flatten(actions)] == [0, 1, 5, 6]
