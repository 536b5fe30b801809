"""The TypeScript original's examples 00-07, ported line by line.

Each test follows the seed's own test of that example, through `create_runtime()` as the
seed does. Where the seed's async generator `return`s a value (which Python's async
generators cannot), the task is a coroutine that streams with `emit`.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tiny_tasks import Interrupt, MemorySaver, TaskContext, create_runtime

rt = create_runtime()
task = rt.task


@pytest.fixture
def checkpointer() -> MemorySaver:
    return rt.MemorySaver()


async def test_example_00_simple_tasks_reuse_a_run_id(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_simple_task", "checkpointer": checkpointer}

    async def first(q: str):
        yield f"(do_something) processing {q}: 1"

    do_something0 = task("do_something", first)
    vals0 = [msg async for msg, _, _ in do_something0("my_task", **run_opts)]
    assert vals0 == ["(do_something) processing my_task: 1"]

    def numbered(*numbers: int):
        async def body(q: str):
            for n in numbers:
                yield f"(do_something) processing {q}: {n}"
            yield f"(do_something) done: {q}"

        return body

    do_something = task("do_something", numbered(1, 2, 3))
    vals1 = [msg async for msg, _, _ in do_something("my_task", **run_opts)]
    assert vals1 == [
        "(do_something) processing my_task: 1",
        "(do_something) processing my_task: 2",
        "(do_something) processing my_task: 3",
        "(do_something) done: my_task",
    ]

    do_something2 = task("do_something", numbered(5, 6, 7))
    vals2 = [msg async for msg, _, _ in do_something2("my_task", **run_opts)]
    assert vals2 == [
        "(do_something) processing my_task: 5",
        "(do_something) processing my_task: 6",
        "(do_something) processing my_task: 7",
        "(do_something) done: my_task",
    ]
    assert checkpointer.load("run_simple_task") is None


async def test_example_01_nested_tasks(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_nested_stream", "checkpointer": checkpointer}

    async def do_something_fn(q: str, ctx: TaskContext):
        yield f"processing {q}"
        yield f"done: {q}"

    do_something = task("do_something", do_something_fn)

    async def workflow_fn(q: str) -> list[str]:
        state: list[str] = []
        async for msg, _, _ in do_something(q):
            if msg:
                state.append(msg)
            rt.emit(list(state))
        return [*state, "workflow done"]

    workflow = task("workflow", workflow_fn)

    states = [partial async for partial, _, _ in workflow("task", **run_opts) if partial]
    assert states == [["processing task"], ["processing task", "done: task"]]

    result = await workflow.invoke("task", **run_opts)
    assert result == ["processing task", "done: task", "workflow done"]


async def test_example_02_multiple_child_tasks(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_nested_stream", "checkpointer": checkpointer}

    def child(label: str):
        async def body(q: str) -> str:
            rt.emit(f"({label}) processing {q}: 1")
            rt.emit(f"({label}) processing {q}: 2")
            return f"({label}) done: {q}"

        return task(label, body)

    do_something_1 = child("do_something_1")
    do_something_2 = child("do_something_2")

    async def workflow_fn(q: str) -> list[str]:
        messages = await asyncio.gather(do_something_1.invoke(q), do_something_2.invoke(q))
        return [*messages, "workflow done"]

    workflow = task("workflow", workflow_fn)

    result = await workflow.invoke("task", **run_opts)
    assert result == ["(do_something_1) done: task", "(do_something_2) done: task", "workflow done"]
    assert checkpointer.load("run_nested_stream") is None


async def test_example_02_with_sync_generator_children(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_nested_stream", "checkpointer": checkpointer}

    @task("do_something_1")
    def do_something_1(q: str):
        yield f"(do_something_1) processing {q}: 1"
        yield f"(do_something_1) processing {q}: 2"
        return f"(do_something_1) done: {q}"

    @task("do_something_2")
    def do_something_2(q: str):
        yield f"(do_something_2) processing {q}: 1"
        yield f"(do_something_2) processing {q}: 2"
        return f"(do_something_2) done: {q}"

    @task("workflow")
    async def workflow(q: str) -> list[str]:
        messages = await asyncio.gather(do_something_1.invoke(q), do_something_2.invoke(q))
        return [*messages, "workflow done"]

    result = await workflow.invoke("task", **run_opts)
    assert result == ["(do_something_1) done: task", "(do_something_2) done: task", "workflow done"]


async def test_example_03_direct_interrupt(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_nested_stream", "checkpointer": checkpointer}

    async def body(q: str, ctx: TaskContext):
        yield f"(do_something_1) processing {q}: 1"
        yield f"(do_something_1) processing {q}: 2"

        foo = ctx.interrupt({"data": {"message": "stop!"}})
        yield f"(do_something_1) resuming with: {foo}"

        foo2 = ctx.interrupt({"data": {"message": "stop again!"}})
        yield f"(do_something_1) resuming again with: {foo2}"

        yield f"(do_something_1) done: {foo}"

    do_something = task("do_something_1", body)

    parts0, ints0 = [], []
    async for p, _, i in do_something("task", **run_opts):
        if p:
            parts0.append(p)
        if i:
            ints0.append(i)
    assert parts0 == ["(do_something_1) processing task: 1", "(do_something_1) processing task: 2"]
    assert ints0 == [Interrupt({"data": {"message": "stop!"}}, "do_something_1/interrupt#0")]

    parts1, ints1 = [], []
    async for p, _, i in do_something.resume("resume!", **run_opts):
        if p:
            parts1.append(p)
        if i:
            ints1.append(i)
    assert parts1 == ["(do_something_1) resuming with: resume!"]
    assert ints1 == [Interrupt({"data": {"message": "stop again!"}}, "do_something_1/interrupt#1")]

    parts2 = [p async for p, _, _ in do_something.resume("resume!", **run_opts) if p]
    assert parts2 == [
        "(do_something_1) resuming again with: resume!",
        "(do_something_1) done: resume!",
    ]
    assert checkpointer.load("run_nested_stream") is None


async def test_example_04_nested_with_interrupt(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_nested_stream", "checkpointer": checkpointer}

    async def do_something_fn(q: str, ctx: TaskContext):
        yield f"processing {q}"
        foo = ctx.interrupt({"data": {"message": "stop!"}})
        yield f"done: {q} {foo}"

    do_something = task("do_something", do_something_fn)

    async def workflow_fn(q: str):
        state: list[str] = []
        async for msg, _, _ in do_something(q):
            if msg:
                state.append(msg)
                yield list(state)
        yield [*state, "workflow done"]

    workflow = task("workflow", workflow_fn)

    parts0, ints0 = [], []
    async for p, _, i in workflow("task_1", **run_opts):
        if p:
            parts0.append(p)
        if i:
            ints0.append(i.value)
    assert parts0 == [["processing task_1"]]
    assert ints0 == [{"data": {"message": "stop!"}}]

    parts1 = [p async for p, _, _ in workflow.resume("task_2", **run_opts) if p]
    assert parts1 == [
        ["processing task_1", "done: task_1 task_2"],
        ["processing task_1", "done: task_1 task_2", "workflow done"],
    ]


async def test_example_05_run_deep_nested(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_nested_stream", "checkpointer": checkpointer}

    async def inner_fn(q: str, ctx: TaskContext):
        yield f"(inner) processing {q}"
        resume_val = ctx.interrupt({"data": {"message": "stop!"}})
        yield f"(inner) done: {q} {resume_val}"

    inner = task("inner", inner_fn)

    async def do_something_fn(q: str):
        # the seed passes the outer run's options to the child: it stays part of the run
        async for msg, _, _ in inner(q, **run_opts):
            if msg:
                yield msg
        yield f"done: {q}"

    do_something = task("do_something", do_something_fn)

    async def workflow_fn(q: str) -> list[str]:
        state: list[str] = []
        async for msg, _, _ in do_something(q):
            if msg:
                state.append(msg)
                rt.emit(list(state))
        return state

    workflow = task("workflow", workflow_fn)

    parts0, ints0 = [], []
    async for p, _, i in workflow("task_1", **run_opts):
        if p:
            parts0.append(p)
        if i:
            ints0.append(i)
    assert parts0 == [["(inner) processing task_1"]]
    assert ints0 == [
        Interrupt({"data": {"message": "stop!"}}, "workflow/do_something#0/inner#0/interrupt#0")
    ]

    stream = workflow.resume("task_2", **run_opts)
    parts1 = [p async for p, _, _ in stream if p]
    assert parts1 == [
        ["(inner) processing task_1", "(inner) done: task_1 task_2"],
        ["(inner) processing task_1", "(inner) done: task_1 task_2", "done: task_1"],
    ]
    assert stream.result == [
        "(inner) processing task_1",
        "(inner) done: task_1 task_2",
        "done: task_1",
    ]
    assert checkpointer.load("run_nested_stream") is None


class TokenStore:
    """The seed's random token source, remembered per run so a replay streams the same."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, list[str]]] = {}

    def get(self, run_id: str) -> dict[str, list[str]]:
        return self.parts.setdefault(run_id, {"before": [], "after": []})

    async def stream(self, run_id: str, part: str, count: int) -> AsyncIterator[str]:
        store = self.get(run_id)
        if not store[part]:
            store[part] = [
                "".join(random.choices(string.ascii_lowercase, k=3)) for _ in range(count)
            ]
        for token in store[part]:
            await asyncio.sleep(0)
            yield token


async def test_example_06_llm_stream_interrupt(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_llm_stream", "checkpointer": checkpointer}
    tokens = TokenStore()

    async def llm_call_fn(_q: Any, ctx: TaskContext) -> str:
        async for t in tokens.stream(run_opts["run_id"], "before", 5):
            ctx.emit(t)
        answer = ctx.interrupt({"data": {"question": "confirm?"}})
        ctx.emit(answer)
        async for t in tokens.stream(run_opts["run_id"], "after", 4):
            ctx.emit(t)
        return "finished"

    llm_call = task("llm_call", llm_call_fn)

    parts0, ints0 = [], []
    async for p, _, i in llm_call("proceed", **run_opts):
        if p:
            parts0.append(p)
        if i:
            ints0.append(i)
    assert ints0 == [Interrupt({"data": {"question": "confirm?"}}, "llm_call/interrupt#0")]
    stored = tokens.get(run_opts["run_id"])
    assert len(stored["before"]) == 5
    assert parts0 == stored["before"]

    stream = llm_call.resume("yes", **run_opts)
    parts1 = [p async for p, _, _ in stream if p]
    assert len(stored["after"]) == 4
    assert parts1 == ["yes", *stored["after"]]
    assert stream.result == "finished"


async def test_example_07_llm_stream_nested_interrupt(checkpointer: MemorySaver) -> None:
    run_opts: dict[str, Any] = {"run_id": "run_llm_stream_outer", "checkpointer": checkpointer}
    inner_opts: dict[str, Any] = {"run_id": "run_llm_stream_inner", "checkpointer": checkpointer}
    tokens = TokenStore()
    parent_handled: list[Any] = []

    async def llm_call_fn(_q: Any, ctx: TaskContext) -> str:
        async for t in tokens.stream(inner_opts["run_id"], "before", 5):
            ctx.emit(t)
        answer = ctx.interrupt({"data": {"question": "confirm?"}})
        ctx.emit(answer)
        async for t in tokens.stream(inner_opts["run_id"], "after", 4):
            ctx.emit(t)
        return "finished"

    llm_call = task("llm_call", llm_call_fn)

    async def workflow_fn(_q: Any, ctx: TaskContext):
        async for t, _, intr in llm_call("proceed", **inner_opts):
            if t:
                yield t
            if intr:  # never reached: the nested interrupt already unwound the whole run
                parent_handled.append(intr)
                yield ctx.interrupt(intr)

    workflow = task("workflow", workflow_fn)

    parts0, ints0 = [], []
    async for p, _, i in workflow(None, **run_opts):
        if p:
            parts0.append(p)
        if i:
            ints0.append(i)
    assert ints0 == [
        Interrupt({"data": {"question": "confirm?"}}, "workflow/llm_call#0/interrupt#0")
    ]
    stored = tokens.get(inner_opts["run_id"])
    assert parts0 == stored["before"]
    assert checkpointer.load(inner_opts["run_id"]) is None

    parts1 = [p async for p, _, _ in workflow.resume("yes", **run_opts) if p]
    assert parts1 == ["yes", *stored["after"]]
    assert parent_handled == []
    assert len(checkpointer) == 0
