"""Quick start: a task that streams, pauses for input, and is resumed."""

import asyncio

from tiny_tasks import MemorySaver, task

saver = MemorySaver()
opts = {"run_id": "demo", "checkpointer": saver}


@task("workflow")
async def workflow(name: str, ctx):
    yield f"processing {name}"
    answer = ctx.interrupt({"message": "wait"})
    yield f"done: {answer}"


async def main() -> None:
    # first run: yields once and pauses
    async for partial, _, intr in workflow("job", **opts):
        if partial is not None:
            print(partial)
        if intr:
            print("interrupt ->", intr.value)

    # resume once the external work is finished
    async for partial, _, _ in workflow.resume("resume-data", **opts):
        print(partial)


asyncio.run(main())
