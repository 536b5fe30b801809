"""A synchronous task's steps and nested tasks are recorded on every saver: each runs
once across a pause and a resume (the body runs in a worker thread; what it asks of the
loop runs on the loop the saver belongs to)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tiny_tasks import Interrupt, TaskContext, get_run, interrupt, step, task

calls: list[str] = []


@step("reserve")
def reserve(item: str) -> str:
    calls.append(f"reserve {item}")
    return f"{item}-reserved"


@task("price")
async def price(item: str) -> int:
    calls.append(f"price {item}")
    return len(item) * 10


@task("order")
def order(item: str, ctx: TaskContext) -> Iterator[str]:
    yield ctx.step_sync(reserve, item)
    yield f"costs {price.invoke_sync(item)}"
    answer = interrupt(f"buy {item}?")
    yield ctx.step_sync(lambda: calls.append(f"charge {answer}") or f"charged {answer}")
    return "done"


async def test_a_sync_tasks_steps_run_once_across_a_pause_on_every_saver(saver: Any) -> None:
    calls.clear()
    opts: dict[str, Any] = {"run_id": "sync-order", "checkpointer": saver}
    first = order("lamp", **opts)
    assert [partial async for partial, _, _ in first] == ["lamp-reserved", "costs 40", None]
    assert first.interrupts == [Interrupt("buy lamp?", "order/interrupt#2")]
    stored = await get_run(saver, "sync-order")
    assert stored is not None
    assert (stored.status, stored.steps, stored.children) == ("paused", 1, 1)

    # Re-attaching reports the pause again and runs nothing.
    again = order(**opts)
    assert [partial async for partial, _, _ in again] == [None]
    assert calls == ["reserve lamp", "price lamp"]

    resumed = order.resume("yes", **opts)
    assert [partial async for partial, _, _ in resumed] == ["charged yes"]
    assert resumed.result == "done"
    assert calls == ["reserve lamp", "price lamp", "charge yes"]
    assert await get_run(saver, "sync-order") is None
