"""Nested streaming: a task consumes another task's stream and returns a result."""

import asyncio

from tiny_tasks import emit, task


@task
async def step(q: str):
    yield f"processing {q}"
    yield f"done: {q}"


@task
async def aggregate(q: str) -> list[str]:
    state: list[str] = []
    async for msg, _, _ in step(q):
        state.append(msg)
        emit(list(state))  # a coroutine task streams with emit() and returns normally
    return [*state, "aggregate done"]


async def main() -> None:
    stream = aggregate("task")
    async for partial, _, _ in stream:
        print(partial)
    print("result:", stream.result)


asyncio.run(main())
