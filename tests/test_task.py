"""Defining tasks: every form of `task`, every kind of function, the context argument."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tiny_tasks import (
    Command,
    Event,
    Interrupt,
    MemorySaver,
    Snapshot,
    Task,
    TaskContext,
    TaskDefinitionError,
    TinyTasksError,
    create_runtime,
    emit,
    interrupt,
    task,
)

# -- the forms of `task` ---------------------------------------------------------------


def test_bare_decorator_names_the_task_after_the_function() -> None:
    @task
    async def summarise(text: str):
        yield text

    assert isinstance(summarise, Task)
    assert summarise.name == "summarise"
    assert repr(summarise) == "Task('summarise')"


def test_decorator_with_a_name() -> None:
    @task("workflow")
    async def anything(name: str):
        yield name

    assert anything.name == "workflow"
    assert repr(anything) == "Task('workflow')"


def test_call_form_of_the_seed() -> None:
    async def body(q: str):
        yield f"processing {q}"

    do_something = task("do_something", body)

    assert do_something.name == "do_something"
    assert isinstance(do_something, Task)


def test_record_false_decorator() -> None:
    @task(record=False)
    async def big_output(_: Any):
        yield "x"

    @task
    async def recorded(_: Any):
        yield "x"

    assert big_output.name == "big_output"
    assert big_output.record is False
    assert recorded.record is True


def test_named_and_unrecorded() -> None:
    @task("model", record=False)
    async def call_model(_: Any):
        yield "x"

    assert (call_model.name, call_model.record) == ("model", False)


@pytest.mark.parametrize("not_callable", [42, "text", 3.5, [1, 2]])
def test_task_rejects_a_non_callable_naming_it(not_callable: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=type(not_callable).__name__) as caught:
        task("broken", not_callable)
    assert repr(not_callable) in str(caught.value)
    assert isinstance(caught.value, TinyTasksError)
    assert isinstance(caught.value, TypeError)


def test_bare_task_rejects_a_non_callable() -> None:
    with pytest.raises(TaskDefinitionError, match="42"):
        task(42)  # type: ignore[call-overload]


def test_decorator_with_a_name_rejects_a_non_callable() -> None:
    with pytest.raises(TaskDefinitionError, match="'not a function'"):
        task("named")("not a function")  # type: ignore[arg-type]


# -- every kind of function --------------------------------------------------------------


async def test_async_generator_function(collect: Any) -> None:
    @task
    async def count(n: int):
        for i in range(n):
            yield i

    stream = count(3)
    assert await collect(stream) == ([0, 1, 2], [])
    assert stream.result is None
    assert await count.invoke(3) is None


async def test_async_generator_function_with_ctx(collect: Any) -> None:
    @task
    async def count(n: int, ctx: TaskContext):
        for i in range(n):
            yield (ctx.path, i)

    assert await collect(count(2)) == ([("count", 0), ("count", 1)], [])


async def test_coroutine_function_streams_with_emit_and_returns(collect: Any) -> None:
    @task
    async def add(numbers: list[int]) -> int:
        total = 0
        for n in numbers:
            total += n
            emit(total)
        return total

    stream = add([1, 2, 3])
    assert await collect(stream) == ([1, 3, 6], [])
    assert stream.result == 6
    assert await add.invoke([4, 5]) == 9


async def test_coroutine_function_streams_with_ctx_emit(collect: Any) -> None:
    @task
    async def shout(words: list[str], ctx: TaskContext) -> str:
        for word in words:
            ctx.emit(word.upper())
        return " ".join(words)

    stream = shout(["a", "b"])
    assert await collect(stream) == (["A", "B"], [])
    assert stream.result == "a b"


async def test_sync_generator_function_returns_its_result(collect: Any) -> None:
    @task
    def countdown(n: int):
        while n:
            yield n
            n -= 1
        return "liftoff"

    stream = countdown(3)
    assert await collect(stream) == ([3, 2, 1], [])
    assert stream.result == "liftoff"
    assert await countdown.invoke(2) == "liftoff"


async def test_sync_generator_function_with_ctx(collect: Any) -> None:
    @task
    def pairs(n: int, ctx: TaskContext):
        yield from range(n)
        ctx.emit("emitted")
        return ctx.path

    stream = pairs(2)
    assert await collect(stream) == ([0, 1, "emitted"], [])
    assert stream.result == "pairs"


async def test_plain_function(collect: Any) -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    stream = double(21)
    assert await collect(stream) == ([], [])
    assert stream.result == 42
    assert await double.invoke(4) == 8


async def test_plain_function_with_ctx_can_emit(collect: Any) -> None:
    @task
    def greet(name: str, ctx: TaskContext) -> str:
        ctx.emit("thinking")
        emit("still thinking")
        return f"hello {name}"

    stream = greet("ada")
    assert await collect(stream) == (["thinking", "still thinking"], [])
    assert stream.result == "hello ada"


async def test_plain_function_can_interrupt(saver: MemorySaver, collect: Any) -> None:
    @task
    def ask(question: str) -> str:
        return f"{question} -> {interrupt(question)}"

    opts: dict[str, Any] = {"run_id": "ask", "checkpointer": saver}
    assert await collect(ask("why?", **opts)) == ([], [Interrupt("why?", "ask/interrupt#0")])
    assert await ask.invoke(Command(resume="because"), **opts) == "why? -> because"


@pytest.mark.parametrize("kind", ["async_generator", "coroutine", "generator", "plain"])
async def test_zero_parameter_functions(kind: str, collect: Any) -> None:
    async def agen():
        yield "a"

    async def coro() -> str:
        emit("a")
        return "r"

    def gen():
        yield "a"
        return "r"

    def plain() -> str:
        emit("a")
        return "r"

    fn = {"async_generator": agen, "coroutine": coro, "generator": gen, "plain": plain}[kind]
    zero = task("zero", fn)

    stream = zero("ignored input")
    assert await collect(stream) == (["a"], [])
    assert stream.result == (None if kind == "async_generator" else "r")


@pytest.mark.parametrize("kind", ["async_generator", "coroutine", "generator", "plain"])
async def test_input_defaults_to_none(kind: str, collect: Any) -> None:
    seen: list[Any] = []

    async def agen(value: Any):
        seen.append(value)
        yield value

    async def coro(value: Any) -> Any:
        seen.append(value)
        return value

    def gen(value: Any):
        seen.append(value)
        yield value

    def plain(value: Any) -> Any:
        seen.append(value)
        return value

    fn = {"async_generator": agen, "coroutine": coro, "generator": gen, "plain": plain}[kind]
    await collect(task("t", fn)())
    assert seen == [None]


async def test_ctx_is_a_task_context_of_this_run() -> None:
    seen: list[TaskContext] = []

    @task("outer")
    async def outer(_: Any, ctx: TaskContext):
        seen.append(ctx)
        async for _partial in inner():
            pass
        yield "done"

    @task("inner")
    async def inner(_: Any, ctx: TaskContext):
        seen.append(ctx)
        yield "x"

    await outer.invoke(run_id="run-7")

    assert all(isinstance(ctx, TaskContext) for ctx in seen)
    assert [(ctx.run_id, ctx.path) for ctx in seen] == [
        ("run-7", "outer"),
        ("run-7", "outer/inner#0"),
    ]
    assert repr(seen[1]) == "TaskContext(run_id='run-7', path='outer/inner#0')"


async def test_var_positional_function_receives_input_and_ctx() -> None:
    received: list[tuple[Any, ...]] = []

    @task
    async def flexible(*args: Any):
        received.append(args)
        yield "ok"

    await flexible.invoke("in")
    assert len(received[0]) == 2
    assert received[0][0] == "in"
    assert isinstance(received[0][1], TaskContext)


async def test_callable_object_is_a_task(collect: Any) -> None:
    class Doubler:
        def __call__(self, x: int) -> int:
            emit("doubling")
            return 2 * x

    doubler = task("doubler", Doubler())
    stream = doubler(5)
    assert await collect(stream) == (["doubling"], [])
    assert stream.result == 10


# -- events, snapshots and interrupts as values ---------------------------------------


async def test_event_is_a_named_three_tuple() -> None:
    @task
    async def one(_: Any):
        yield "p"

    events = [event async for event in one()]

    assert events == [Event("p", Snapshot([], "default", ()), None)]
    event = events[0]
    assert isinstance(event, tuple)
    assert len(event) == 3
    partial, snapshot, intr = event
    assert (partial, snapshot, intr) == (event.partial, event.snapshot, event.interrupt)
    assert event._fields == ("partial", "snapshot", "interrupt")


def test_interrupt_is_frozen_and_shows_its_state() -> None:
    intr = Interrupt({"message": "wait"}, "workflow/interrupt#0")

    assert repr(intr) == "Interrupt(value={'message': 'wait'}, id='workflow/interrupt#0')"
    assert intr == Interrupt(value={"message": "wait"}, id="workflow/interrupt#0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        intr.value = "other"  # type: ignore[misc]


def test_snapshot_shows_its_state() -> None:
    snapshot = Snapshot(["a"], "demo", (Interrupt(1, "w/interrupt#1"),))

    assert repr(snapshot) == (
        "Snapshot(resume=['a'], run_id='demo', pending=(Interrupt(value=1, id='w/interrupt#1'),),"
        " rewind=None)"
    )
    assert Snapshot().resume == []
    assert Snapshot(rewind=3).rewind == 3


def test_command_values() -> None:
    assert Command(resume="B").resume == "B"
    assert Command(resume="B").answers is None
    assert Command(answers={"a#0": 1}).answers == {"a#0": 1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        Command(resume=1).resume = 2  # type: ignore[misc]


# -- ambient helpers outside a task ------------------------------------------------------


def test_interrupt_outside_a_task_raises_a_helpful_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"interrupt\(\) was called outside a running task"):
        interrupt("nobody is listening")


def test_emit_outside_a_task_raises_a_helpful_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"emit\(\) was called outside a running task"):
        emit("nobody is listening")


async def test_interrupt_outside_a_task_in_async_code_too() -> None:
    with pytest.raises(RuntimeError, match="outside a running task"):
        interrupt("x")


async def test_interrupt_after_the_task_finished_raises() -> None:
    @task
    async def quick(_: Any):
        yield "done"

    await quick.invoke()
    with pytest.raises(RuntimeError, match="outside a running task"):
        interrupt("late")


# -- create_runtime ------------------------------------------------------------------


async def test_create_runtime_offers_the_seed_names(collect: Any) -> None:
    runtime = create_runtime()

    assert runtime.task is task
    assert runtime.interrupt is interrupt
    assert runtime.emit is emit
    assert runtime.MemorySaver is MemorySaver
    assert runtime.Command is Command

    saver = runtime.MemorySaver()
    opts: dict[str, Any] = {"run_id": "demo", "checkpointer": saver}

    async def body(name: str, ctx: TaskContext):
        yield f"processing {name}"
        answer = ctx.interrupt({"message": "wait"})
        yield f"done: {answer}"

    workflow = runtime.task("workflow", body)
    assert await collect(workflow("job", **opts)) == (
        ["processing job"],
        [Interrupt({"message": "wait"}, "workflow/interrupt#0")],
    )
    assert await collect(workflow(runtime.Command(resume="resume-data"), **opts)) == (
        ["done: resume-data"],
        [],
    )


def test_create_runtime_returns_independent_runtimes() -> None:
    assert create_runtime() is not create_runtime()
