"""Checkpoints, replay, exactly-once delivery, re-attach and isolation of runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_tasks import (
    Command,
    Event,
    InputMismatchError,
    Interrupt,
    MemorySaver,
    NoCheckpointError,
    SerializationError,
    Snapshot,
    TaskContext,
    TinyTasksError,
    emit,
    interrupt,
    task,
)

# -- checkpoints -------------------------------------------------------------------------


async def test_checkpoint_saved_at_start_every_partial_and_the_pause(saver: MemorySaver) -> None:
    seen_at_start: list[Any] = []

    @task("workflow")
    async def workflow(name: str):
        stored = saver.load("cp")
        seen_at_start.append(stored and (stored.status, stored.delivered, stored.task_name))
        yield f"processing {name}"
        yield "still processing"
        interrupt("wait")
        yield "done"

    stream = workflow("job", run_id="cp", checkpointer=saver)
    assert saver.load("cp") is None  # nothing happens before the first __anext__

    delivered: list[int] = []
    async for _, _, intr in stream:
        stored = saver.load("cp")
        assert stored is not None
        if intr is None:
            assert stored.status == "running"
        delivered.append(stored.delivered)
    assert seen_at_start == [("running", 0, "workflow")]
    assert delivered == [1, 2, 2]

    paused = saver.load("cp")
    assert paused is not None
    assert (paused.status, paused.delivered, paused.pending) == (
        "paused",
        2,
        ("workflow/interrupt#0",),
    )


async def test_checkpoint_removed_on_completion(saver: MemorySaver, collect: Any) -> None:
    @task
    async def quick(_: Any):
        yield "a"
        answer = interrupt("?")
        yield answer

    opts: dict[str, Any] = {"run_id": "quick", "checkpointer": saver}
    await collect(quick(**opts))
    assert saver.load("quick") is not None
    assert await collect(quick.resume("b", **opts)) == (["b"], [])
    assert saver.load("quick") is None
    assert len(saver) == 0

    with pytest.raises(NoCheckpointError, match="'quick'"):
        await collect(quick.resume("again", **opts))


async def test_checkpoint_removed_on_exception_which_propagates_unchanged(
    saver: MemorySaver, collect: Any
) -> None:
    boom = RuntimeError("boom")
    opts: dict[str, Any] = {"run_id": "crash", "checkpointer": saver}

    @task
    async def faulty(_: Any):
        yield "hello"
        assert saver.load("crash") is not None
        raise boom

    stream = faulty(**opts)
    assert (await anext(stream)).partial == "hello"
    with pytest.raises(RuntimeError) as caught:
        await anext(stream)
    assert caught.value is boom
    assert saver.load("crash") is None

    with pytest.raises(NoCheckpointError, match="'crash'"):
        await collect(faulty.resume("x", **opts))


async def test_exception_after_resume_removes_the_checkpoint(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def picky(_: Any):
        if interrupt("number?") != 42:
            raise ValueError("wrong answer")
        yield "right"

    opts: dict[str, Any] = {"run_id": "picky", "checkpointer": saver}
    await collect(picky(**opts))
    with pytest.raises(ValueError, match="wrong answer"):
        await collect(picky.resume(7, **opts))
    assert saver.load("picky") is None


async def test_a_later_call_with_the_same_run_id_starts_afresh(
    saver: MemorySaver, collect: Any
) -> None:
    entries: list[str] = []

    @task
    async def job(name: str):
        entries.append(name)
        yield f"processing {name}"
        yield f"done: {name}"

    opts: dict[str, Any] = {"run_id": "same", "checkpointer": saver}
    assert await collect(job("one", **opts)) == (["processing one", "done: one"], [])
    assert await collect(job("two", **opts)) == (["processing two", "done: two"], [])
    assert entries == ["one", "two"]


async def test_a_later_call_after_a_failure_starts_afresh(saver: MemorySaver, collect: Any) -> None:
    attempts: list[int] = []

    @task
    async def flaky(_: Any):
        attempts.append(len(attempts))
        yield f"attempt {len(attempts)}"
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")

    opts: dict[str, Any] = {"run_id": "flaky", "checkpointer": saver}
    with pytest.raises(ConnectionError):
        await collect(flaky(**opts))
    assert await collect(flaky(**opts)) == (["attempt 2"], [])


async def test_another_checkpointer_has_nothing_to_resume(saver: MemorySaver, collect: Any) -> None:
    @task
    async def asks(_: Any):
        yield interrupt("?")

    await collect(asks(run_id="r", checkpointer=saver))
    with pytest.raises(NoCheckpointError, match="'r'"):
        await collect(asks.resume("x", run_id="r", checkpointer=MemorySaver()))
    assert saver.load("r") is not None


async def test_runs_are_stored_per_run_id(saver: MemorySaver, collect: Any) -> None:
    @task
    async def asks(name: str):
        yield f"{name}: {interrupt(name)}"

    await collect(asks("a", run_id="A", checkpointer=saver))
    await collect(asks("b", run_id="B", checkpointer=saver))
    assert await collect(asks.resume("for b", run_id="B", checkpointer=saver)) == (
        ["b: for b"],
        [],
    )
    assert saver.load("B") is None
    assert saver.load("A") is not None
    assert await collect(asks.resume("for a", run_id="A", checkpointer=saver)) == (
        ["a: for a"],
        [],
    )


# -- replay ------------------------------------------------------------------------------


async def test_resume_replays_the_function_with_the_stored_input(
    saver: MemorySaver, collect: Any
) -> None:
    entries: list[str] = []

    @task
    async def greet(name: str):
        entries.append(name)
        yield f"hello {name}"
        yield f"{name} says {interrupt('say what?')}"

    opts: dict[str, Any] = {"run_id": "greet", "checkpointer": saver}
    await collect(greet("ada", **opts))
    assert await collect(greet.resume("hi", **opts)) == (["ada says hi"], [])
    assert entries == ["ada", "ada"]  # the body ran again, from the start


async def test_two_sequential_interrupts_resumed_twice(saver: MemorySaver, collect: Any) -> None:
    @task
    async def worker(_: Any, ctx: TaskContext):
        yield "A0"
        yield ctx.interrupt({"q": "q1"})
        yield "B0"
        yield ctx.interrupt({"q": "q2"})
        yield "C0"

    opts: dict[str, Any] = {"run_id": "multi", "checkpointer": saver}
    assert await collect(worker(**opts)) == (["A0"], [Interrupt({"q": "q1"}, "worker/interrupt#0")])
    assert await collect(worker.resume("ans1", **opts)) == (
        ["ans1", "B0"],
        [Interrupt({"q": "q2"}, "worker/interrupt#1")],
    )
    assert await collect(worker.resume("ans2", **opts)) == (["ans2", "C0"], [])


async def test_interrupt_ids_are_stable_across_replays(saver: MemorySaver) -> None:
    @task("workflow")
    async def workflow(_: Any):
        yield interrupt("first")
        yield interrupt("second")

    opts: dict[str, Any] = {"run_id": "stable", "checkpointer": saver}
    first = [intr async for _, _, intr in workflow(**opts) if intr]
    again = [intr async for _, _, intr in workflow(**opts) if intr]  # re-attach
    after = [intr async for _, _, intr in workflow.resume(1, **opts) if intr]

    assert first == again == [Interrupt("first", "workflow/interrupt#0")]
    assert after == [Interrupt("second", "workflow/interrupt#1")]


async def test_every_partial_is_delivered_exactly_once_across_many_pauses(
    saver: MemorySaver, collect: Any
) -> None:
    body_entries = 0

    @task
    async def loop(_: Any):
        nonlocal body_entries
        body_entries += 1
        for i in range(5):
            yield f"before {i}"
            answer = interrupt(f"question {i}")
            yield f"after {i}: {answer}"

    opts: dict[str, Any] = {"run_id": "loop", "checkpointer": saver}
    seen, interrupts = await collect(loop(**opts))
    for i in range(5):
        assert interrupts == [Interrupt(f"question {i}", f"loop/interrupt#{i}")]
        partials, interrupts = await collect(loop.resume(f"answer {i}", **opts))
        seen += partials

    assert interrupts == []
    assert seen == [part for i in range(5) for part in (f"before {i}", f"after {i}: answer {i}")]
    assert body_entries == 6
    assert saver.load("loop") is None


async def test_the_snapshot_after_a_resume_lists_every_answer(saver: MemorySaver) -> None:
    @task
    async def two(_: Any):
        first = interrupt(1)
        second = interrupt(2)
        yield [first, second]

    opts: dict[str, Any] = {"run_id": "two", "checkpointer": saver}
    [event async for event in two(**opts)]
    [event async for event in two.resume("x", **opts)]
    events = [event async for event in two.resume("y", **opts)]
    assert events == [Event(["x", "y"], Snapshot(["x", "y"], "two", ()), None)]


# -- re-attach ---------------------------------------------------------------------------


async def test_calling_a_paused_run_reports_its_interrupt_again_without_running_it(
    saver: MemorySaver,
) -> None:
    body_entries = 0

    @task("workflow")
    async def workflow(name: str):
        nonlocal body_entries
        body_entries += 1
        yield f"processing {name}"
        yield f"done: {interrupt({'message': 'wait'})}"

    opts: dict[str, Any] = {"run_id": "attach", "checkpointer": saver}
    [event async for event in workflow("job", **opts)]
    assert body_entries == 1

    wait = Interrupt({"message": "wait"}, "workflow/interrupt#0")
    for again in (workflow("job", **opts), workflow(**opts)):
        events = [event async for event in again]
        assert events == [Event(None, Snapshot([], "attach", (wait,)), wait)]
    assert body_entries == 1

    assert [p async for p, _, _ in workflow.resume("go", **opts)] == ["done: go"]


async def test_invoke_of_a_paused_run_raises_its_interrupt_again(saver: MemorySaver) -> None:
    from tiny_tasks import TaskInterrupted

    @task
    async def asks(_: Any) -> str:
        return interrupt("?")

    opts: dict[str, Any] = {"run_id": "asks", "checkpointer": saver}
    for _ in range(2):
        with pytest.raises(TaskInterrupted) as caught:
            await asks.invoke(**opts)
        assert caught.value.interrupts == [Interrupt("?", "asks/interrupt#0")]


async def test_an_abandoned_run_continues_from_where_its_consumer_left(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def five(name: str):
        for i in range(1, 6):
            yield f"{name} {i}"

    opts: dict[str, Any] = {"run_id": "abandoned", "checkpointer": saver}
    received: list[str] = []
    stream = five("part", **opts)
    async for partial, _, _ in stream:
        received.append(partial)
        if len(received) == 2:
            break
    await stream.aclose()
    assert received == ["part 1", "part 2"]

    stored = saver.load("abandoned")
    assert stored is not None
    assert (stored.status, stored.delivered) == ("running", 2)

    assert await collect(five(**opts)) == (["part 3", "part 4", "part 5"], [])
    assert saver.load("abandoned") is None


async def test_an_abandoned_run_continues_with_the_same_input(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def five(name: str):
        for i in range(1, 6):
            yield f"{name} {i}"

    opts: dict[str, Any] = {"run_id": "same-input", "checkpointer": saver}
    stream = five("part", **opts)
    await anext(stream)
    await stream.aclose()

    assert await collect(five("part", **opts)) == (["part 2", "part 3", "part 4", "part 5"], [])


async def test_another_input_for_an_existing_run_is_refused(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def asks(name: str):
        yield f"{name}: {interrupt(name)}"

    opts: dict[str, Any] = {"run_id": "mine", "checkpointer": saver}
    await collect(asks("alice", **opts))

    with pytest.raises(InputMismatchError, match="'mine'") as caught:
        await collect(asks("bob", **opts))
    assert isinstance(caught.value, TinyTasksError)
    assert (caught.value.run_id, caught.value.stored, caught.value.given) == (
        "mine",
        "alice",
        "bob",
    )
    # the stored run is untouched
    assert await collect(asks.resume("hi", **opts)) == (["alice: hi"], [])


async def test_command_for_a_run_that_is_not_paused(saver: MemorySaver, collect: Any) -> None:
    @task
    async def five(_: Any):
        for i in range(5):
            yield i

    opts: dict[str, Any] = {"run_id": "running", "checkpointer": saver}
    stream = five(**opts)
    await anext(stream)
    await stream.aclose()

    with pytest.raises(NoCheckpointError, match="'running'"):
        await collect(five(Command(resume="x"), **opts))
    assert await collect(five(**opts)) == ([1, 2, 3, 4], [])


async def test_a_run_abandoned_after_a_resume_continues_exactly_once(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def job(_: Any):
        yield "a"
        answer = interrupt("?")
        for i in range(4):
            yield f"{answer} {i}"

    opts: dict[str, Any] = {"run_id": "mixed", "checkpointer": saver}
    assert await collect(job(**opts)) == (["a"], [Interrupt("?", "job/interrupt#0")])
    stream = job.resume("x", **opts)
    assert (await anext(stream)).partial == "x 0"
    await stream.aclose()
    assert await collect(job(**opts)) == (["x 1", "x 2", "x 3"], [])


# -- isolation -------------------------------------------------------------------------


async def test_twenty_concurrent_runs_never_see_each_other(saver: MemorySaver) -> None:
    @task("flow")
    async def flow(label: str, ctx: TaskContext):
        yield f"{label}-t0"
        await asyncio.sleep(0)  # let the other runs interleave
        answer = ctx.interrupt({"ask": label})
        await asyncio.sleep(0)
        yield f"{label}-{answer}"
        yield f"{label}-t1"

    async def run(label: str) -> tuple[list[Any], list[Interrupt], Any]:
        opts: dict[str, Any] = {"run_id": label, "checkpointer": saver}
        parts: list[Any] = []
        intrs: list[Interrupt] = []
        async for partial, snapshot, intr in flow(label, **opts):
            assert snapshot.run_id == label
            if intr:
                intrs.append(intr)
            else:
                parts.append(partial)
        stored = saver.load(label)
        pending = stored and stored.pending
        async for partial, snapshot, _ in flow.resume(f"{label}-answer", **opts):
            assert snapshot.resume == [f"{label}-answer"]
            parts.append(partial)
        return parts, intrs, pending

    labels = [f"run-{i}" for i in range(20)]
    outcomes = await asyncio.gather(*(run(label) for label in labels))

    for label, (parts, intrs, pending) in zip(labels, outcomes, strict=True):
        assert parts == [f"{label}-t0", f"{label}-{label}-answer", f"{label}-t1"]
        assert intrs == [Interrupt({"ask": label}, "flow/interrupt#0")]
        assert pending == ("flow/interrupt#0",)
    assert len(saver) == 0


async def test_a_run_and_its_neighbour_share_a_saver_but_not_a_checkpoint(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def counter(start: int):
        for i in range(start, start + 3):
            yield i

    a = counter(0, run_id="a", checkpointer=saver)
    b = counter(100, run_id="b", checkpointer=saver)
    assert [(await anext(a)).partial, (await anext(b)).partial, (await anext(b)).partial] == [
        0,
        100,
        101,
    ]
    stored_a, stored_b = saver.load("a"), saver.load("b")
    assert stored_a is not None
    assert stored_b is not None
    assert (stored_a.delivered, stored_b.delivered) == (1, 2)
    assert await collect(a) == ([1, 2], [])
    assert await collect(b) == ([102], [])


# -- more shapes of the same promises ---------------------------------------------------


async def test_a_cancelled_consumer_leaves_a_run_that_can_be_continued(
    saver: MemorySaver, collect: Any
) -> None:
    # Cancellation comes from outside (a shutdown, a request timeout), like a process
    # that dies: the run is not failed, and calling it again continues it.
    waiting = asyncio.Event()
    gate = asyncio.Event()

    @task
    async def job(_: Any):
        yield 1
        waiting.set()
        await gate.wait()
        yield 2

    opts: dict[str, Any] = {"run_id": "cancelled", "checkpointer": saver}
    received: list[int] = []

    async def consume() -> None:
        async for partial, _, _ in job(**opts):
            received.append(partial)

    consumer = asyncio.create_task(consume())
    await waiting.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert received == [1]

    stored = saver.load("cancelled")
    assert stored is not None
    assert (stored.status, stored.delivered) == ("running", 1)
    gate.set()
    assert await collect(job(**opts)) == ([2], [])


async def test_a_coroutine_task_delivers_emitted_partials_before_its_interrupt(
    saver: MemorySaver,
) -> None:
    @task
    async def job(_: Any) -> str:
        emit("a")
        emit("b")
        answer = interrupt("?")
        emit(f"c {answer}")
        return answer

    opts: dict[str, Any] = {"run_id": "emit-order", "checkpointer": saver}
    events = [(p, i) async for p, _, i in job(**opts)]
    assert events == [("a", None), ("b", None), (None, Interrupt("?", "job/interrupt#0"))]

    stream = job.resume("yes", **opts)
    assert [p async for p, _, _ in stream] == ["c yes"]
    assert stream.result == "yes"


async def test_a_sync_generator_task_pauses_and_resumes(saver: MemorySaver, collect: Any) -> None:
    entries = 0

    @task
    def survey(questions: list[str]):
        nonlocal entries
        entries += 1
        answers = []
        for question in questions:
            yield f"asking {question}"
            answers.append(interrupt(question))
        return answers

    opts: dict[str, Any] = {"run_id": "survey", "checkpointer": saver}
    assert await collect(survey(["name?", "age?"], **opts)) == (
        ["asking name?"],
        [Interrupt("name?", "survey/interrupt#0")],
    )
    assert await collect(survey.resume("ada", **opts)) == (
        ["asking age?"],
        [Interrupt("age?", "survey/interrupt#1")],
    )
    assert await survey.invoke(Command(resume=36), **opts) == ["ada", 36]
    assert entries == 3


def _drive(ops: list[bool], stops: list[int]) -> list[str]:
    """Run a task shaped by `ops` to the end, abandoning streams after `stops` events."""

    @task("plan")
    async def plan(_: Any):
        for index, asks in enumerate(ops):
            if asks:
                yield f"answer {interrupt(index)}"
            else:
                yield f"partial {index}"

    async def main() -> list[str]:
        saver = MemorySaver()
        opts: dict[str, Any] = {"run_id": "plan", "checkpointer": saver}
        seen: list[str] = []
        answer: Any = None
        for attempt in range(3 * len(ops) + 3):
            stream = plan(Command(resume=answer), **opts) if answer is not None else plan(**opts)
            answer = None
            stop = stops[attempt % len(stops)]
            events = 0
            async for partial, _, intr in stream:
                events += 1
                if intr is not None:
                    answer = f"a{intr.value}"
                else:
                    seen.append(partial)
                if events == stop:
                    break
            finished = events < stop and answer is None
            await stream.aclose()
            if finished:
                assert saver.load("plan") is None
                return seen
        raise AssertionError("the run made no progress")

    return asyncio.run(main())


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.booleans(), max_size=8),
    stops=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5),
)
def test_any_mix_of_pauses_and_abandoned_streams_delivers_each_partial_once(
    ops: list[bool], stops: list[int]
) -> None:
    expected = [f"answer a{i}" if asks else f"partial {i}" for i, asks in enumerate(ops)]
    assert _drive(ops, stops) == expected


# -- values that cannot be stored ------------------------------------------------------


class Opaque:
    """A value the default codec refuses: not a dataclass, not registered."""


async def test_an_unstorable_input_is_refused_before_anything_is_stored(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def job(_: Any):
        yield "never"

    with pytest.raises(SerializationError, match="Opaque") as caught:
        await collect(job(Opaque(), run_id="bad-input", checkpointer=saver))
    assert "'bad-input'" in str(caught.value)
    assert saver.load("bad-input") is None

    assert await collect(job(Opaque())) == (["never"], [])  # fine without a checkpointer


async def test_an_unstorable_interrupt_value_names_the_interrupt(
    saver: MemorySaver, collect: Any
) -> None:
    @task("job")
    async def job(_: Any):
        yield interrupt(Opaque())

    with pytest.raises(SerializationError, match="Opaque") as caught:
        await collect(job(run_id="bad-interrupt", checkpointer=saver))
    assert "'job/interrupt#0'" in str(caught.value)

    _, interrupts = await collect(job())  # fine without a checkpointer
    assert [intr.id for intr in interrupts] == ["job/interrupt#0"]
