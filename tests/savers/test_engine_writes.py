"""The engine's writes on every saver: emitted partials next to recorded writes, siblings
that pause, and pauses that user code swallows (issue 9, points 1, 3 and 6).

Each test runs on every saver kind (the `saver` fixture); the async savers (SQLite,
PostgreSQL) are the ones where a write suspends, which is where these bugs lived. Every
run is bounded by `asyncio.timeout`: a hang is the failure, not a slow machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from saver_kinds import BOUND, drain, load_stored, make_saver

from tiny_tasks import (
    Command,
    Interrupt,
    RunClosedError,
    SwallowedInterruptError,
    TaskContext,
    TaskInterrupted,
    emit,
    interrupt,
    step,
    task,
)
from tiny_tasks.savers.base import Checkpoint

DELIVERIES = ("exactly_once", "at_least_once")

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    calls.clear()


# -- point 1: a coroutine task that emits, then does a recorded write -------------------


@step
async def work(i: int) -> int:
    calls["work"] += 1
    return i * 10


@task("child")
async def child(x: int) -> int:
    calls["child"] += 1
    return x * 2


@task("emit_then_step")
async def emit_then_step(_: Any) -> str:
    emit("a")
    first = await work(1)
    emit("b")
    return f"done {first}"


@task("emit_then_child")
async def emit_then_child(_: Any) -> str:
    emit("a")
    doubled = await child.invoke(21)
    emit("b")
    return f"done {doubled}"


@task("emit_then_ctx_step")
async def emit_then_ctx_step(_: Any, ctx: TaskContext) -> str:
    emit("a")
    first = await ctx.step(lambda v: v + 1, 1)
    emit("b")
    doubled = await child.invoke(first)
    return f"done {first} {doubled}"


POINT_1 = [
    (emit_then_step, ["a", "b"], "done 10", {"work": 1}),
    (emit_then_child, ["a", "b"], "done 42", {"child": 1}),
    (emit_then_ctx_step, ["a", "b"], "done 2 4", {"child": 1}),
]


@pytest.mark.parametrize("delivery", DELIVERIES)
@pytest.mark.parametrize(("job", "partials", "result", "counts"), POINT_1)
async def test_emit_then_recorded_write_finishes_with_invoke(
    saver: Any, delivery: Any, job: Any, partials: list[str], result: str, counts: dict[str, int]
) -> None:
    async with asyncio.timeout(BOUND):
        got = await job.invoke(None, run_id="r1", checkpointer=saver, delivery=delivery)
    assert got == result
    assert dict(calls) == counts
    assert await load_stored(saver, "r1") is None


@pytest.mark.parametrize("delivery", DELIVERIES)
@pytest.mark.parametrize(("job", "partials", "result", "counts"), POINT_1)
async def test_emit_then_recorded_write_finishes_with_async_for(
    saver: Any, delivery: Any, job: Any, partials: list[str], result: str, counts: dict[str, int]
) -> None:
    stream = job(None, run_id="r1", checkpointer=saver, delivery=delivery)
    assert await drain(stream) == (partials, [])
    assert stream.result == result
    assert dict(calls) == counts


@pytest.mark.parametrize("kind", ["memory", "dict", "sqlite"])
@pytest.mark.parametrize(("job", "partials", "result", "counts"), POINT_1)
def test_emit_then_recorded_write_finishes_with_the_sync_ways(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    job: Any,
    partials: list[str],
    result: str,
    counts: dict[str, int],
) -> None:
    # PostgresSaver belongs to the event loop that opened it, and each *_sync call runs
    # its own loop: the sync ways are for savers that any loop may use.
    saver = asyncio.run(make_saver(kind, request, tmp_path))
    try:
        assert job.invoke_sync(None, run_id="r1", checkpointer=saver) == result
        assert [e.partial for e in job.stream_sync(None, run_id="r2", checkpointer=saver)] == (
            partials
        )
        assert dict(calls) == {name: 2 * n for name, n in counts.items()}
    finally:
        close = getattr(saver, "close", None)
        if close is not None:
            asyncio.run(close())


@task("emit_step_pause")
async def emit_step_pause(_: Any) -> list[Any]:
    emit("a")
    first = await work(1)
    emit("b")
    answer = interrupt("go?")
    emit("c")
    second = await work(2)
    doubled = await child.invoke(second)
    return [first, answer, second, doubled]


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_emit_step_pause_resume(saver: Any, delivery: Any) -> None:
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver, "delivery": delivery}
    first = await drain(emit_step_pause(None, **options))
    assert first == (["a", "b"], [Interrupt("go?", "emit_step_pause/interrupt#1")])
    stored = await load_stored(saver, "r1")
    assert stored is not None
    assert stored.status == "paused"
    assert stored.delivered == 2
    stream = emit_step_pause.resume("yes", **options)
    assert await drain(stream) == (["c"], [])
    assert stream.result == [10, "yes", 20, 40]
    assert dict(calls) == {"work": 2, "child": 1}


@task("checks_its_own_records")
async def checks_its_own_records(_: Any, ctx: TaskContext) -> int:
    saver = checked_saver[0]
    emit("a")
    before = await load_stored(saver, ctx.run_id)
    assert before is not None
    value = await work(3)
    after = await load_stored(saver, ctx.run_id)
    assert after is not None
    # The step's record was committed before its result came back.
    assert len(after.entries) == len(before.entries) + 1
    emit("b")
    return value


checked_saver: list[Any] = []


async def test_a_step_is_stored_before_its_result_is_handed_back(saver: Any) -> None:
    checked_saver[:] = [saver]
    stream = checks_its_own_records(None, run_id="r1", checkpointer=saver)
    delivered = []
    async with asyncio.timeout(BOUND):
        async for partial, _, _ in stream:
            stored = await load_stored(saver, "r1")
            assert stored is not None
            delivered.append((partial, stored.delivered))
    # Each partial was counted as delivered in storage before the consumer had it.
    assert delivered == [("a", 1), ("b", 2)]
    assert stream.result == 30


# -- point 3: siblings that pause while others write or run steps -----------------------


@task("b")
async def b(x: int, ctx: TaskContext) -> int:
    return await ctx.step(_double, x)


async def _double(v: int) -> int:
    # On the loop: a sync step function would run in a worker thread, which a
    # TaskGroup's cancellation cannot stop (it would finish unrecorded, and run again).
    calls["double"] += 1
    return v * 2


@task("a")
async def a(_: Any) -> Any:
    return interrupt("a?")


@task("parent")
async def parent(_: Any) -> list[Any]:
    return list(await asyncio.gather(b.invoke(21), a.invoke(None)))


async def slow_fetch(v: int) -> int:
    for _ in range(5):  # yields to the loop: the sibling pauses meanwhile
        await asyncio.sleep(0)
    calls["slow_fetch"] += 1
    return v * 2


@task("asker")
async def asker(_: Any) -> Any:
    return interrupt("asker?")


@task("fetcher")
async def fetcher(_: Any, ctx: TaskContext) -> list[Any]:
    return list(await asyncio.gather(ctx.step(slow_fetch, 21), asker.invoke(None)))


@task("grouped")
async def grouped(_: Any, ctx: TaskContext) -> list[Any]:
    async with asyncio.TaskGroup() as group:
        fetched = group.create_task(b.invoke(21))
        asked = group.create_task(a.invoke(None))
    return [fetched.result(), asked.result()]


SIBLINGS = [
    (parent, "parent/a#1/interrupt#0", "a?", [42, "yes"], {"double": 1}),
    (fetcher, "fetcher/asker#1/interrupt#0", "asker?", [42, "yes"], {"slow_fetch": 1}),
    (grouped, "grouped/a#1/interrupt#0", "a?", [42, "yes"], {"double": 1}),
]
REPEATS = 8  # the old code lost most of these races; several rounds catch any that remain


@pytest.mark.parametrize(("job", "site", "question", "result", "counts"), SIBLINGS)
async def test_a_sibling_pauses_while_another_writes_with_invoke(
    saver: Any, job: Any, site: str, question: str, result: list[Any], counts: dict[str, int]
) -> None:
    for round_ in range(REPEATS):
        run_id = f"r{round_}"
        with pytest.raises(TaskInterrupted) as paused:
            async with asyncio.timeout(BOUND):
                await job.invoke(None, run_id=run_id, checkpointer=saver)
        assert paused.value.interrupts == [Interrupt(question, site)]
        stored = await load_stored(saver, run_id)
        assert stored is not None
        assert (stored.status, stored.pending) == ("paused", (site,))
        async with asyncio.timeout(BOUND):
            assert await job.invoke(Command(resume="yes"), run_id=run_id, checkpointer=saver) == (
                result
            )
        assert await load_stored(saver, run_id) is None
    assert dict(calls) == {name: REPEATS * n for name, n in counts.items()}


@pytest.mark.parametrize(("job", "site", "question", "result", "counts"), SIBLINGS)
async def test_a_sibling_pauses_while_another_writes_with_async_for(
    saver: Any, job: Any, site: str, question: str, result: list[Any], counts: dict[str, int]
) -> None:
    for round_ in range(REPEATS):
        options: dict[str, Any] = {"run_id": f"r{round_}", "checkpointer": saver}
        assert await drain(job(None, **options)) == ([], [Interrupt(question, site)])
        # re-attaching reports the same pause: the run was not written over
        assert await drain(job(**options)) == ([], [Interrupt(question, site)])
        stream = job.resume("yes", **options)
        assert await drain(stream) == ([], [])
        assert stream.result == result
    assert dict(calls) == {name: REPEATS * n for name, n in counts.items()}


@pytest.mark.parametrize("kind", ["memory", "dict", "sqlite"])
@pytest.mark.parametrize(("job", "site", "question", "result", "counts"), SIBLINGS)
def test_a_sibling_pauses_while_another_writes_with_the_sync_ways(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    job: Any,
    site: str,
    question: str,
    result: list[Any],
    counts: dict[str, int],
) -> None:
    saver = asyncio.run(make_saver(kind, request, tmp_path))
    try:
        with pytest.raises(TaskInterrupted) as paused:
            job.invoke_sync(None, run_id="r1", checkpointer=saver)
        assert paused.value.interrupts == [Interrupt(question, site)]
        assert job.resume_sync("yes", run_id="r1", checkpointer=saver) == result
        events = list(job.stream_sync(None, run_id="r2", checkpointer=saver))
        assert [e.interrupt for e in events] == [Interrupt(question, site)]
        events = list(job.stream_sync(Command(resume="yes"), run_id="r2", checkpointer=saver))
        assert events == []
        assert dict(calls) == {name: 2 * n for name, n in counts.items()}
    finally:
        close = getattr(saver, "close", None)
        if close is not None:
            asyncio.run(close())


class _Recording:
    """Wraps a saver and logs the status of every write that reached it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.statuses: list[str] = []
        self.serde = getattr(inner, "serde", None)

    async def load(self, run_id: str) -> Checkpoint | None:
        return await load_stored(self.inner, run_id)

    async def save(self, write: Any, expected_version: int | None) -> int:
        self.statuses.append(write.status)
        result = self.inner.save(write, expected_version)
        version: int = await result if inspect.isawaitable(result) else result
        return version

    async def mark_delivered(self, run_id: str, delivered: int, expected: int) -> int:
        self.statuses.append("mark")
        mark = getattr(self.inner, "mark_delivered", None)
        if mark is None:
            raise AssertionError("no partials in these tests")
        result = mark(run_id, delivered, expected)
        version: int = await result if inspect.isawaitable(result) else result
        return version

    async def delete(self, run_id: str) -> None:
        result = self.inner.delete(run_id)
        if inspect.isawaitable(result):
            await result


released: list[asyncio.Event] = []


async def _late_work(v: int) -> int:
    calls["late"] += 1
    return v


@task("leaves_a_straggler")
async def leaves_a_straggler(_: Any, ctx: TaskContext) -> Any:
    async def later() -> int:
        await released[0].wait()
        return await ctx.step(_late_work, 1)

    stragglers.append(asyncio.create_task(later()))
    return interrupt("wait")


stragglers: list[asyncio.Task[int]] = []


async def test_nothing_writes_to_a_run_after_it_paused(saver: Any) -> None:
    recording = _Recording(saver)
    released[:] = [asyncio.Event()]
    stragglers.clear()
    with pytest.raises(TaskInterrupted):
        async with asyncio.timeout(BOUND):
            await leaves_a_straggler.invoke(None, run_id="r1", checkpointer=recording)
    assert recording.statuses == ["running", "paused"]
    stored = await load_stored(saver, "r1")
    released[0].set()
    with pytest.raises(RunClosedError, match="'r1' has already stopped"):
        async with asyncio.timeout(BOUND):
            await stragglers[0]
    assert calls["late"] == 0  # refused before the step's function ran
    assert recording.statuses == ["running", "paused"]
    assert await load_stored(saver, "r1") == stored


@task("gathers_slow_steps")
async def gathers_slow_steps(_: Any, ctx: TaskContext) -> list[Any]:
    async def chain() -> int:
        fetched = await ctx.step(slow_fetch, 1)
        return await ctx.step(_double, fetched)

    return list(await asyncio.gather(chain(), ctx.step(slow_fetch, 2), asker.invoke(None)))


async def test_a_pause_lets_started_steps_finish_and_starts_none(saver: Any) -> None:
    recording = _Recording(saver)
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": recording}
    site = "gathers_slow_steps/asker#1/interrupt#0"
    assert await drain(gathers_slow_steps(None, **options)) == ([], [Interrupt("asker?", site)])
    # Both slow steps were running when the sibling paused: they finished and were
    # recorded before the pause was written. The step `chain` would have started next
    # did not start.
    assert recording.statuses == ["running", "running", "running", "paused"]
    assert dict(calls) == {"slow_fetch": 2}
    stream = gathers_slow_steps.resume("yes", **options)
    assert await drain(stream) == ([], [])
    assert stream.result == [4, 4, "yes"]
    assert dict(calls) == {"slow_fetch": 2, "double": 1}


# -- point 6: a pause swallowed by user code ---------------------------------------------


@task("swallows")
async def swallows(_: Any) -> str:
    emit("before")
    with contextlib.suppress(BaseException):
        interrupt("ok?")
    return "finished anyway"


@task("swallows_then_steps")
async def swallows_then_steps(_: Any) -> int:
    try:  # noqa: SIM105 - the bug under test, as users write it
        interrupt("ok?")
    except:  # noqa: E722
        pass
    return await work(5)


@task("swallowing_child", record=False)
async def swallowing_child(_: Any) -> str:
    with contextlib.suppress(BaseException):
        interrupt("inner?")
    return "child done"


@task("recorded_swallowing_child")
async def recorded_swallowing_child(_: Any) -> str:
    with contextlib.suppress(BaseException):
        interrupt("inner?")
    return "child done"


@task("parent_of_swallower")
async def parent_of_swallower(_: Any) -> str:
    return await swallowing_child.invoke(None)


@task("parent_of_recorded_swallower")
async def parent_of_recorded_swallower(_: Any) -> str:
    return await recorded_swallowing_child.invoke(None)


@task("swallows_a_child")
async def swallows_a_child(_: Any) -> str:
    with contextlib.suppress(BaseException):
        await a.invoke(None)
    return "parent done"


@task("swallows_in_a_thread")
def swallows_in_a_thread(_: Any) -> str:
    try:  # noqa: SIM105 - the bug under test, in a synchronous task (a worker thread)
        interrupt("ok?")
    except BaseException:
        pass
    return "finished anyway"


SWALLOWED = [
    (swallows, "swallows/interrupt#0", {}),
    (swallows_then_steps, "swallows_then_steps/interrupt#0", {}),
    (parent_of_swallower, "parent_of_swallower/swallowing_child#0/interrupt#0", {}),
    (
        parent_of_recorded_swallower,
        "parent_of_recorded_swallower/recorded_swallowing_child#0/interrupt#0",
        {},
    ),
    (swallows_a_child, "swallows_a_child/a#0/interrupt#0", {}),
    (swallows_in_a_thread, "swallows_in_a_thread/interrupt#0", {}),
]


@pytest.mark.parametrize(("job", "site", "counts"), SWALLOWED)
async def test_a_swallowed_pause_is_an_error_and_the_run_is_kept(
    saver: Any, job: Any, site: str, counts: dict[str, int]
) -> None:
    with pytest.raises(SwallowedInterruptError) as raised:
        async with asyncio.timeout(BOUND):
            await job.invoke(None, run_id="r1", checkpointer=saver)
    assert raised.value.site_ids == [site]
    assert raised.value.run_id == "r1"
    message = str(raised.value)
    assert repr(site) in message
    assert "except BaseException" in message
    assert "raise" in message
    assert dict(calls) == counts  # no step ran after the swallowed pause
    stored = await load_stored(saver, "r1")
    assert stored is not None
    assert (stored.status, stored.pending) == ("running", ())


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_a_swallowed_pause_with_async_for(saver: Any, delivery: Any) -> None:
    stream = swallows(None, run_id="r1", checkpointer=saver, delivery=delivery)
    seen: list[Any] = []

    async def consume() -> None:
        async with asyncio.timeout(BOUND):
            async for partial, _, _ in stream:
                seen.append(partial)

    with pytest.raises(SwallowedInterruptError, match="'swallows/interrupt#0'"):
        await consume()
    assert seen == ["before"]
    assert await load_stored(saver, "r1") is not None


fixed = [False]


@task("fixable")
async def fixable(_: Any) -> str:
    try:
        answer = interrupt("ok?")
    except BaseException:
        if fixed[0]:
            raise
        answer = "swallowed"
    return f"got {answer}"


async def test_once_fixed_calling_again_continues_the_kept_run(saver: Any) -> None:
    fixed[0] = False
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with pytest.raises(SwallowedInterruptError):
        await fixable.invoke(None, **options)
    fixed[0] = True
    with pytest.raises(TaskInterrupted) as paused:
        await fixable.invoke(**options)
    assert paused.value.interrupts == [Interrupt("ok?", "fixable/interrupt#0")]
    assert await fixable.invoke(Command(resume="yes"), **options) == "got yes"


async def _cleanup(label: str) -> str:
    calls[label] += 1
    return label


@task("cleans_up")
async def cleans_up(_: Any, ctx: TaskContext) -> str:
    try:
        answer = ctx.interrupt("ok?")
    finally:
        await ctx.step(_cleanup, "in finally")
    return f"got {answer}"


@task("logs_and_reraises")
async def logs_and_reraises(_: Any, ctx: TaskContext) -> str:
    try:
        answer = ctx.interrupt("ok?")
    except BaseException:
        await ctx.step(_cleanup, "in handler")  # may run: the pause is re-raised
        raise
    return f"got {answer}"


async def test_a_step_in_a_finally_a_pause_goes_through_runs_once(saver: Any) -> None:
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        await cleans_up.invoke(None, **options)
    assert dict(calls) == {"in finally": 1}
    assert await cleans_up.invoke(Command(resume="yes"), **options) == "got yes"
    assert dict(calls) == {"in finally": 1}  # replayed from the first attempt's record


async def test_a_step_in_a_handler_that_reraises_the_pause_runs(saver: Any) -> None:
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    with pytest.raises(TaskInterrupted) as paused:
        await logs_and_reraises.invoke(None, **options)
    assert paused.value.interrupts == [Interrupt("ok?", "logs_and_reraises/interrupt#0")]
    assert dict(calls) == {"in handler": 1}
    stored = await load_stored(saver, "r1")
    assert stored is not None
    assert stored.status == "paused"


# -- found by the effect matrix ----------------------------------------------------------


@task("asks_twice")
async def asks_twice(_: Any) -> AsyncIterator[list[Any]]:
    emit("e0")
    first = interrupt("q1")
    second = interrupt("q2")
    yield [first, second]


async def test_a_skipped_partial_just_before_a_pause_keeps_the_pause(saver: Any) -> None:
    # On resume, "e0" is skipped (delivered before) in the same pull that raises the
    # second pause: that pause used to be dropped and the run deleted as finished.
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    assert await drain(asks_twice(None, **options)) == (
        ["e0"],
        [Interrupt("q1", "asks_twice/interrupt#0")],
    )
    assert await drain(asks_twice.resume("a1", **options)) == (
        [],
        [Interrupt("q2", "asks_twice/interrupt#1")],
    )
    assert await drain(asks_twice.resume("a2", **options)) == ([["a1", "a2"]], [])


@task("noop")
async def noop(_: Any) -> None:
    return None


@task("gathers_then_asks", record=False)
async def gathers_then_asks(_: Any) -> Any:
    await asyncio.gather(noop.invoke(None), noop.invoke(None))
    return interrupt("inner?")


@task("emits_then_nests")
async def emits_then_nests(_: Any) -> Any:
    emit("p")
    return await gathers_then_asks.invoke(None)


async def test_a_held_body_resumes_in_its_own_frame(saver: Any) -> None:
    # The top body holds the child's await (it emitted "p" first); when it resumes on the
    # next pull, the child's interrupt must still be the child's.
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver}
    site = "emits_then_nests/gathers_then_asks#0/interrupt#2"
    assert await drain(emits_then_nests(None, **options)) == (["p"], [Interrupt("inner?", site)])
    stream = emits_then_nests.resume("yes", **options)
    assert await drain(stream) == ([], [])
    assert stream.result == "yes"


@task("groups_after_emitting")
async def groups_after_emitting(_: Any) -> str:
    emit("p")
    async with asyncio.TaskGroup() as group:
        group.create_task(a.invoke(None))
        group.create_task(b.invoke(21))
    return "done"


@pytest.mark.parametrize("delivery", DELIVERIES)
async def test_a_task_group_failing_while_its_partial_is_marked(saver: Any, delivery: Any) -> None:
    # The TaskGroup cancels the consumer's asyncio task (its parent) when `a` pauses,
    # while the consumer may be marking "p" delivered: the cancellation belongs to the
    # suspended body, which pauses; the mark still completes.
    options: dict[str, Any] = {"run_id": "r1", "checkpointer": saver, "delivery": delivery}
    site = "groups_after_emitting/a#0/interrupt#0"
    assert await drain(groups_after_emitting(None, **options)) == (["p"], [Interrupt("a?", site)])
    stream = groups_after_emitting.resume("yes", **options)
    assert await drain(stream) == ([], [])
    assert stream.result == "done"
    assert calls["double"] == 1


# -- a step in a worker thread, cancelled by a TaskGroup while its sibling pauses ---------

_thread_step_release = threading.Event()


def _double_in_thread(v: int) -> int:
    # A sync step function: it runs in a worker thread, which no cancellation can stop.
    assert _thread_step_release.wait(BOUND), "never released"
    calls["double_in_thread"] += 1
    return v * 2


@task("thread_b")
async def thread_b(x: int, ctx: TaskContext) -> int:
    return await ctx.step(_double_in_thread, x)


@task("ask_in_group")
async def ask_in_group(_: Any) -> Any:
    return interrupt("a?")


@task("grouped_thread_step")
async def grouped_thread_step(_: Any) -> list[Any]:
    async def release_when_cancelled() -> None:
        if _thread_step_release.is_set():
            return  # replaying: the step is recorded
        try:
            await asyncio.Event().wait()
        finally:  # the TaskGroup cancels the step's task first: it is already stopping
            _thread_step_release.set()

    async with asyncio.TaskGroup() as group:
        fetched = group.create_task(thread_b.invoke(21))
        watcher = group.create_task(release_when_cancelled())
        await asyncio.sleep(0)  # both have started: the step waits on its thread
        asked = group.create_task(ask_in_group.invoke(None))
    del watcher
    return [fetched.result(), asked.result()]


async def test_a_thread_step_cancelled_by_a_task_group_is_recorded_not_run_again(
    saver: Any,
) -> None:
    # The TaskGroup cancels the step's asyncio task when its sibling pauses; the function
    # runs on in its thread and has its effect, so its outcome is recorded before the
    # pause is written: the resume replays it instead of running it a second time.
    for round_ in range(3):
        _thread_step_release.clear()
        run_id = f"t{round_}"
        options: dict[str, Any] = {"run_id": run_id, "checkpointer": saver}
        with pytest.raises(TaskInterrupted) as paused:
            async with asyncio.timeout(BOUND):
                await grouped_thread_step.invoke(None, **options)
        site = "grouped_thread_step/ask_in_group#1/interrupt#0"
        assert paused.value.interrupts == [Interrupt("a?", site)]
        assert calls["double_in_thread"] == round_ + 1
        async with asyncio.timeout(BOUND):
            resumed = await grouped_thread_step.invoke(Command(resume="yes"), **options)
        assert resumed == [42, "yes"]
        assert calls["double_in_thread"] == round_ + 1  # replayed, not run again
