"""An LLM-style token stream, paused for approval and resumed: the model is called once.

The token stream is itself a task: once it has finished, it is recorded in the run's
journal, so resuming replays its tokens instead of calling the model again.
"""

import asyncio

from tiny_tasks import MemorySaver, task

opts = {"run_id": "chat", "checkpointer": MemorySaver()}
model_calls: list[str] = []


@task
async def model(prompt: str):
    model_calls.append(prompt)
    for token in f"<answer to {prompt}>".split():
        await asyncio.sleep(0)  # a network round trip
        yield token


@task
async def agent(question: str, ctx):
    async for token, _, _ in model(question):
        yield token
    if ctx.interrupt({"question": "send this answer?"}) != "yes":
        return
    async for token, _, _ in model("follow-up"):
        yield token


async def main() -> None:
    async for token, _, intr in agent("what is tiny-tasks", **opts):
        print(token if token is not None else f"paused: {intr.value}")
    async for token, _, _ in agent.resume("yes", **opts):
        print(token)
    print("model calls:", model_calls)


asyncio.run(main())
