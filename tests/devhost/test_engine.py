"""devhost's Engine driven by small SDK orchestrators and fake activities (no HTTP)."""

from __future__ import annotations

from typing import Any

from devhost.engine import Engine
from tests.devhost.engine_fixtures.harness import finished, json_activity, make_engine, run


async def hello(value: Any) -> str:
    return f"hi {value}"


def chain(ctx: Any) -> Any:
    first = yield ctx.call_activity("hello", "a")
    second = yield ctx.call_activity("hello", "b")
    return [first, second]


def fan_out(ctx: Any) -> Any:
    ctx.set_custom_status({"phase": "fan-out"})
    results = yield ctx.task_all([ctx.call_activity("hello", i) for i in range(5)])
    return results


def test_activity_chain_completes_with_outputs_in_order() -> None:
    engine = make_engine(orchestrators={"chain": chain}, activities={"hello": json_activity(hello)})

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("chain", "chain-1", None)
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["hi a", "hi b"]
    assert status["instanceId"] == "chain-1"


def test_fan_out_fan_in_returns_every_result_and_custom_status() -> None:
    engine = make_engine(
        orchestrators={"fan_out": fan_out}, activities={"hello": json_activity(hello)}
    )

    async def scenario(engine: Engine) -> dict[str, Any]:
        instance_id = await engine.start_new("fan_out", None, None)
        return await finished(engine, instance_id)

    status = run(engine, scenario)
    assert status["output"] == [f"hi {i}" for i in range(5)]
    assert status["customStatus"] == {"phase": "fan-out"}
