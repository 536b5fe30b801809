"""Durable steps: side effects run once per run, however often it is resumed."""

import asyncio

from tiny_tasks import MemorySaver, RetryPolicy, interrupt, step, task

opts = {"run_id": "order-42", "checkpointer": MemorySaver()}
charges: list[int] = []  # the outside world


@step(retry=RetryPolicy(attempts=3, initial_delay=0.01))
async def charge(amount: int) -> str:
    charges.append(amount)
    return f"receipt-{len(charges)}"


@task
async def checkout(amount: int):
    receipt = await charge(amount)  # recorded: not charged again on resume
    yield f"charged {amount}: {receipt}"
    address = interrupt("shipping address?")
    yield f"shipping to {address}"


async def main() -> None:
    async for partial, _, intr in checkout(30, **opts):
        print(partial or f"paused: {intr.value}")
    async for partial, _, _ in checkout.resume("1 Main St", **opts):
        print(partial)
    print("charges made:", charges)


asyncio.run(main())
