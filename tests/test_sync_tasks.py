"""Synchronous tasks (`def` functions and generators) run in a worker thread: they never
block the event loop, and they run steps (`ctx.step_sync`) and nested tasks
(`child.invoke_sync`) that are recorded in their run like an async task's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tiny_tasks import (
    Command,
    Interrupt,
    MemorySaver,
    TaskContext,
    TaskInterrupted,
    emit,
    get_run,
    interrupt,
    step,
    task,
)


async def test_a_sync_task_does_not_block_the_event_loop() -> None:
    # The body waits for an event that only a coroutine on the loop sets.
    released = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    @task
    def waits(n: int) -> Iterator[int]:
        loop.call_soon_threadsafe(started.set)
        assert released.wait(timeout=30), "the loop was blocked while the body ran"
        yield n

    async def other_run() -> str:
        await started.wait()
        released.set()
        return "other ran"

    partials, other = await asyncio.gather(_partials(waits(7)), other_run())
    assert (partials, other) == ([7], "other ran")


async def _partials(stream: Any) -> list[Any]:
    return [partial async for partial, _, _ in stream]


async def test_a_sync_generator_task_runs_its_steps_once_across_a_pause(
    saver: MemorySaver,
) -> None:
    calls: list[int] = []

    @step("charge")
    def charge(amount: int) -> str:
        calls.append(amount)
        return f"receipt-{amount}"

    def ship(address: str) -> str:
        calls.append(len(address))
        return f"shipped to {address}"

    @task
    def checkout(amount: int, ctx: TaskContext) -> Iterator[str]:
        yield ctx.step_sync(charge, amount)
        address = interrupt("address?")
        yield ctx.step_sync(ship, address)

    opts: dict[str, Any] = {"run_id": "sync-checkout", "checkpointer": saver}
    first = checkout(30, **opts)
    assert await _partials(first) == ["receipt-30", None]
    assert first.interrupts == [Interrupt("address?", "checkout/interrupt#1")]
    assert await _partials(checkout.resume("Main St", **opts)) == ["shipped to Main St"]
    assert calls == [30, 7]


async def test_a_plain_sync_task_returns_what_its_steps_give(saver: MemorySaver) -> None:
    calls: list[str] = []

    async def fetch(url: str) -> str:
        calls.append(url)
        await asyncio.sleep(0)
        return url.upper()

    @task
    def report(url: str, ctx: TaskContext) -> str:
        page = ctx.step_sync(fetch, url)
        emit(f"fetched {page}")
        return f"{page} approved by {interrupt('approve?')}"

    opts: dict[str, Any] = {"run_id": "sync-report", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        await report.invoke("a.org", **opts)
    assert await report.invoke(Command(resume="ann"), **opts) == "A.ORG approved by ann"
    assert calls == ["a.org"]


async def test_a_nested_sync_call_in_a_sync_task_is_part_of_the_run(saver: MemorySaver) -> None:
    runs: list[str] = []

    @task("child")
    async def child(n: int) -> int:
        runs.append(f"child {n}")
        return n * 10

    @task("streamer")
    def streamer(n: int) -> Iterator[int]:
        yield n
        yield n + 1

    @task("parent")
    def parent(n: int) -> Iterator[Any]:
        yield child.invoke_sync(n)
        stream = streamer.stream_sync(n)
        yield [partial for partial, _, _ in stream]
        yield interrupt("go on?")

    opts: dict[str, Any] = {"run_id": "sync-parent", "checkpointer": saver}
    assert await _partials(parent(2, **opts)) == [20, [2, 3], None]
    stored = await get_run(saver, "sync-parent")
    assert stored is not None
    assert (stored.children, stored.pending) == (2, (Interrupt("go on?", "parent/interrupt#2"),))
    assert await _partials(parent.resume("yes", **opts)) == ["yes"]
    assert runs == ["child 2"]


async def test_awaitable_steps_in_a_sync_task_say_to_use_step_sync() -> None:
    @step
    def double(n: int) -> int:
        return n * 2

    @task
    def decorated(n: int) -> Any:
        return double(n)

    @task
    def via_ctx(n: int, ctx: TaskContext) -> Any:
        return ctx.step(double, n)

    for job in (decorated, via_ctx):
        with pytest.raises(RuntimeError, match=r"call the step with ctx\.step_sync"):
            await job.invoke(1)


async def test_step_sync_in_an_async_task_says_to_await_ctx_step() -> None:
    @task
    async def job(n: int, ctx: TaskContext) -> int:
        return ctx.step_sync(lambda: n)

    with pytest.raises(RuntimeError, match=r"in an async task, use await ctx\.step"):
        await job.invoke(1)


async def test_a_sync_child_waiting_on_a_step_lets_it_finish_when_a_sibling_pauses(
    saver: MemorySaver,
) -> None:
    # A step's function in a worker thread cannot be stopped: cancelling the task
    # awaiting it would only throw its result away, and it would run again on resume.
    # The pause waits for it and records it instead.
    in_step = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def blocking() -> str:
        in_step.set()
        release.wait(timeout=30)
        calls.append("blocking")
        return "late"

    @task("worker")
    def worker(_: Any, ctx: TaskContext) -> str:
        value: str = ctx.step_sync(blocking)
        return value

    @task("asker")
    async def asker(_: Any) -> str:
        await asyncio.to_thread(in_step.wait, 30)
        asyncio.get_running_loop().call_soon(release.set)  # once this task has paused
        return str(interrupt("go?"))

    @task("parent")
    async def parent(_: Any) -> list[str]:
        return list(await asyncio.gather(worker.invoke(None), asker.invoke(None)))

    opts: dict[str, Any] = {"run_id": "sync-sibling", "checkpointer": saver}
    stream = parent(**opts)
    assert await _partials(stream) == [None]
    assert stream.interrupts == [Interrupt("go?", "parent/asker#1/interrupt#0")]
    stored = await get_run(saver, "sync-sibling")
    assert stored is not None
    assert (stored.status, stored.steps) == ("paused", 1)
    assert calls == ["blocking"]
    assert await parent.invoke(Command(resume="yes"), **opts) == ["late", "yes"]
    assert calls == ["blocking"]  # replayed, not run again


def test_stream_sync_gives_the_result_of_a_coroutine_task() -> None:
    @task("summer")
    async def summer(values: list[int]) -> int:
        total = 0
        for value in values:
            total += value
            emit(total)
        return total

    stream = summer.stream_sync([1, 2, 3], run_id="sums")
    assert stream.run_id == "sums"
    assert stream.result is None
    assert [partial for partial, _, _ in stream] == [1, 3, 6]
    assert (stream.result, stream.interrupts) == (6, [])


def test_stream_sync_gives_the_interrupts_of_a_paused_run() -> None:
    saver = MemorySaver()

    @task("asks")
    async def asks(_: Any) -> str:
        emit("before")
        return str(interrupt("why?"))

    with asks.stream_sync(run_id="asks-run", checkpointer=saver) as stream:
        events = list(stream)
    assert [event.partial for event in events] == ["before", None]
    assert stream.interrupts == [Interrupt("why?", "asks/interrupt#0")]
    assert stream.result is None
    resumed = asks.stream_sync(Command(resume="because"), run_id="asks-run", checkpointer=saver)
    assert list(resumed) == []
    assert resumed.result == "because"


def test_stream_sync_closed_early_stops_the_task() -> None:
    stopped: list[str] = []

    @task("endless")
    async def endless(_: Any) -> None:
        try:
            n = 0
            while True:
                n += 1
                emit(n)
                await asyncio.sleep(0)
        finally:
            stopped.append("finally")

    stream = endless.stream_sync()
    assert [next(stream).partial, next(stream).partial] == [1, 2]
    stream.close()
    stream.close()
    assert stopped == ["finally"]
    assert stream.result is None
