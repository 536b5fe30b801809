"""The seed's LLM examples without a token cache: finished children replay from the journal."""

from __future__ import annotations

import asyncio
from typing import Any

from tiny_tasks import MemorySaver, TaskContext, task


def make_model(calls: list[str]) -> Any:
    @task
    async def model(prompt: str):
        calls.append(prompt)
        for number in range(4):
            await asyncio.sleep(0)
            yield f"{prompt}-token{number}"

    return model


async def test_nested_llm_stream_calls_the_model_once_per_stream_in_total() -> None:
    calls: list[str] = []
    model = make_model(calls)

    @task("llm_call")
    async def llm_call(_: Any, ctx: TaskContext):
        async for token, _, _ in model("before"):
            yield token
        answer = ctx.interrupt({"data": {"question": "confirm?"}})
        yield answer
        async for token, _, _ in model("after"):
            yield token

    @task("workflow")
    async def workflow(_: Any, ctx: TaskContext):
        inner_opts: dict[str, Any] = {"run_id": "inner", "checkpointer": MemorySaver()}
        async for token, _, intr in llm_call("proceed", **inner_opts):
            if token:
                yield token
            if intr:  # never reached: the nested interrupt pauses the whole run
                yield ctx.interrupt(intr)

    opts: dict[str, Any] = {"run_id": "outer", "checkpointer": MemorySaver()}
    first = [event async for event in workflow(None, **opts)]
    assert [e.partial for e in first[:-1]] == [f"before-token{n}" for n in range(4)]
    assert first[-1].interrupt is not None
    assert first[-1].interrupt.value == {"data": {"question": "confirm?"}}
    assert first[-1].interrupt.id == "workflow/llm_call#0/interrupt#1"

    second = [event.partial async for event in workflow.resume("yes", **opts)]
    assert second == ["yes", *(f"after-token{n}" for n in range(4))]
    assert calls == ["before", "after"]  # the "before" stream was replayed, not re-run
