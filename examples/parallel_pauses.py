"""Parallel pauses: children running concurrently pause together and are answered by id."""

import asyncio

from tiny_tasks import Command, MemorySaver, interrupt, task

opts = {"run_id": "review", "checkpointer": MemorySaver()}


@task
async def approve(item: str) -> bool:
    return interrupt(f"approve {item}?") == "yes"


@task
async def review(items: list[str]):
    verdicts = await asyncio.gather(*(approve.invoke(item) for item in items))
    yield dict(zip(items, verdicts, strict=True))


async def main() -> None:
    pending = [intr async for _, _, intr in review(["invoice", "refund"], **opts) if intr]
    for intr in pending:
        print("waiting:", intr.id, intr.value)

    # answer just one: the other pauses again
    answers = {pending[1].id: "no"}
    async for _, _, intr in review(Command(answers=answers), **opts):
        print("still waiting:", intr.id)

    async for verdicts, _, _ in review.resume("yes", **opts):
        print(verdicts)


asyncio.run(main())
