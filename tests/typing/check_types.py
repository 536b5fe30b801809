"""Checked by `mypy --strict` in the test command: the types a user's editor sees."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, assert_type

from tiny_tasks import Event, Task, TaskContext, TaskStream, emit, step, task


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


@step
async def fetch(url: str) -> bytes:
    return url.encode()


async def usage() -> None:
    assert_type(tokens, Task[Any, None, str])
    assert_type(counted, Task[Any, int, Any])
    assert_type(plain, Task[Any, str, Any])
    stream = tokens("hi", run_id="r")
    assert_type(stream, TaskStream[None, str])
    async for event in stream:
        assert_type(event, Event[str])
        partial, _, _intr = event
        assert_type(partial, str | None)
    assert_type(await counted.invoke(1), int)
    assert_type(counted.invoke_sync(1), int)
    assert_type(await fetch("u"), bytes)
    emit("x")
