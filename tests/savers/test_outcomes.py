"""Kept outcomes, submitted runs and pruning, on every saver."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tiny_tasks import (
    InputMismatchError,
    RunCancelled,
    RunFailedError,
    TaskContext,
    TaskMismatchError,
    cancel_run,
    get_run,
    list_runs,
    prune,
    task,
    use_clock,
)
from tiny_tasks._driver import Driver, driving
from tiny_tasks.testing import ManualClock

calls: list[str] = []


async def record(label: str) -> str:
    calls.append(label)
    return label


@task("greet")
async def greet(name: str, ctx: TaskContext) -> str:
    await ctx.step(record, name)
    ctx.emit(f"hello {name}")
    return f"greeted {name}"


@task("explode")
async def explode(name: str, ctx: TaskContext) -> str:
    await ctx.step(record, name)
    raise ValueError(f"no {name}")


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    calls.clear()


async def test_a_kept_run_returns_its_outcome_and_runs_nothing(saver: Any) -> None:
    opts: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    assert await greet.invoke("ada", keep=True, **opts) == "greeted ada"
    state = await get_run(saver, "r1")
    assert state is not None
    assert (state.status, state.outcome, state.result, state.error) == (
        "done",
        "done",
        "greeted ada",
        None,
    )
    assert (state.input, state.steps, state.lease_owner) == ("ada", 1, None)

    assert await greet.invoke("ada", **opts) == "greeted ada"  # keep= is not needed
    stream = greet(**opts)
    assert [event async for event in stream] == []
    assert stream.result == "greeted ada"
    assert calls == ["ada"]
    with pytest.raises(InputMismatchError):
        await greet.invoke("bob", **opts)
    with pytest.raises(TaskMismatchError):
        await explode.invoke("ada", **opts)
    again = await get_run(saver, "r1")
    assert again is not None
    assert again.version == state.version


async def test_a_kept_failure_is_raised_again_without_running(saver: Any) -> None:
    opts: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with pytest.raises(ValueError, match="no ada"):
        await explode.invoke("ada", keep=True, **opts)
    state = await get_run(saver, "r1")
    assert state is not None
    assert (state.status, state.outcome) == ("failed", "failed")
    assert state.error == ("ValueError", "no ada")
    with pytest.raises(RunFailedError) as failed:
        await explode.invoke("ada", **opts)
    assert (failed.value.type_name, failed.value.error_message) == ("ValueError", "no ada")
    assert str(failed.value) == "run 'r1' failed earlier with ValueError: no ada"
    assert calls == ["ada"]


async def test_a_run_kept_under_a_driver_that_keeps(saver: Any) -> None:
    with driving(Driver(keep=True)):
        assert await greet.invoke("ada", run_id="r1", checkpointer=saver) == "greeted ada"
    assert await greet.invoke("ada", run_id="r2", checkpointer=saver) == "greeted ada"
    kept, gone = await get_run(saver, "r1"), await get_run(saver, "r2")
    assert kept is not None
    assert (kept.outcome, gone) == ("done", None)


async def test_submit_queues_a_run_once_per_run_id(saver: Any) -> None:
    assert await greet.submit("ada", run_id="order-1", checkpointer=saver) == "order-1"
    assert await greet.submit("ada", run_id="order-1", checkpointer=saver) == "order-1"
    with pytest.raises(InputMismatchError):
        await greet.submit("bob", run_id="order-1", checkpointer=saver)
    with pytest.raises(TaskMismatchError):
        await explode.submit("ada", run_id="order-1", checkpointer=saver)
    queued = await get_run(saver, "order-1")
    assert queued is not None
    assert (queued.status, queued.input, queued.lease_owner, queued.version) == (
        "queued",
        "ada",
        None,
        1,
    )
    assert calls == []

    # Re-attaching a queued run (what a worker does) starts it from its stored input,
    # and keeps its outcome as submitted.
    events = [event.partial async for event in greet(run_id="order-1", checkpointer=saver)]
    assert events == ["hello ada"]
    done = await get_run(saver, "order-1")
    assert done is not None
    assert (done.status, done.result) == ("done", "greeted ada")
    assert await greet.submit("ada", run_id="order-1", checkpointer=saver) == "order-1"
    assert calls == ["ada"]  # a finished, kept run is not submitted again


async def test_submit_keep_false_and_generated_run_ids(saver: Any) -> None:
    run_id = await greet.submit("ada", checkpointer=saver, keep=False)
    assert len(run_id) == 32
    other = await greet.submit("ada", checkpointer=saver)
    assert other != run_id
    with driving(Driver(keep=True)):  # a worker keeps by default; the submitter said no
        assert await greet.invoke(run_id=run_id, checkpointer=saver) == "greeted ada"
    assert await get_run(saver, run_id) is None  # submitted with keep=False: deleted


async def test_a_cancelled_queued_run_never_runs(saver: Any) -> None:
    await greet.submit("ada", run_id="q", checkpointer=saver)
    info = await cancel_run(saver, "q")
    assert info is not None
    assert info.status == "cancelled"
    state = await get_run(saver, "q")
    assert state is not None
    assert (state.status, state.outcome, state.error[0] if state.error else None) == (
        "cancelled",
        "cancelled",
        "RunCancelled",
    )
    with pytest.raises(RunCancelled):
        await greet.invoke("ada", run_id="q", checkpointer=saver)
    with pytest.raises(RunCancelled):
        [event async for event in greet(run_id="q", checkpointer=saver)]
    assert calls == []
    assert await cancel_run(saver, "missing") is None


async def test_prune_counts_the_finished_runs_it_removes(saver: Any) -> None:
    with use_clock(ManualClock(start=1_000_000.0)) as clock:
        assert await greet.invoke("a", run_id="old-done", checkpointer=saver, keep=True)
        with pytest.raises(ValueError, match="no b"):
            await explode.invoke("b", run_id="old-failed", checkpointer=saver, keep=True)
        await greet.submit("c", run_id="queued", checkpointer=saver)
        await clock.advance(timedelta(days=8).total_seconds())
        assert await greet.invoke("d", run_id="new-done", checkpointer=saver, keep=True)
        assert await prune(saver, older_than=timedelta(days=7)) == 2
        assert await prune(saver, older_than=timedelta(days=7)) == 0
        await clock.advance(1.0)
        assert await prune(saver, older_than=0) == 1
    assert [info.run_id for info in await list_runs(saver)] == ["queued"]
    with pytest.raises(ValueError, match="older_than"):
        await prune(saver, older_than=-1)


async def test_a_stream_says_how_the_run_ended_also_when_it_was_kept(saver: Any) -> None:
    opts: dict[str, Any] = {"run_id": "s1", "checkpointer": saver, "keep": True}
    stream = greet("ada", **opts)
    assert [event.partial async for event in stream] == ["hello ada"]
    assert stream.status == "done"
    again = greet("ada", **opts)
    assert [event async for event in again] == []
    assert (again.status, again.result) == ("done", "greeted ada")

    failing = explode("bob", run_id="s2", checkpointer=saver, keep=True)
    with pytest.raises(ValueError, match="no bob"):
        async for _ in failing:
            pass
    assert failing.status == "failed"
    failing_again = explode("bob", run_id="s2", checkpointer=saver, keep=True)
    with pytest.raises(RunFailedError):
        async for _ in failing_again:
            pass
    assert failing_again.status == "failed"

    await greet.submit("cy", run_id="s3", checkpointer=saver)
    await cancel_run(saver, "s3")
    cancelled = greet("cy", run_id="s3", checkpointer=saver)
    with pytest.raises(RunCancelled):
        async for _ in cancelled:
            pass
    assert cancelled.status == "cancelled"
    assert calls == ["ada", "bob"]
