"""Checked by `mypy --strict` in the test command: the types a user's editor sees."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, assert_type

from tiny_tasks import (
    Event,
    Interrupt,
    SyncTaskStream,
    Task,
    TaskContext,
    TaskStream,
    emit,
    step,
    task,
)


@task
async def tokens(prompt: str) -> AsyncIterator[str]:
    yield prompt


@task("counted")
async def counted(n: int, ctx: TaskContext) -> int:
    ctx.emit(n)
    return n + 1


@task
def numbers(n: int) -> Iterator[int]:
    yield n


@task
def plain(n: int) -> str:
    return str(n)


@task
def counted_sync(n: int, ctx: TaskContext) -> Generator[int, None, str]:
    yield ctx.step_sync(double, n)
    yield ctx.step_sync(fetch_length, "u")
    return "done"


@task
async def untyped(value, ctx):  # type: ignore[no-untyped-def]
    return value


@task
async def no_input() -> int:
    return 1


@step
async def fetch(url: str) -> bytes:
    return url.encode()


@step("named")
def double(n: int) -> int:
    return n * 2


@step(retry=None, timeout=1.0, thread=False)
async def fetch_length(url: str) -> int:
    return len(url)


async def usage() -> None:
    assert_type(tokens, Task[str, None, str])
    assert_type(counted, Task[int, int, Any])
    assert_type(plain, Task[int, str, Any])
    assert_type(numbers, Task[int, None, int])
    assert_type(counted_sync, Task[int, str, int])
    assert_type(untyped, Task[Any, Any, Any])
    assert_type(no_input, Task[Any, int, Any])
    assert_type(task("renamed", plain_function), Task[int, str, Any])
    stream = tokens("hi", run_id="r")
    assert_type(stream, TaskStream[None, str])
    async for event in stream:
        assert_type(event, Event[str])
        partial, _, _intr = event
        assert_type(partial, str | None)
    assert_type(await counted.invoke(1), int)
    assert_type(counted.invoke_sync(1), int)
    assert_type(await fetch("u"), bytes)
    assert_type(await double(2), int)
    assert_type(await fetch_length("u"), int)
    emit("x")


def plain_function(n: int) -> str:
    return str(n)


async def inputs_are_checked() -> None:
    await counted.invoke("text")  # type: ignore[arg-type]
    counted.invoke_sync("text")  # type: ignore[arg-type]
    counted_sync("text")  # type: ignore[arg-type]
    plain.stream_sync(b"bytes")  # type: ignore[arg-type]
    tokens(3, run_id="r")  # type: ignore[arg-type]
    await double("two")  # type: ignore[arg-type]
    await counted.invoke(1)
    await untyped.invoke("anything")
    await counted.resume_sync("any answer", run_id="r")  # type: ignore[misc]
    counted.resume_sync("any answer", run_id="r")


def sync_streams() -> None:
    stream = counted.stream_sync(1)
    assert_type(stream, SyncTaskStream[int, Any])
    for event in stream:
        assert_type(event, Event[Any])
    assert_type(stream.result, int | None)
    assert_type(stream.interrupts, list[Interrupt])
    assert_type(stream.run_id, str)
    assert_type(numbers.stream_sync(1).result, None)
    assert_type(counted_sync.stream_sync(1).result, str | None)


# Durable waits: what sleep, recv, send and a deadline-bound interrupt give back.
from datetime import UTC, datetime, timedelta  # noqa: E402

from tiny_tasks import MemorySaver, interrupt, send, sleep  # noqa: E402
from tiny_tasks.savers.base import RunStatus  # noqa: E402


@task("waits")
async def waits(topic: str, ctx: TaskContext) -> Any:
    assert_type(await ctx.sleep(timedelta(hours=1)), None)
    assert_type(await ctx.sleep_until(datetime(2030, 1, 1, tzinfo=UTC)), None)
    assert_type(await sleep(5), None)
    answer = interrupt("ok?", timeout=timedelta(hours=4), default=False)
    return [answer, await ctx.recv(topic, timeout=60.0)]


async def sends() -> None:
    assert_type(await send(MemorySaver(), "r1", "topic", {"a": 1}), int)
    assert_type(waits("t").status, RunStatus | None)
    assert_type(waits("t").wake_at, float | None)
