"""Cancelling runs: paused, inside a step, inside a nested child, at a partial; the task
unwinds with `RunCancelled` and its compensation steps are recorded.

A running run learns of the cancel at its next write (a failed compare-and-swap) or at
its lease's renewal, which the test triggers by moving a `ManualClock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest

from tiny_tasks import (
    RunCancelled,
    TaskContext,
    TaskInterrupted,
    cancel_run,
    get_run,
    task,
    use_clock,
)
from tiny_tasks._driver import Driver, driving
from tiny_tasks.testing import ManualClock

calls: list[str] = []


async def record(label: str) -> str:
    calls.append(label)
    return label


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    calls.clear()


@task("book_trip")
async def book_trip(city: str, ctx: TaskContext) -> str:
    await ctx.step(record, f"book hotel in {city}")
    try:
        ctx.interrupt("pay?")
    except RunCancelled:
        await ctx.step(record, "cancel hotel")  # compensation: recorded
        raise
    await ctx.step(record, "charge card")
    return "booked"


async def test_cancelling_a_paused_run_unwinds_it_with_its_compensation(saver: Any) -> None:
    opts: dict[str, Any] = {"run_id": "trip", "checkpointer": saver, "keep": True}
    with pytest.raises(TaskInterrupted):
        await book_trip.invoke("Oslo", **opts)
    assert calls == ["book hotel in Oslo"]
    info = await cancel_run(saver, "trip")
    assert info is not None
    assert (info.status, info.cancel_requested) == ("paused", True)
    state = await get_run(saver, "trip")
    assert state is not None
    assert state.cancel_requested is True

    # A re-attach (what a worker does once it claims it) replays it and unwinds it.
    with pytest.raises(RunCancelled, match="stopped at interrupt 'book_trip/interrupt#1'"):
        await book_trip.invoke(**opts)
    assert calls == ["book hotel in Oslo", "cancel hotel"]
    state = await get_run(saver, "trip")
    assert state is not None
    assert (state.status, state.outcome, state.steps) == ("cancelled", "cancelled", 2)
    assert state.error is not None
    assert state.error[0] == "RunCancelled"
    assert (state.lease_owner, state.pending) == (None, ())

    with pytest.raises(RunCancelled, match="cancelled earlier"):
        await book_trip.invoke(**opts)  # kept: nothing runs again
    assert len(calls) == 2


async def test_a_cancelled_run_that_is_not_kept_is_deleted(saver: Any) -> None:
    opts: dict[str, Any] = {"run_id": "trip", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        await book_trip.invoke("Rome", **opts)
    await cancel_run(saver, "trip")
    with pytest.raises(RunCancelled):
        await book_trip.invoke(**opts)
    assert await get_run(saver, "trip") is None


class Blocked:
    """An async step that waits until it is cancelled (or let go)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0

    async def wait(self, label: str) -> str:
        calls.append(label)
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return label


async def test_an_async_step_in_flight_is_cancelled_through_asyncio(saver: Any) -> None:
    blocked = Blocked()

    @task("long_job")
    async def long_job(_: Any, ctx: TaskContext) -> str:
        try:
            await ctx.step(blocked.wait, "crunch")
        except RunCancelled:
            await ctx.step(record, "clean up")
            raise
        await ctx.step(record, "never")
        return "finished"

    with use_clock(ManualClock()) as clock:
        with driving(Driver(owner="me", renew_seconds=10.0)):
            running = asyncio.create_task(
                long_job.invoke(None, run_id="job", checkpointer=saver, keep=True)
            )
        await blocked.started.wait()
        await cancel_run(saver, "job")
        await clock.advance(10.0)  # the renewal sees the request and cancels the step
        with pytest.raises(RunCancelled, match="stopped at step 'long_job/wait#0'"):
            await running
    assert blocked.cancelled == 1
    assert calls == ["crunch", "clean up"]
    state = await get_run(saver, "job")
    assert state is not None
    assert (state.status, state.steps, state.lease_owner) == ("cancelled", 1, None)


async def test_a_thread_step_in_flight_runs_to_its_end_and_is_recorded(saver: Any) -> None:
    started, release = threading.Event(), threading.Event()

    def blocking(label: str) -> str:
        calls.append(label)
        started.set()
        release.wait(timeout=30)
        return label

    @task("thread_job")
    async def thread_job(_: Any, ctx: TaskContext) -> str:
        await ctx.step(blocking, "in a thread")
        await ctx.step(record, "never")
        return "finished"

    with use_clock(ManualClock()) as clock:
        with driving(Driver(renew_seconds=10.0)):
            running = asyncio.create_task(
                thread_job.invoke(None, run_id="job", checkpointer=saver, keep=True)
            )
        await asyncio.to_thread(started.wait, 30)
        await cancel_run(saver, "job")
        await clock.advance(10.0)  # the renewal cancels the step's await; the thread runs on
        release.set()
        with pytest.raises(RunCancelled, match="stopped at step 'thread_job/blocking#0'"):
            await running
    assert calls == ["in a thread"]
    state = await get_run(saver, "job")
    assert state is not None
    assert (state.status, state.steps) == ("cancelled", 1)  # its outcome was recorded


async def test_a_step_that_ends_after_the_request_is_recorded_then_the_run_stops(
    saver: Any,
) -> None:
    blocked = Blocked()

    @task("two_steps")
    async def two_steps(_: Any, ctx: TaskContext) -> str:
        await ctx.step(blocked.wait, "first")
        await ctx.step(record, "second")
        return "finished"

    with use_clock(ManualClock()):
        # No renewal in time: the run learns of the cancel from its next write's conflict.
        with driving(Driver(owner="me", renew_seconds=3600.0)):
            running = asyncio.create_task(
                two_steps.invoke(None, run_id="job", checkpointer=saver, keep=True)
            )
        await blocked.started.wait()
        await cancel_run(saver, "job")
        blocked.release.set()
        with pytest.raises(RunCancelled):
            await running
    assert calls == ["first"]
    state = await get_run(saver, "job")
    assert state is not None
    assert (state.status, state.steps) == ("cancelled", 1)  # the first step's result kept


async def test_cancelling_inside_a_nested_child(saver: Any) -> None:
    blocked = Blocked()

    @task("child")
    async def child(label: str, ctx: TaskContext) -> str:
        try:
            return str(await ctx.step(blocked.wait, label))
        finally:
            await ctx.step(record, f"child cleanup {label}")

    @task("parent")
    async def parent(_: Any, ctx: TaskContext) -> str:
        try:
            return await child.invoke("deep")
        except RunCancelled:
            await ctx.step(record, "parent compensation")
            raise

    with use_clock(ManualClock()) as clock:
        with driving(Driver(renew_seconds=10.0)):
            running = asyncio.create_task(
                parent.invoke(None, run_id="tree", checkpointer=saver, keep=True)
            )
        await blocked.started.wait()
        await cancel_run(saver, "tree")
        await clock.advance(10.0)
        with pytest.raises(RunCancelled):
            await running
    assert calls == ["deep", "child cleanup deep", "parent compensation"]
    state = await get_run(saver, "tree")
    assert state is not None
    assert (state.status, state.steps) == ("cancelled", 2)


async def test_a_task_that_swallows_the_cancel_gets_it_again_at_its_next_effect(
    saver: Any,
) -> None:
    @task("stubborn")
    async def stubborn(_: Any, ctx: TaskContext) -> str:
        with contextlib.suppress(RunCancelled):  # swallowed
            ctx.interrupt("wait")
        await ctx.step(record, "after swallowing")
        return "done anyway"

    opts: dict[str, Any] = {"run_id": "s", "checkpointer": saver, "keep": True}
    with pytest.raises(TaskInterrupted):
        await stubborn.invoke(None, **opts)
    await cancel_run(saver, "s")
    with pytest.raises(RunCancelled, match="caught RunCancelled and went on"):
        await stubborn.invoke(**opts)
    assert calls == []
    state = await get_run(saver, "s")
    assert state is not None
    assert state.status == "cancelled"


async def test_a_cancel_reaches_a_streaming_run_at_its_next_partial(saver: Any) -> None:
    closed: list[str] = []

    @task("ticker")
    async def ticker(_: Any) -> Any:
        try:
            for n in range(5):
                yield n
        finally:
            closed.append("finally")

    with use_clock(ManualClock()):
        stream = ticker(None, run_id="t", checkpointer=saver, keep=True)
        assert (await anext(stream)).partial == 0
        await cancel_run(saver, "t")
        with pytest.raises(RunCancelled, match="stopped at a partial"):
            await anext(stream)
    assert closed == ["finally"]
    state = await get_run(saver, "t")
    assert state is not None
    assert (state.status, state.delivered, state.lease_owner) == ("cancelled", 1, None)
