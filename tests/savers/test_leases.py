"""Leases: whoever drives a run holds one; a live one turns a second caller away.

Time is a `ManualClock`: a lease expires when the test moves the clock, never by waiting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tiny_tasks import (
    Command,
    MemorySaver,
    RunBusyError,
    RunConflictError,
    TaskContext,
    TaskInterrupted,
    get_run,
    task,
    use_clock,
)
from tiny_tasks._driver import Driver, driving
from tiny_tasks.savers.base import CheckpointWrite, Lease
from tiny_tasks.testing import ManualClock


class Gate:
    """A step function that records each call and, the first time, waits to be let go."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def work(self, value: int) -> int:
        self.calls.append(value)
        if len(self.calls) == 1:
            self.started.set()
            await self.release.wait()
        return value * 2


def leased_task(gate: Gate) -> Any:
    @task("leased")
    async def leased(value: int, ctx: TaskContext) -> int:
        doubled = await ctx.step(gate.work, value)
        return int(doubled) + 1

    return leased


async def test_a_second_caller_gets_run_busy_and_nothing_runs_twice(saver: Any) -> None:
    gate = Gate()
    leased = leased_task(gate)
    opts: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with use_clock(ManualClock()) as clock:
        first = asyncio.create_task(leased.invoke(20, **opts))
        await gate.started.wait()
        held = await get_run(saver, "r1")
        assert held is not None
        assert held.lease_owner is not None
        assert held.lease_owner.startswith("call-")
        assert held.lease_expires == clock.now() + 30.0

        with pytest.raises(RunBusyError) as busy:
            await leased.invoke(20, **opts)
        assert busy.value.owner == held.lease_owner
        assert "is being driven by" in str(busy.value)
        assert "'r1'" in str(busy.value)
        after = await get_run(saver, "r1")
        assert after is not None
        assert after.version == held.version

        gate.release.set()
        assert await first == 41
    assert gate.calls == [20]
    assert await get_run(saver, "r1") is None  # not kept: deleted, lease and all


async def test_a_resume_of_a_live_run_is_busy_too(saver: Any) -> None:
    gate = Gate()

    @task("approve_then_work")
    async def approve_then_work(value: int, ctx: TaskContext) -> int:
        answer = ctx.interrupt("ok?")
        return int(await ctx.step(gate.work, value)) + int(answer)

    opts: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with use_clock(ManualClock()):
        with pytest.raises(TaskInterrupted):
            await approve_then_work.invoke(5, **opts)
        paused = await get_run(saver, "r1")
        assert paused is not None
        assert (paused.status, paused.lease_owner) == ("paused", None)
        first = asyncio.create_task(approve_then_work.invoke(Command(resume=1), **opts))
        await gate.started.wait()
        with pytest.raises(RunBusyError):
            await approve_then_work.invoke(Command(resume=2), **opts)
        gate.release.set()
        assert await first == 11
    assert gate.calls == [5]


async def test_after_the_lease_expires_another_takes_over_and_the_former_owner_is_refused(
    saver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    leased = leased_task(gate)
    opts: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with use_clock(ManualClock()) as clock:
        # A hung owner: it never renews (its renewal interval is longer than the test).
        with driving(Driver(owner="hung", renew_seconds=3600.0)):
            first = asyncio.create_task(leased.invoke(20, **opts))
        await gate.started.wait()
        await clock.advance(29.0)
        with pytest.raises(RunBusyError), driving(Driver(owner="other")):
            await leased.invoke(20, **opts)

        await clock.advance(2.0)  # 31 s: the lease has expired
        with caplog.at_level(logging.INFO, "tiny_tasks.runtime"), driving(Driver(owner="other")):
            assert await leased.invoke(20, keep=True, **opts) == 41
        assert [r.getMessage() for r in caplog.records if "taking over" in r.getMessage()] == [
            "run 'r1': taking over from 'hung', whose lease expired 1.0 s ago"
        ]

        gate.release.set()  # the former owner's step ends: its record is refused
        with pytest.raises(RunConflictError):
            await first
    assert gate.calls == [20, 20]  # its step never recorded: the new owner ran it again
    state = await get_run(saver, "r1")
    assert state is not None
    assert (state.status, state.outcome, state.result, state.steps) == ("done", "done", 41, 1)
    assert (state.lease_owner, state.lease_expires) == (None, None)


async def test_a_paused_run_holds_no_lease_and_an_early_close_releases_it(saver: Any) -> None:
    @task("streams")
    async def streams(_: Any) -> Any:
        yield 1
        yield 2
        yield 3

    opts: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with use_clock(ManualClock()):
        stream = streams(None, **opts)
        assert (await anext(stream)).partial == 1
        held = await get_run(saver, "r1")
        assert held is not None
        assert held.lease_owner is not None
        await stream.aclose()
        released = await get_run(saver, "r1")
        assert released is not None
        assert (released.status, released.lease_owner, released.delivered) == ("running", None, 1)
        assert [e.partial async for e in streams(None, **opts)] == [2, 3]


class RecordingSaver(MemorySaver):
    """A MemorySaver that notes every write's status and lease, and every lease call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str | None, float | None]] = []
        self.calls: list[str] = []

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        self.writes.append((write.status, write.lease_owner, write.lease_expires))
        return super().save(write, expected_version)

    def renew_lease(self, run_id: str, owner: str, lease_expires: float) -> Lease:
        self.calls.append(f"renew {lease_expires}")
        return super().renew_lease(run_id, owner, lease_expires)

    def release_lease(self, run_id: str, owner: str) -> None:
        self.calls.append("release")
        super().release_lease(run_id, owner)

    def delete(self, run_id: str) -> None:
        self.calls.append("delete")
        super().delete(run_id)


async def test_the_lease_rides_on_the_runs_own_writes() -> None:
    saver = RecordingSaver()

    async def double(value: int) -> int:
        return value * 2

    @task("two_steps")
    async def two_steps(value: int, ctx: TaskContext) -> int:
        first = await ctx.step(double, value)
        answer = ctx.interrupt("ok?")
        return int(await ctx.step(double, first)) + int(answer)

    opts: dict[str, Any] = {"checkpointer": saver}
    with use_clock(ManualClock(start=1000.0)), driving(Driver(owner="me")):
        with pytest.raises(TaskInterrupted):
            await two_steps.invoke(1, run_id="a", **opts)
        assert await two_steps.invoke(Command(resume=1), run_id="a", **opts) == 5
        with pytest.raises(TaskInterrupted):
            await two_steps.invoke(3, run_id="k", keep=True, **opts)
    assert saver.writes[:5] == [
        ("running", "me", 1030.0),  # created: the lease rides on the first write
        ("running", "me", 1030.0),  # step 1
        ("paused", None, None),  # the attempt's last write clears it
        ("running", "me", 1030.0),  # the resume's answer, and step 2
        ("running", "me", 1030.0),
    ]
    assert saver.calls == ["delete"]  # no renewal, no release: shorter than 10 s
    assert saver.writes[5:] == [
        ("running", "me", 1030.0),
        ("running", "me", 1030.0),
        ("paused", None, None),
    ]


async def test_a_long_step_renews_the_lease_and_a_short_run_never_does() -> None:
    saver = RecordingSaver()
    gate = Gate()
    leased = leased_task(gate)
    with use_clock(ManualClock(start=1000.0)) as clock, driving(Driver(owner="me")):
        running = asyncio.create_task(leased.invoke(1, run_id="long", checkpointer=saver))
        await gate.started.wait()
        await clock.advance(10.0)
        await clock.advance(10.0)
        state = await get_run(saver, "long")
        assert state is not None
        assert state.lease_expires == 1050.0
        gate.release.set()
        assert await running == 3
        assert saver.calls == ["renew 1040.0", "renew 1050.0", "delete"]
        assert saver.writes == [("running", "me", 1030.0), ("running", "me", 1050.0)]

        saver.calls.clear()
        assert await leased.invoke(2, run_id="short", checkpointer=saver) == 5
        await clock.advance(60.0)  # its renewal timer was cancelled with its last write
        assert saver.calls == ["delete"]


async def test_a_lost_lease_stops_the_runs_writes() -> None:
    saver = MemorySaver()
    gate = Gate()
    leased = leased_task(gate)
    with use_clock(ManualClock()) as clock:
        with driving(Driver(owner="slow", renew_seconds=10.0)):
            first = asyncio.create_task(leased.invoke(1, run_id="r1", checkpointer=saver))
        await gate.started.wait()
        # Someone else holds the lease now (as after a takeover that has not written yet).
        stored = saver.load("r1")
        assert stored is not None
        saver.release_lease("r1", "slow")
        assert saver.claim_runs("thief", ["leased"], clock.now(), clock.now() + 30, 1) != []
        await clock.advance(10.0)  # the renewal finds the lease gone
        gate.release.set()
        with pytest.raises(RunConflictError, match="lease"):
            await first
    after = saver.load("r1")
    assert after is not None
    assert (after.lease_owner, after.entries) == ("thief", stored.entries)
