"""Nested interrupts: an interrupt deep inside a child pauses the whole run."""

import asyncio

from tiny_tasks import MemorySaver, task

opts = {"run_id": "nested", "checkpointer": MemorySaver()}


@task
async def inner(_, ctx):
    answer = ctx.interrupt("stop")
    yield f"resumed with {answer}"


@task
async def outer(_):
    async for msg, _, _ in inner():
        yield msg


async def main() -> None:
    async for msg, _, intr in outer(**opts):
        print(msg, intr)
    async for msg, _, intr in outer.resume("go", **opts):
        print(msg, intr)


asyncio.run(main())
