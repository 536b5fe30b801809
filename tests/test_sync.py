"""Synchronous wrappers: from plain code, and from code already inside an event loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tiny_tasks import (
    Command,
    Event,
    Interrupt,
    MemorySaver,
    NoCheckpointError,
    Snapshot,
    TaskContext,
    TaskInterrupted,
    emit,
    task,
)

cleanups: list[str] = []


@task("workflow")
async def workflow(name: str, ctx: TaskContext) -> str:
    try:
        emit(f"processing {name}")
        await asyncio.sleep(0)
        answer = ctx.interrupt({"message": "wait"})
        emit(f"done: {answer}")
        return f"{name}: {answer}"
    finally:
        cleanups.append(name)


WAIT = Interrupt({"message": "wait"}, "workflow/interrupt#0")


@task
def countdown(n: int):
    try:
        while n:
            yield n
            n -= 1
        return "liftoff"
    finally:
        cleanups.append("countdown")


@pytest.fixture(autouse=True)
def _clear_cleanups() -> None:
    cleanups.clear()


# -- from plain synchronous code ------------------------------------------------------


def test_invoke_sync_returns_the_result() -> None:
    assert countdown.invoke_sync(3) == "liftoff"


def test_invoke_sync_and_resume_sync(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "sync", "checkpointer": saver}
    with pytest.raises(TaskInterrupted) as caught:
        workflow.invoke_sync("job", **opts)
    assert caught.value.interrupts == [WAIT]
    assert cleanups == ["job"]

    assert workflow.resume_sync("yes", **opts) == "job: yes"
    assert saver.load("sync") is None


def test_invoke_sync_with_a_command(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "sync-cmd", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        workflow.invoke_sync("job", **opts)
    assert workflow.invoke_sync(Command(resume="ok"), **opts) == "job: ok"


def test_resume_sync_without_a_checkpoint(saver: MemorySaver) -> None:
    with pytest.raises(NoCheckpointError, match="'missing'"):
        workflow.resume_sync("x", run_id="missing", checkpointer=saver)


def test_invoke_sync_raises_the_task_exception() -> None:
    @task
    def broken(_: Any) -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        broken.invoke_sync()


def test_stream_sync_yields_events(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "sync-stream", "checkpointer": saver}
    events = list(workflow.stream_sync("job", **opts))
    assert events == [
        Event("processing job", Snapshot([], "sync-stream", ()), None),
        Event(None, Snapshot([], "sync-stream", (WAIT,)), WAIT),
    ]
    resumed = [partial for partial, _, _ in workflow.stream_sync(Command(resume="go"), **opts)]
    assert resumed == ["done: go"]


def test_stream_sync_closed_early_runs_finally_blocks() -> None:
    stream = countdown.stream_sync(10)
    with contextlib.closing(stream):
        for partial, _, _ in stream:
            if partial == 8:
                break
    assert cleanups == ["countdown"]


def test_each_sync_call_gets_its_own_loop() -> None:
    assert [countdown.invoke_sync(n) for n in range(3)] == ["liftoff"] * 3


# -- from inside a running event loop ------------------------------------------------------


async def test_invoke_sync_inside_a_running_loop(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "in-loop", "checkpointer": saver}
    with pytest.raises(TaskInterrupted) as caught:
        workflow.invoke_sync("job", **opts)
    assert caught.value.value == {"message": "wait"}
    assert workflow.resume_sync("yes", **opts) == "job: yes"
    assert cleanups == ["job", "job"]


async def test_stream_sync_inside_a_running_loop(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "in-loop-stream", "checkpointer": saver}
    partials = [partial for partial, _, _ in countdown.stream_sync(3, **opts)]
    assert partials == [3, 2, 1]
    assert saver.load("in-loop-stream") is None


async def test_stream_sync_inside_a_running_loop_closed_early() -> None:
    stream = countdown.stream_sync(10)
    with contextlib.closing(stream):
        assert next(stream).partial == 10
    assert cleanups == ["countdown"]


async def test_the_sync_wrappers_leave_the_callers_loop_running() -> None:
    ticks: list[int] = []

    async def ticker() -> None:
        ticks.append(1)

    assert countdown.invoke_sync(2) == "liftoff"
    await asyncio.create_task(ticker())
    assert ticks == [1]


async def test_async_and_sync_calls_share_a_saver(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "mixed", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        await workflow.invoke("job", **opts)
    assert workflow.resume_sync("sync answer", **opts) == "job: sync answer"
