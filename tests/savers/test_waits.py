"""Durable timers, deadlines on interrupts, and messages, on every saver (issue 10, 4-6).

Time is a `ManualClock` the test moves (`use_clock`): nothing waits for real. A test
that needs code to be waiting in-process first waits for it with `wait_for_sleepers`.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from saver_kinds import BOUND, drain, load_stored

from tiny_tasks import (
    AlreadyAnsweredError,
    Command,
    Interrupt,
    InterruptTimeoutError,
    MemorySaver,
    NoCheckpointError,
    RunConflictError,
    TaskContext,
    TaskInterrupted,
    TaskSleeping,
    check_runs,
    interrupt,
    send,
    sleep,
    task,
    use_clock,
)
from tiny_tasks._driver import Driver, driving
from tiny_tasks.savers.base import Checkpoint
from tiny_tasks.testing import ManualClock

T0 = 1_700_000_000.0
DAY = 86_400.0

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


def _kinds(saver: Any, stored: Checkpoint) -> list[str]:
    serde = getattr(saver, "serde", None)
    if serde is None:
        from tiny_tasks.serde import default_serializer

        serde = default_serializer()
    return [serde.loads(entry)["k"] for entry in stored.entries]


async def note(what: str) -> str:
    calls[what] += 1
    return what


# -- timers ----------------------------------------------------------------------------

span = {"sleep": DAY}


@task("sleeper")
async def sleeper(name: str, ctx: TaskContext) -> AsyncIterator[str]:
    yield await ctx.step(note, f"{name}:before")
    await ctx.sleep(timedelta(seconds=span["sleep"]))
    yield await ctx.step(note, f"{name}:after")


async def test_a_long_sleep_is_stored_sleeping_and_continues_once_due(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        stream = sleeper("a", run_id="s1", checkpointer=saver)
        assert await drain(stream) == (["a:before"], [])
        assert (stream.status, stream.wake_at, stream.waits) == ("sleeping", T0 + DAY, ())
        stored = await load_stored(saver, "s1")
        assert stored is not None
        assert (stored.status, stored.wake_at, stored.waits, stored.pending) == (
            "sleeping",
            T0 + DAY,
            (),
            (),
        )
        assert _kinds(saver, stored) == ["input", "step", "wait"]

        # Not continued early: re-attaching reports the sleep again, runs and writes nothing.
        await clock.advance(DAY - 2)
        again = sleeper(run_id="s1", checkpointer=saver)
        assert await drain(again) == ([], [])
        assert (again.status, again.wake_at) == ("sleeping", T0 + DAY)
        with pytest.raises(TaskSleeping) as info:
            await sleeper.invoke(run_id="s1", checkpointer=saver)
        assert (info.value.run_id, info.value.wake_at) == ("s1", T0 + DAY)
        assert (await load_stored(saver, "s1")).version == stored.version  # type: ignore[union-attr]

        await clock.advance(2)
        after = sleeper(run_id="s1", checkpointer=saver)
        assert await drain(after) == (["a:after"], [])
        assert after.status == "done"
    assert calls == {"a:before": 1, "a:after": 1}
    assert await load_stored(saver, "s1") is None


async def test_a_claimed_run_that_is_not_due_yet_gives_its_lease_back(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        await drain(sleeper("a", run_id="s1", checkpointer=saver))
        # A worker whose clock runs ahead claims the run before it is due by the engine's.
        claimed = saver.claim_runs("w1", ["sleeper"], T0 + DAY, T0 + DAY + 30, 10)
        claimed = await claimed if inspect.isawaitable(claimed) else claimed
        assert [info.run_id for info in claimed] == ["s1"]
        with driving(Driver(owner="w1")):
            again = sleeper(run_id="s1", checkpointer=saver)
            assert await drain(again) == ([], [])
        assert again.status == "sleeping"
        stored = await load_stored(saver, "s1")
        assert stored is not None
        assert (stored.status, stored.lease_owner, stored.lease_expires) == ("sleeping", None, None)
        await clock.advance(DAY)
        assert await drain(sleeper(run_id="s1", checkpointer=saver)) == (["a:after"], [])
    assert calls == {"a:before": 1, "a:after": 1}


@task("sleep_then_ask")
async def sleep_then_ask(name: str, ctx: TaskContext) -> list[Any]:
    first = await ctx.step(note, f"{name}:1")
    await ctx.sleep(span["sleep"])
    answer = ctx.interrupt("go on?")
    second = await ctx.step(note, f"{name}:2")
    return [first, answer, second]


async def test_the_wake_time_is_recorded_once_and_never_recomputed(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        stream = sleep_then_ask("w", run_id="w1", checkpointer=saver)
        await drain(stream)
        assert (stream.status, stream.wake_at) == ("sleeping", T0 + DAY)
        span["sleep"] = 10 * DAY  # new code, another duration: the recorded time stands
        try:
            await clock.advance(DAY)
            paused = sleep_then_ask(run_id="w1", checkpointer=saver)
            _, interrupts = await drain(paused)
            assert interrupts == [Interrupt("go on?", "sleep_then_ask/interrupt#2")]
            assert (paused.status, paused.wake_at) == ("paused", None)
            # Answered five days later: replay passes the sleep at once.
            await clock.advance(5 * DAY)
            stored = await load_stored(saver, "w1")
            assert stored is not None
            assert _kinds(saver, stored).count("wait") == 1
            answered = sleep_then_ask.invoke(Command(resume="yes"), run_id="w1", checkpointer=saver)
            assert await answered == ["w:1", "yes", "w:2"]
        finally:
            span["sleep"] = DAY
    assert calls == {"w:1": 1, "w:2": 1}
    assert await load_stored(saver, "w1") is None


async def test_a_short_sleep_waits_in_process(saver: Any) -> None:
    span["sleep"] = 0.5
    try:
        with use_clock(ManualClock(T0)) as clock:
            stream = sleeper("b", run_id="s2", checkpointer=saver)
            drained = asyncio.ensure_future(drain(stream))
            async with asyncio.timeout(BOUND):
                await clock.wait_for_sleepers(1)
            stored = await load_stored(saver, "s2")
            assert stored is not None
            assert stored.status == "running"
            assert calls == {"b:before": 1}
            await clock.advance(0.5)
            assert await drained == (["b:before", "b:after"], [])
            assert stream.status == "done"
    finally:
        span["sleep"] = DAY
    assert await load_stored(saver, "s2") is None


async def test_a_sleep_due_within_a_second_waits_in_process_on_reattach(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        await drain(sleeper("c", run_id="s3", checkpointer=saver))
        await clock.advance(DAY - 0.25)
        drained = asyncio.ensure_future(drain(sleeper(run_id="s3", checkpointer=saver)))
        async with asyncio.timeout(BOUND):
            await clock.wait_for_sleepers(1)
        assert calls == {"c:before": 1}
        await clock.advance(0.25)
        assert await drained == (["c:after"], [])
    assert calls == {"c:before": 1, "c:after": 1}


async def test_without_a_checkpointer_a_long_sleep_waits_in_process() -> None:
    @task("ambient_sleeper")
    async def ambient_sleeper(x: int) -> int:
        await sleep(timedelta(days=2))
        return x + 1

    with use_clock(ManualClock(T0)) as clock:
        result = asyncio.ensure_future(ambient_sleeper.invoke(1))
        async with asyncio.timeout(BOUND):
            await clock.wait_for_sleepers(1)
        await clock.advance(2 * DAY)
        assert await result == 2


async def test_sleep_until_an_aware_datetime(saver: Any) -> None:
    @task("until")
    async def until(when: float, ctx: TaskContext) -> str:
        await ctx.sleep_until(datetime.fromtimestamp(when, UTC))
        return "awake"

    with use_clock(ManualClock(T0)) as clock:
        with pytest.raises(TaskSleeping) as info:
            await until.invoke(T0 + 3 * DAY, run_id="u1", checkpointer=saver)
        assert info.value.wake_at == T0 + 3 * DAY
        await clock.set(T0 + 3 * DAY)
        assert await until.invoke(run_id="u1", checkpointer=saver) == "awake"


# -- deadlines -------------------------------------------------------------------------

HOURS_4 = 4 * 3600.0


@task("approval")
async def approval(order: str, ctx: TaskContext) -> Any:
    answer = ctx.interrupt({"approve": order}, timeout=timedelta(hours=4), default="refused")
    return await ctx.step(note, f"{order}:{answer}")


async def test_a_deadline_applies_the_default_on_reattach_after_it(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        stream = approval("o1", run_id="d1", checkpointer=saver)
        _, interrupts = await drain(stream)
        assert interrupts == [Interrupt({"approve": "o1"}, "approval/interrupt#0")]
        assert (stream.status, stream.wake_at) == ("paused", T0 + HOURS_4)
        stored = await load_stored(saver, "d1")
        assert stored is not None
        assert (stored.status, stored.wake_at) == ("paused", T0 + HOURS_4)

        await clock.advance(HOURS_4 - 1)
        with pytest.raises(TaskInterrupted):
            await approval.invoke(run_id="d1", checkpointer=saver)
        assert calls == {}

        await clock.advance(1)
        assert await approval.invoke(run_id="d1", checkpointer=saver) == "o1:refused"
    assert calls == {"o1:refused": 1}
    assert await load_stored(saver, "d1") is None


@task("approve_then_wait")
async def approve_then_wait(order: str, ctx: TaskContext) -> Any:
    answer = ctx.interrupt({"approve": order}, timeout=60, default="refused")
    await ctx.sleep(DAY)
    return await ctx.step(note, f"{order}:{answer}")


async def test_an_answer_that_lost_to_the_deadline_says_what_won(saver: Any) -> None:
    site = "approve_then_wait/interrupt#0"
    opts: dict[str, Any] = {"run_id": "d5", "checkpointer": saver, "keep": True}
    with use_clock(ManualClock(T0)) as clock:
        with pytest.raises(TaskInterrupted):
            await approve_then_wait.invoke("o5", **opts)
        await clock.advance(60)
        with pytest.raises(TaskSleeping):  # the deadline answered it; the run sleeps now
            await approve_then_wait.invoke(**opts)
        for late in (Command(resume="yes"), Command(answers={site: "yes"})):
            with pytest.raises(AlreadyAnsweredError, match="answered already, with 'refused'"):
                await approve_then_wait.invoke(late, **opts)
        await clock.advance(DAY)
        assert await approve_then_wait.invoke(**opts) == "o5:refused"
        # Finished and kept: the same answer again is a retry and gets the outcome; another
        # answer lost, and says so.
        assert await approve_then_wait.invoke(Command(resume="refused"), **opts) == "o5:refused"
        with pytest.raises(AlreadyAnsweredError, match=site):
            await approve_then_wait.invoke(Command(resume="yes"), **opts)
    assert calls == {"o5:refused": 1}


@task("strict_approval")
async def strict_approval(order: str) -> Any:
    try:
        answer = interrupt(order, timeout=60)
    except InterruptTimeoutError as error:
        return ["timed out", error.site_id, error.deadline]
    return ["answered", answer]


async def test_without_a_default_the_interrupt_raises_where_the_task_catches_it(
    saver: Any,
) -> None:
    with use_clock(ManualClock(T0)) as clock:
        with pytest.raises(TaskInterrupted):
            await strict_approval.invoke("o2", run_id="d2", checkpointer=saver)
        await clock.advance(60)
        result = await strict_approval.invoke(run_id="d2", checkpointer=saver)
    assert result == ["timed out", "strict_approval/interrupt#0", T0 + 60]


async def test_an_answer_after_the_deadline_is_refused(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        with pytest.raises(TaskInterrupted):
            await strict_approval.invoke("o3", run_id="d3", checkpointer=saver)
        before = await load_stored(saver, "d3")
        await clock.advance(61)
        with pytest.raises(InterruptTimeoutError) as info:
            await strict_approval.invoke(Command(resume="yes"), run_id="d3", checkpointer=saver)
        assert (info.value.run_id, info.value.site_id, info.value.deadline) == (
            "d3",
            "strict_approval/interrupt#0",
            T0 + 60,
        )
        after = await load_stored(saver, "d3")
        assert after is not None
        assert before is not None
        assert after.version == before.version
        # An answer in time is taken.
        with pytest.raises(TaskInterrupted):
            await strict_approval.invoke("o4", run_id="d4", checkpointer=saver)
        await clock.advance(59)
        result = await strict_approval.invoke(
            Command(resume="yes"), run_id="d4", checkpointer=saver
        )
        assert result == ["answered", "yes"]


@task("sync_approval")
def sync_approval(order: str) -> Any:
    return interrupt(order, timeout=timedelta(minutes=5), default="default")


async def test_a_synchronous_task_has_deadlines_and_its_sync_stream_tells_how_it_ended(
    saver: Any,
) -> None:
    with use_clock(ManualClock(T0)) as clock:
        stream = sync_approval.stream_sync("o6", run_id="y1", checkpointer=saver)
        events = await asyncio.to_thread(list, stream)
        assert [e.interrupt for e in events] == [Interrupt("o6", "sync_approval/interrupt#0")]
        assert (stream.status, stream.wake_at) == ("paused", T0 + 300)
        await clock.advance(300)
        again = sync_approval.stream_sync(run_id="y1", checkpointer=saver)
        assert await asyncio.to_thread(list, again) == []
        assert (again.status, again.result) == ("done", "default")


class Gate:
    """Where a replay waits before its first new effect, so two can be lined up."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.go = asyncio.Event()


gates: list[Gate] = []


@task("raced")
async def raced(order: str, ctx: TaskContext) -> Any:
    answer = ctx.interrupt(order, timeout=60, default="by deadline")
    gate = gates.pop(0)
    gate.reached.set()
    await gate.go.wait()
    return await ctx.step(note, f"{order}:{answer}")


async def test_an_answer_racing_the_deadline_exactly_one_wins(saver: Any) -> None:
    chooser = random.Random(10_005)
    wins: Counter[str] = Counter()
    with use_clock(ManualClock(T0)) as clock:
        for round_ in range(50):
            run_id, order = f"race-{round_}", f"o{round_}"
            with pytest.raises(TaskInterrupted):
                await raced.invoke(order, run_id=run_id, checkpointer=saver)
            answer_gate, deadline_gate = Gate(), Gate()
            gates[:] = [answer_gate, deadline_gate]
            answering = asyncio.ensure_future(
                raced.invoke(Command(resume="yes"), run_id=run_id, checkpointer=saver)
            )
            async with asyncio.timeout(BOUND):
                await answer_gate.reached.wait()
            await clock.advance(60)  # the answer was read in time; the deadline passes
            reattaching = asyncio.ensure_future(raced.invoke(run_id=run_id, checkpointer=saver))
            async with asyncio.timeout(BOUND):
                await deadline_gate.reached.wait()
            first, second = (answer_gate, deadline_gate)
            if chooser.random() < 0.5:
                first, second = second, first
            first.go.set()
            second.go.set()
            async with asyncio.timeout(BOUND):
                outcomes = await asyncio.gather(answering, reattaching, return_exceptions=True)
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert (len(won), len(lost)) == (1, 1), outcomes
            assert isinstance(lost[0], RunConflictError), lost
            assert won[0] in (f"{order}:yes", f"{order}:by deadline")
            wins["answer" if won[0].endswith("yes") else "deadline"] += 1
            assert await load_stored(saver, run_id) is None
    assert sum(calls.values()) == 50  # one step each round: the winner's
    assert sorted(wins) == ["answer", "deadline"], wins  # each side won some rounds


async def test_the_deadline_is_kept_across_replays(saver: Any) -> None:
    @task("two_approvals")
    async def two_approvals(x: str, ctx: TaskContext) -> list[Any]:
        async def ask(question: str, **deadline: Any) -> Any:
            return ctx.interrupt(question, **deadline)

        return list(await asyncio.gather(ask("first"), ask("second", timeout=DAY, default="late")))

    with use_clock(ManualClock(T0)) as clock:
        with pytest.raises(TaskInterrupted) as info:
            await two_approvals.invoke("x", run_id="k1", checkpointer=saver)
        first = info.value.interrupts[0].id
        await clock.advance(DAY / 2)
        # Answering the first replays the second: the deadline set at its first reach stays.
        answer = Command(answers={first: "one"})
        stream = two_approvals(answer, run_id="k1", checkpointer=saver)
        _, interrupts = await drain(stream)
        assert [i.value for i in interrupts] == ["second"]
        assert stream.wake_at == T0 + DAY
        await clock.advance(DAY / 2)
        assert await two_approvals.invoke(run_id="k1", checkpointer=saver) == ["one", "late"]


# -- messages --------------------------------------------------------------------------


@task("inbox")
async def inbox(count: int, ctx: TaskContext) -> list[Any]:
    ready = ctx.interrupt("ready?")
    got = [ready]
    for _ in range(count):
        got.append(await ctx.recv("mail"))
    return got


async def test_a_message_sent_before_the_wait_is_kept_and_received(saver: Any) -> None:
    with use_clock(ManualClock(T0)):
        with pytest.raises(TaskInterrupted):
            await inbox.invoke(1, run_id="m1", checkpointer=saver)
        assert isinstance(await send(saver, "m1", "mail", {"text": "hello"}), int)
        assert await inbox.invoke(Command(resume="go"), run_id="m1", checkpointer=saver) == [
            "go",
            {"text": "hello"},
        ]
    assert await load_stored(saver, "m1") is None


async def test_two_messages_are_received_in_order_by_two_recvs(saver: Any) -> None:
    with use_clock(ManualClock(T0)):
        with pytest.raises(TaskInterrupted):
            await inbox.invoke(2, run_id="m2", checkpointer=saver)
        first = await send(saver, "m2", "mail", "one")
        second = await send(saver, "m2", "mail", "two")
        await send(saver, "m2", "other", "not for mail")
        assert first < second
        assert await inbox.invoke(Command(resume="go"), run_id="m2", checkpointer=saver) == [
            "go",
            "one",
            "two",
        ]


@task("waiter")
async def waiter(name: str, ctx: TaskContext) -> list[Any]:
    before = await ctx.step(note, f"{name}:before")
    message = await ctx.recv("reply", timeout=timedelta(hours=1))
    return [before, message]


async def test_a_message_sent_after_the_wait_wakes_the_run(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        stream = waiter("a", run_id="m3", checkpointer=saver)
        await drain(stream)
        assert (stream.status, stream.wake_at, stream.waits) == (
            "sleeping",
            T0 + 3600,
            ("reply",),
        )
        stored = await load_stored(saver, "m3")
        assert stored is not None
        assert (stored.status, stored.wake_at, stored.waits) == ("sleeping", T0 + 3600, ("reply",))
        await clock.advance(60)
        await send(saver, "m3", "reply", "ok")
        woken = await load_stored(saver, "m3")
        assert woken is not None
        assert woken.wake_at == T0 + 60
        assert await waiter.invoke(run_id="m3", checkpointer=saver) == ["a:before", "ok"]
    assert calls == {"a:before": 1}


async def test_a_recv_times_out_with_none(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        with pytest.raises(TaskSleeping) as info:
            await waiter.invoke("b", run_id="m4", checkpointer=saver)
        assert (info.value.wake_at, info.value.waits) == (T0 + 3600, ("reply",))
        await clock.advance(3600)
        assert await waiter.invoke(run_id="m4", checkpointer=saver) == ["b:before", None]
        # The run is gone: a late message has no run to go to.
        with pytest.raises(NoCheckpointError):
            await send(saver, "m4", "reply", "late")


async def test_a_message_is_recorded_and_taken_once(saver: Any) -> None:
    @task("receive_then_ask")
    async def receive_then_ask(x: str, ctx: TaskContext) -> list[Any]:
        message = await ctx.recv("t")
        again = ctx.interrupt("more?")
        return [message, again]

    with use_clock(ManualClock(T0)):
        with pytest.raises(TaskSleeping):
            await receive_then_ask.invoke("x", run_id="m5", checkpointer=saver)
        message_id = await send(saver, "m5", "t", [1, 2])
        with pytest.raises(TaskInterrupted):
            await receive_then_ask.invoke(run_id="m5", checkpointer=saver)
        stored = await load_stored(saver, "m5")
        assert stored is not None
        serde = getattr(saver, "serde", None)
        if serde is None:
            from tiny_tasks.serde import default_serializer

            serde = default_serializer()
        entries = [serde.loads(entry) for entry in stored.entries]
        assert entries[-1] == {
            "k": "recv",
            "s": "receive_then_ask/recv#0",
            "m": message_id,
            "v": [1, 2],
        }
        found = saver.next_message("m5", "t")
        assert (await found if inspect.isawaitable(found) else found) is None
        assert await receive_then_ask.invoke(
            Command(resume="no"), run_id="m5", checkpointer=saver
        ) == [
            [1, 2],
            "no",
        ]


async def test_recv_in_a_nested_child_under_gather_with_an_interrupt(saver: Any) -> None:
    @task("child_receiver")
    async def child_receiver(topic: str, ctx: TaskContext) -> Any:
        return await ctx.recv(topic)

    @task("parent")
    async def parent(x: str, ctx: TaskContext) -> list[Any]:
        async def ask() -> Any:
            return ctx.interrupt("approve?")

        return list(await asyncio.gather(child_receiver.invoke("news"), ask()))

    with use_clock(ManualClock(T0)):
        stream = parent("x", run_id="m6", checkpointer=saver)
        _, interrupts = await drain(stream)
        assert [i.value for i in interrupts] == ["approve?"]
        # `waits` depends on whether the recv registered before the pause cancelled it
        # (an async saver's read may be in flight): either way the resume receives.
        assert stream.status == "paused"
        await send(saver, "m6", "news", "fresh")
        assert await parent.invoke(Command(resume="yes"), run_id="m6", checkpointer=saver) == [
            "fresh",
            "yes",
        ]


async def test_recv_needs_a_checkpointer() -> None:
    @task("lonely")
    async def lonely(x: str, ctx: TaskContext) -> Any:
        return await ctx.recv("t")

    from tiny_tasks import CheckpointerTypeError

    with pytest.raises(CheckpointerTypeError, match="needs a checkpointer that keeps messages"):
        await lonely.invoke("x")


async def test_send_to_a_missing_run_is_refused() -> None:
    with pytest.raises(NoCheckpointError, match="no unfinished run 'nobody'"):
        await send(MemorySaver(), "nobody", "t", 1)


# -- dry replays ----------------------------------------------------------------------


async def test_waiting_runs_pass_check_runs_and_stay_as_they_are(saver: Any) -> None:
    with use_clock(ManualClock(T0)) as clock:
        await drain(sleeper("d", run_id="s4", checkpointer=saver))
        await drain(waiter("e", run_id="s5", checkpointer=saver))
        await drain(approval("o5", run_id="s6", checkpointer=saver))
        await clock.advance(2 * DAY)  # every one of them is due: check replays, never acts
        before = [await load_stored(saver, run_id) for run_id in ("s4", "s5", "s6")]
        seen: list[tuple[str, bool, str]] = []
        report = await check_runs(
            saver,
            [sleeper, waiter, approval],
            on_result=lambda r: seen.append((r.run_id, r.compatible, r.reached)),
        )
        after = [await load_stored(saver, run_id) for run_id in ("s4", "s5", "s6")]
    assert (report.checked, report.compatible, report.incompatible) == (3, 3, ())
    assert sorted(seen) == [
        ("s4", True, "new ground: a step that was never recorded, or a new child's result"),
        ("s5", True, "sleeping"),
        ("s6", True, "paused on ['approval/interrupt#0']"),
    ]
    assert after == before
    assert calls == {"d:before": 1, "e:before": 1}


# -- observability ---------------------------------------------------------------------


async def test_timers_deadlines_and_sleeps_are_logged_with_the_run_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saver = MemorySaver()
    caplog.set_level("INFO", logger="tiny_tasks.runtime")
    with use_clock(ManualClock(T0)) as clock:
        await drain(sleep_then_ask("l", run_id="log1", checkpointer=saver))
        await drain(approval("o7", run_id="log2", checkpointer=saver))
        await clock.advance(DAY)
        await drain(sleep_then_ask(run_id="log1", checkpointer=saver))
        await approval.invoke(run_id="log2", checkpointer=saver)
    records = [(r.getMessage(), getattr(r, "run_id", None)) for r in caplog.records]
    assert records == [
        (f"run 'log1': sleeping until {T0 + DAY}", "log1"),
        (f"run 'log1': due (wake time {T0 + DAY}), continuing it", "log1"),
        ("run 'log1': timer 'sleep_then_ask/sleep#1' fired", "log1"),
        (f"run 'log2': due (wake time {T0 + HOURS_4}), continuing it", "log2"),
        (
            "run 'log2': the deadline of interrupt 'approval/interrupt#0' passed "
            f"({T0 + HOURS_4}); answering it with its default",
            "log2",
        ),
    ]
