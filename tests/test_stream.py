"""Running a task: its stream of events, its result, invoke, interrupts, closing early."""

from __future__ import annotations

import asyncio
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
    TinyTasksError,
    emit,
    interrupt,
    task,
)


@task("workflow")
async def workflow(name: str, ctx: TaskContext):
    yield f"processing {name}"
    answer = ctx.interrupt({"message": "wait"})
    yield f"done: {answer}"


WAIT = Interrupt({"message": "wait"}, "workflow/interrupt#0")


# -- the events of a stream --------------------------------------------------------------


async def test_quick_start_events_exactly(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "demo", "checkpointer": saver}

    first = [event async for event in workflow("job", **opts)]
    assert first == [
        Event("processing job", Snapshot([], "demo", ()), None),
        Event(None, Snapshot([], "demo", (WAIT,)), WAIT),
    ]

    second = [event async for event in workflow.resume("resume-data", **opts)]
    assert second == [Event("done: resume-data", Snapshot(["resume-data"], "demo", ()), None)]


async def test_the_interrupt_event_is_the_last_event(collect: Any) -> None:
    @task
    async def chatty(_: Any):
        yield 1
        interrupt("stop here")
        yield 2

    events = [event async for event in chatty()]
    assert [e.partial for e in events] == [1, None]
    assert events[-1].interrupt == Interrupt("stop here", "chatty/interrupt#0")


async def test_interrupt_before_the_first_partial(saver: MemorySaver, collect: Any) -> None:
    @task
    async def g(_: Any, ctx: TaskContext):
        value = ctx.interrupt({"msg": "need-arg"})
        yield f"got {value}"

    opts: dict[str, Any] = {"run_id": "immediate", "checkpointer": saver}
    assert await collect(g(**opts)) == ([], [Interrupt({"msg": "need-arg"}, "g/interrupt#0")])
    assert await collect(g.resume("arg-val", **opts)) == (["got arg-val"], [])


async def test_run_id_defaults_to_default() -> None:
    stream = workflow("job")
    assert stream.run_id == "default"
    events = [event async for event in stream]
    assert {event.snapshot.run_id for event in events} == {"default"}


async def test_stream_result_is_the_return_value_once_finished() -> None:
    @task
    async def answer(question: str) -> int:
        emit(f"thinking about {question}")
        return 42

    stream = answer("life")
    assert stream.result is None
    assert [partial async for partial, _, _ in stream] == ["thinking about life"]
    assert stream.result == 42


async def test_stream_result_is_none_when_paused() -> None:
    @task
    async def asks(_: Any) -> str:
        return interrupt("?")

    stream = asks()
    assert [intr async for _, _, intr in stream] == [Interrupt("?", "asks/interrupt#0")]
    assert stream.result is None


async def test_without_a_checkpointer_streams_and_interrupts_the_same(collect: Any) -> None:
    assert await collect(workflow("job")) == (["processing job"], [WAIT])
    with pytest.raises(NoCheckpointError, match="'default'"):
        await collect(workflow.resume("x"))


async def test_interrupt_ids_count_sites_per_task(saver: MemorySaver, collect: Any) -> None:
    @task("review")
    async def review(_: Any, ctx: TaskContext):
        first = ctx.interrupt("first?")
        second = interrupt("second?")
        yield (first, second)

    opts: dict[str, Any] = {"run_id": "ids", "checkpointer": saver}
    assert await collect(review(**opts)) == ([], [Interrupt("first?", "review/interrupt#0")])
    assert await collect(review.resume(1, **opts)) == (
        [],
        [Interrupt("second?", "review/interrupt#1")],
    )
    assert await collect(review.resume(2, **opts)) == ([(1, 2)], [])


async def test_snapshot_resume_lists_the_answers_so_far(saver: MemorySaver, collect: Any) -> None:
    @task
    async def three(_: Any):
        for question in ("a?", "b?", "c?"):
            yield interrupt(question)

    opts: dict[str, Any] = {"run_id": "snap", "checkpointer": saver}
    assert await collect(three(**opts)) == ([], [Interrupt("a?", "three/interrupt#0")])

    second = [event async for event in three.resume("A", **opts)]
    assert [event.snapshot.resume for event in second] == [["A"], ["A"]]
    assert second[-1].snapshot.pending == (Interrupt("b?", "three/interrupt#1"),)

    third = [event async for event in three.resume("B", **opts)]
    assert [event.snapshot.resume for event in third] == [["A", "B"], ["A", "B"]]

    last = [event async for event in three.resume("C", **opts)]
    assert last == [Event("C", Snapshot(["A", "B", "C"], "snap", ()), None)]


# -- invoke ----------------------------------------------------------------------------


async def test_invoke_returns_the_result() -> None:
    @task
    def total(numbers: list[int]) -> int:
        yield "adding"
        return sum(numbers)

    assert await total.invoke([1, 2, 3]) == 6


async def test_invoke_raises_task_interrupted_after_running_finally_blocks(
    saver: MemorySaver,
) -> None:
    cleaned: list[str] = []

    @task("approval")
    async def approval(order: str) -> str:
        try:
            emit(f"checking {order}")
            answer = interrupt({"approve": order})
            return f"{order}: {answer}"
        finally:
            cleaned.append(order)

    opts: dict[str, Any] = {"run_id": "order-1", "checkpointer": saver}
    with pytest.raises(TaskInterrupted) as caught:
        await approval.invoke("order-1", **opts)

    assert caught.value.interrupts == [Interrupt({"approve": "order-1"}, "approval/interrupt#0")]
    assert caught.value.value == {"approve": "order-1"}
    assert caught.value.run_id == "order-1"
    assert "'order-1'" in str(caught.value)
    assert isinstance(caught.value, TinyTasksError)
    assert cleaned == ["order-1"]

    assert await approval.invoke(Command(resume="yes"), **opts) == "order-1: yes"
    assert cleaned == ["order-1", "order-1"]


async def test_invoke_of_a_run_that_pauses_again(saver: MemorySaver) -> None:
    @task
    async def twice(_: Any) -> list[str]:
        return [interrupt("one"), interrupt("two")]

    opts: dict[str, Any] = {"run_id": "twice", "checkpointer": saver}
    with pytest.raises(TaskInterrupted) as first:
        await twice.invoke(**opts)
    assert first.value.value == "one"
    with pytest.raises(TaskInterrupted) as second:
        await twice.invoke(Command(resume="A"), **opts)
    assert second.value.interrupts == [Interrupt("two", "twice/interrupt#1")]
    assert await twice.invoke(Command(resume="B"), **opts) == ["A", "B"]


async def test_command_as_input_is_resume(saver: MemorySaver, collect: Any) -> None:
    opts: dict[str, Any] = {"run_id": "cmd", "checkpointer": saver}
    await collect(workflow("job", **opts))
    assert await collect(workflow(Command(resume="B"), **opts)) == (["done: B"], [])


async def test_resume_with_none_is_an_answer(saver: MemorySaver, collect: Any) -> None:
    opts: dict[str, Any] = {"run_id": "none", "checkpointer": saver}
    await collect(workflow("job", **opts))
    assert await collect(workflow.resume(**opts)) == (["done: None"], [])


# -- nothing to resume ----------------------------------------------------------------


async def test_resume_without_a_checkpoint_names_the_run(saver: MemorySaver) -> None:
    with pytest.raises(NoCheckpointError, match="'never-ran'") as caught:
        async for _ in workflow.resume("x", run_id="never-ran", checkpointer=saver):
            pass
    assert caught.value.run_id == "never-ran"
    assert isinstance(caught.value, TinyTasksError)


async def test_resume_without_a_checkpointer_names_the_run() -> None:
    with pytest.raises(NoCheckpointError, match="'lost'"):
        async for _ in workflow.resume("x", run_id="lost"):
            pass


async def test_invoke_of_a_command_without_a_checkpoint(saver: MemorySaver) -> None:
    with pytest.raises(NoCheckpointError, match="'nothing'"):
        await workflow.invoke(Command(resume="x"), run_id="nothing", checkpointer=saver)


async def test_resume_of_a_finished_run(saver: MemorySaver, collect: Any) -> None:
    opts: dict[str, Any] = {"run_id": "finished", "checkpointer": saver}
    await collect(workflow("job", **opts))
    await collect(workflow.resume("yes", **opts))

    with pytest.raises(NoCheckpointError, match="'finished'"):
        await collect(workflow.resume("again", **opts))


async def test_resume_of_a_run_that_never_paused(saver: MemorySaver) -> None:
    @task
    async def plain(_: Any):
        yield 1

    opts: dict[str, Any] = {"run_id": "plain", "checkpointer": saver}
    await plain.invoke(**opts)
    with pytest.raises(NoCheckpointError, match="'plain'"):
        await plain.invoke(Command(resume=1), **opts)


# -- pausing is not an error --------------------------------------------------------------


async def test_except_exception_cannot_swallow_a_pause(saver: MemorySaver, collect: Any) -> None:
    swallowed: list[BaseException] = []

    @task
    async def careless(_: Any):
        try:
            answer = interrupt("may I?")
        except Exception as exc:  # user code that catches too much
            swallowed.append(exc)
            answer = "swallowed"
        yield answer

    opts: dict[str, Any] = {"run_id": "careless", "checkpointer": saver}
    assert await collect(careless(**opts)) == ([], [Interrupt("may I?", "careless/interrupt#0")])
    assert swallowed == []
    assert await collect(careless.resume("yes", **opts)) == (["yes"], [])


async def test_finally_blocks_and_context_managers_run_on_pause(collect: Any) -> None:
    log: list[str] = []

    class Resource:
        def __enter__(self) -> None:
            log.append("enter")

        def __exit__(self, *exc: object) -> None:
            log.append("exit")

    @task
    async def inner(_: Any):
        try:
            yield "inner"
            interrupt("pause")
        finally:
            log.append("inner finally")

    @task
    async def outer(_: Any):
        with Resource():
            try:
                async for partial, _, _ in inner():
                    yield partial
            finally:
                log.append("outer finally")

    assert await collect(outer()) == (["inner"], [Interrupt("pause", "outer/inner#0/interrupt#0")])
    assert log == ["enter", "inner finally", "outer finally", "exit"]


# -- failures --------------------------------------------------------------------------


async def test_an_exception_propagates_unchanged_after_earlier_partials() -> None:
    boom = ValueError("boom")

    @task
    async def faulty(_: Any):
        yield "hello"
        raise boom

    stream = faulty()
    assert (await anext(stream)).partial == "hello"
    with pytest.raises(ValueError, match="boom") as caught:
        await anext(stream)
    assert caught.value is boom


async def test_partials_emitted_before_an_exception_are_delivered_first() -> None:
    @task
    async def faulty(_: Any) -> None:
        emit(1)
        emit(2)
        raise KeyError("late")

    stream = faulty()
    assert [(await anext(stream)).partial, (await anext(stream)).partial] == [1, 2]
    with pytest.raises(KeyError):
        await anext(stream)


async def test_invoke_raises_the_task_exception() -> None:
    @task
    def faulty(_: Any) -> None:
        raise LookupError("nothing here")

    with pytest.raises(LookupError, match="nothing here"):
        await faulty.invoke()


async def test_finally_blocks_of_nested_tasks_run_on_failure() -> None:
    log: list[str] = []

    @task
    async def inner(_: Any):
        try:
            yield "inner"
            raise RuntimeError("inner failed")
        finally:
            log.append("inner finally")

    @task
    async def outer(_: Any):
        try:
            async for partial, _, _ in inner():
                yield partial
        finally:
            log.append("outer finally")

    with pytest.raises(RuntimeError, match="inner failed"):
        async for _ in outer():
            pass
    assert log == ["inner finally", "outer finally"]


# -- streaming is live ---------------------------------------------------------------------


async def test_a_coroutine_task_streams_while_it_is_still_running() -> None:
    release = asyncio.Event()
    order: list[str] = []

    @task
    async def slow(_: Any) -> str:
        emit("first")
        order.append("waiting")
        await release.wait()
        order.append("released")
        emit("second")
        return "end"

    stream = slow()
    first = await anext(stream)
    assert first.partial == "first"  # handed out while the coroutine waits
    assert order == ["waiting"]
    release.set()
    second = await anext(stream)
    assert second.partial == "second"
    assert order == ["waiting", "released"]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert stream.result == "end"


async def test_an_async_generator_task_streams_one_partial_per_pull() -> None:
    produced: list[int] = []

    @task
    async def numbers(_: Any):
        for i in range(3):
            produced.append(i)
            yield i

    stream = numbers()
    assert (await anext(stream)).partial == 0
    assert produced == [0]
    assert (await anext(stream)).partial == 1
    assert produced == [0, 1]
    await stream.aclose()


# -- closing early -------------------------------------------------------------------------


async def test_aclose_runs_finally_blocks_of_the_task_and_its_children() -> None:
    log: list[str] = []

    @task
    async def inner(_: Any):
        try:
            for i in range(10):
                yield i
        finally:
            log.append("inner finally")

    @task
    async def outer(_: Any):
        try:
            async for partial, _, _ in inner():
                yield partial
        finally:
            log.append("outer finally")

    stream = outer()
    assert (await anext(stream)).partial == 0
    await stream.aclose()
    assert log == ["inner finally", "outer finally"]


async def test_break_then_aclose_runs_finally_blocks() -> None:
    log: list[str] = []

    @task
    async def numbers(_: Any):
        try:
            for i in range(5):
                yield i
        finally:
            log.append("finally")

    received: list[int] = []
    stream = numbers()
    async for partial, _, _ in stream:
        received.append(partial)
        if len(received) == 2:
            break
    assert log == []  # `break` alone does not close an async iterator
    await stream.aclose()
    assert received == [0, 1]
    assert log == ["finally"]


async def test_aclose_of_a_coroutine_task_runs_its_finally_blocks() -> None:
    log: list[str] = []
    never = asyncio.Event()

    @task
    async def waiting(_: Any) -> None:
        try:
            emit("started")
            await never.wait()
        finally:
            log.append("finally")

    stream = waiting()
    assert (await anext(stream)).partial == "started"
    await stream.aclose()
    assert log == ["finally"]


async def test_aclose_before_iterating_and_twice_is_harmless() -> None:
    stream = workflow("job")
    await stream.aclose()
    await stream.aclose()
    assert [event async for event in stream] == []


# -- cancellation ------------------------------------------------------------------------


async def test_cancelling_the_consumer_runs_finally_blocks(saver: MemorySaver) -> None:
    log: list[str] = []
    started = asyncio.Event()
    never = asyncio.Event()

    @task
    async def inner(_: Any):
        try:
            started.set()
            await never.wait()
            yield "unreachable"
        finally:
            log.append("inner finally")

    @task
    async def outer(_: Any):
        try:
            yield "outer started"
            async for partial, _, _ in inner():
                yield partial
        finally:
            log.append("outer finally")

    received: list[Any] = []

    async def consume() -> None:
        async for partial, _, _ in outer(run_id="cancel", checkpointer=saver):
            received.append(partial)

    consumer = asyncio.create_task(consume())
    await started.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert received == ["outer started"]
    assert log == ["inner finally", "outer finally"]


async def test_cancelling_a_coroutine_task_runs_its_finally_blocks() -> None:
    log: list[str] = []
    started = asyncio.Event()
    never = asyncio.Event()

    @task
    async def waiting(_: Any) -> None:
        try:
            started.set()
            await never.wait()
        finally:
            log.append("finally")

    consumer = asyncio.create_task(waiting.invoke())
    await started.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert log == ["finally"]


# -- many runs at once -----------------------------------------------------------------------


async def test_concurrent_invokes_without_a_checkpointer_share_nothing() -> None:
    @task
    async def plus_one(x: int) -> int:
        await asyncio.sleep(0)
        emit(x)
        await asyncio.sleep(0)
        return x + 1

    # same task, same default run id, no checkpointer: independent runs
    assert await asyncio.gather(plus_one.invoke(1), plus_one.invoke(2), plus_one.invoke(3)) == [
        2,
        3,
        4,
    ]
