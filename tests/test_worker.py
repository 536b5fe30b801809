"""The Worker: claiming, concurrency, errors, stopping, signals, logging and tracing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tiny_tasks import CheckpointerTypeError, MemorySaver, Worker, step, task, use_clock
from tiny_tasks.savers.base import RunInfo
from tiny_tasks.testing import ManualClock

sys.path.insert(0, str(Path(__file__).parent / "savers"))
from dict_saver import DictSaver


class LeasingSaver(MemorySaver):
    """MemorySaver with a record of every claim and release (what the worker asked)."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[str, tuple[str, ...], int]] = []
        self.released: list[tuple[str, str]] = []

    @property
    def runs(self) -> dict[str, Any]:
        """The stored runs by id."""
        return {info.run_id: self.load(info.run_id) for info in self.list_runs(limit=10_000)}

    def claim_runs(
        self, owner: str, task_names: Any, now: float, lease_expires: float, limit: int
    ) -> list[RunInfo]:
        self.claims.append((owner, tuple(task_names), limit))
        return super().claim_runs(owner, task_names, now, lease_expires, limit)

    def release_lease(self, run_id: str, owner: str) -> None:
        self.released.append((run_id, owner))
        super().release_lease(run_id, owner)


executed: list[str] = []
gates: dict[str, asyncio.Event] = {}


@step
async def work(name: str) -> str:
    executed.append(name)
    gate = gates.get(name)
    if gate is not None:
        await gate.wait()
    return name.upper()


@task
async def two_steps(name: str):
    yield await work(f"{name}.a")
    yield await work(f"{name}.b")


@task
async def breaks(name: str):
    yield await work(f"{name}.a")
    raise RuntimeError(f"{name} broke")


@task
async def other(name: str):
    yield name


@pytest.fixture(autouse=True)
def _reset() -> None:
    executed.clear()
    gates.clear()


def statuses(saver: LeasingSaver, *finished: str) -> dict[str, str]:
    """The stored runs' statuses; `finished` runs that are not stored count as "done"
    (an engine that does not keep outcomes deletes a run when it finishes)."""
    found = {run_id: run.status for run_id, run in saver.runs.items()}
    return {**{run_id: "done" for run_id in finished}, **found}


async def settle() -> None:
    """Let every ready task run until each waits on something outside the loop's turn
    (the saver here is synchronous: no I/O to wait for)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def until(condition: Any) -> None:
    """Let the loop turn until `condition()` holds (nothing here waits on real I/O)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def abandon(saver: Any, fn: Any, name: str, run_id: str) -> Any:
    """Start a run, take its first partial (so its first step is recorded) and leave it
    `running` without a lease, as a driver that died would (the stream is returned so it
    is not collected meanwhile)."""
    stream = fn(name, run_id=run_id, checkpointer=saver)
    await stream.__anext__()
    stored = saver.load(run_id)
    if stored.lease_owner is not None:  # its driver's lease, as if it had expired
        saver.release_lease(run_id, stored.lease_owner)
        saver.released.clear()
    return stream


async def test_run_once_drives_abandoned_runs_of_its_tasks_only() -> None:
    saver = LeasingSaver()
    held = [await abandon(saver, two_steps, f"r{i}", f"run-{i}") for i in range(3)]
    held.append(await abandon(saver, other, "x", "other-1"))
    assert executed == ["r0.a", "r1.a", "r2.a"]
    worker = Worker(saver, [two_steps], owner="w1")

    assert await worker.run_once() == 3

    # Each run continued from its recorded step: the first steps ran once, the second once.
    assert sorted(executed) == ["r0.a", "r0.b", "r1.a", "r1.b", "r2.a", "r2.b"]
    assert statuses(saver, "run-0", "run-1", "run-2") == {
        "run-0": "done",
        "run-1": "done",
        "run-2": "done",
        "other-1": "running",  # another task's run is never claimed
    }
    assert [claim[:2] for claim in saver.claims] == [("w1", ("two_steps",))] * 2
    assert await worker.run_once() == 0
    del held


async def test_concurrency_limits_runs_driven_at_once() -> None:
    saver = LeasingSaver()
    held = [await abandon(saver, two_steps, f"r{i}", f"run-{i}") for i in range(5)]
    for i in range(5):
        gates[f"r{i}.b"] = asyncio.Event()
    worker = Worker(saver, [two_steps], concurrency=2)
    job = asyncio.create_task(worker.run_once())
    await settle()
    assert len(executed) == 5 + 2  # two second steps are waiting at their gate
    assert len(worker.active) == 2
    assert [claim[2] for claim in saver.claims] == [2]
    for gate in gates.values():
        gate.set()
    assert await job == 5
    assert sorted(name for name in executed if name.endswith(".b")) == [f"r{i}.b" for i in range(5)]
    assert all(limit <= 2 for _, _, limit in saver.claims)
    del held


async def test_an_error_in_one_run_is_logged_with_its_id_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saver = LeasingSaver()
    held = [
        await abandon(saver, breaks, "bad", "bad-1"),
        await abandon(saver, two_steps, "good", "good-1"),
    ]
    worker = Worker(saver, [breaks, two_steps])
    with caplog.at_level(logging.INFO, logger="tiny_tasks.runtime"):
        assert await worker.run_once() == 2
    assert executed == ["bad.a", "good.a", "good.b"]
    failed = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.run_id, r.getMessage().split(":")[0]) for r in failed] == [  # type: ignore[attr-defined]
        ("bad-1", "run 'bad-1' failed")
    ]
    claimed = sorted(r.run_id for r in caplog.records if r.getMessage().startswith("claimed"))  # type: ignore[attr-defined]
    assert claimed == ["bad-1", "good-1"]
    assert "recovery" in next(r.getMessage() for r in caplog.records if r.run_id == "good-1")  # type: ignore[attr-defined]
    del held


async def test_stop_gives_a_grace_period_then_stops_the_run_and_releases_its_lease() -> None:
    saver = LeasingSaver()
    held = await abandon(saver, two_steps, "slow", "slow-1")
    gates["slow.b"] = asyncio.Event()
    clock = ManualClock()
    worker = Worker(saver, [two_steps], owner="w1", poll_interval=5, shutdown_grace=10, clock=clock)
    job = asyncio.create_task(worker.run())
    await until(lambda: "slow.b" in executed)
    await clock.wait_for_sleepers(1)  # the loop idles for its poll interval
    worker.stop()
    await settle()  # the loop stops idling and starts its grace period
    assert clock.sleepers == 1
    await clock.advance(9)
    assert not job.done()
    assert worker.active == ["slow-1"]
    await clock.advance(1)
    await job
    assert set(saver.released) == {("slow-1", "w1")}  # by the engine, and by the worker
    assert saver.runs["slow-1"].lease_owner is None
    assert executed == ["slow.a", "slow.b"]  # stopped in its step: the step is not recorded
    del held


async def test_a_run_that_finishes_within_the_grace_period_is_not_released() -> None:
    saver = LeasingSaver()
    held = await abandon(saver, two_steps, "quick", "quick-1")
    gates["quick.b"] = asyncio.Event()
    clock = ManualClock()
    worker = Worker(saver, [two_steps], shutdown_grace=10, clock=clock)
    job = asyncio.create_task(worker.run())
    await until(lambda: "quick.b" in executed)
    worker.stop()
    await settle()
    gates["quick.b"].set()
    await job
    assert saver.released == []
    assert statuses(saver, "quick-1")["quick-1"] == "done"
    del held


async def test_sigterm_stops_a_worker_running_in_the_main_thread() -> None:
    saver = LeasingSaver()
    clock = ManualClock()
    worker = Worker(saver, [two_steps], clock=clock)
    job = asyncio.create_task(worker.run())
    await clock.wait_for_sleepers(1)
    os.kill(os.getpid(), signal.SIGTERM)
    await job
    assert len(saver.claims) == 1
    # The handler is removed again: SIGTERM's default action is back.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_cancelling_run_stops_it_the_same_way() -> None:
    saver = LeasingSaver()
    held = await abandon(saver, two_steps, "slow", "slow-1")
    gates["slow.b"] = asyncio.Event()
    worker = Worker(saver, [two_steps], owner="w1", shutdown_grace=0)
    job = asyncio.create_task(worker.run())
    await until(lambda: "slow.b" in executed)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert set(saver.released) == {("slow-1", "w1")}  # by the engine, and by the worker
    del held


async def test_a_due_run_is_claimed_at_the_next_poll() -> None:
    saver = LeasingSaver()
    clock = ManualClock()
    worker = Worker(saver, [two_steps], poll_interval=2, clock=clock)
    job = asyncio.create_task(worker.run())
    await clock.wait_for_sleepers(1)
    held = await abandon(saver, two_steps, "late", "late-1")
    assert len(saver.claims) == 1
    await clock.advance(2)
    await until(lambda: statuses(saver, "late-1")["late-1"] == "done")
    assert executed == ["late.a", "late.b"]
    assert len(saver.claims) == 2
    worker.stop()
    await job
    del held


class HintingSaver(LeasingSaver):
    """A saver with the wake-up hint (as PostgreSQL's NOTIFY): the test sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.hint = asyncio.Event()

    async def wait_for_due(self, timeout: float) -> bool:
        await self.hint.wait()
        self.hint.clear()
        return True


async def test_a_wake_up_hint_claims_before_the_poll_interval() -> None:
    saver = HintingSaver()
    clock = ManualClock()
    started = clock.now()
    worker = Worker(saver, [two_steps], poll_interval=3600, clock=clock)
    job = asyncio.create_task(worker.run())
    await clock.wait_for_sleepers(1)
    with use_clock(clock):  # stored at the clock's time: due at once
        held = await abandon(saver, two_steps, "hinted", "hinted-1")
    assert len(saver.claims) == 1
    saver.hint.set()
    await until(lambda: statuses(saver, "hinted-1")["hinted-1"] == "done")
    assert len(saver.claims) == 2
    assert clock.now() == started  # the clock never moved: no poll interval passed
    worker.stop()
    await job
    del held


class PlainSaver(DictSaver):
    """A user's saver from before the runtime: no claims, no leases."""

    claim_runs = renew_lease = release_lease = None


def test_a_saver_without_the_runtime_methods_is_refused() -> None:
    with pytest.raises(CheckpointerTypeError) as caught:
        Worker(PlainSaver(), [two_steps])
    assert "PlainSaver has no claim_runs, renew_lease, release_lease" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be an int >= 1, not 0"),
        ({"poll_interval": -1}, "poll_interval must be > 0, not -1"),
        ({"lease": 5, "renew_every": 5}, "renew_every (5.0 s) must be shorter than lease"),
    ],
)
def test_bad_settings_say_which(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as caught:
        Worker(LeasingSaver(), [two_steps], **options)
    assert message in str(caught.value)


def test_two_tasks_of_one_name_are_refused() -> None:
    twin = task("two_steps", other.fn)
    with pytest.raises(ValueError, match="two tasks named 'two_steps'"):
        Worker(LeasingSaver(), [two_steps, twin])


async def test_tracing_emits_a_span_per_attempt_and_per_executed_step_only() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from opentelemetry import trace

    trace.set_tracer_provider(provider)
    saver = LeasingSaver()
    held = await abandon(saver, two_steps, "t", "traced-1")
    assert exporter.get_finished_spans() == ()  # not traced outside a worker
    with use_clock(ManualClock()):
        assert await Worker(saver, [two_steps], tracing=True).run_once() == 1
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["tiny_tasks.step", "tiny_tasks.run"]
    step_span, run_span = spans
    assert dict(step_span.attributes or {}) == {
        "tiny_tasks.run_id": "traced-1",
        "tiny_tasks.task": "two_steps",
        "tiny_tasks.site_id": "two_steps/work#1",
    }
    assert step_span.parent is not None
    assert step_span.parent.span_id == run_span.context.span_id
    assert dict(run_span.attributes or {}) == {
        "tiny_tasks.run_id": "traced-1",
        "tiny_tasks.task": "two_steps",
        "tiny_tasks.claimed_status": "running",
        "tiny_tasks.outcome": "done",
    }
    del held
