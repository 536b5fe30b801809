"""A run as a service: submitted, started by a worker, asleep without holding a process,
woken by a message, an approval with a deadline that nobody meets, and a kept outcome.

    PYTHONPATH=src python3 examples/service.py

One process plays the client and the worker here; in production the worker is
`tiny-tasks worker STORE --app your.module`, in as many processes as you like.
"""

import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from tiny_tasks import TaskContext, Worker, get_run, send, task
from tiny_tasks.savers import SqliteSaver

charges: list[str] = []


async def charge(item: str) -> str:
    charges.append(item)
    return f"receipt-{len(charges)}"


@task("order")
async def order(item: str, ctx: TaskContext) -> dict[str, str]:
    receipt = await ctx.step(charge, item)  # recorded: never charged twice
    await ctx.sleep(timedelta(seconds=1.5))  # stored as sleeping; a worker wakes it
    courier = await ctx.recv("courier", timeout=timedelta(minutes=5))  # a message
    approval = ctx.interrupt(
        {"ship": item, "via": courier},
        timeout=timedelta(seconds=1.5),
        default="approved by default",  # nobody answers in time
    )
    return {"receipt": receipt, "courier": str(courier), "approval": approval}


def phase(state) -> str:  # type: ignore[no-untyped-def]
    if state.status == "sleeping" and state.wake_at and state.wake_at - time.time() > 60:
        return "sleeping (waiting for a message)"
    if state.status == "sleeping":
        return "sleeping (a timer)"
    if state.status == "paused":
        return f"paused on {state.pending[0].value} (deadline set)"
    return state.status


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with SqliteSaver(str(Path(folder) / "runs.db")) as saver:
            run_id = await order.submit("lamp", run_id="order-42", checkpointer=saver)
            queued = await get_run(saver, run_id)
            print(f"submitted {run_id}: {queued.status if queued else None}")
            worker = Worker(saver, tasks=[order], poll_interval=0.1)
            working = asyncio.create_task(worker.run())
            seen, sent = None, False
            while True:
                state = await get_run(saver, run_id)
                assert state is not None
                shown = state.status not in ("queued", "running")
                if shown and not (sent and state.status == "sleeping") and phase(state) != seen:
                    seen = phase(state)
                    print(seen)
                    if seen == "sleeping (waiting for a message)":
                        await send(saver, run_id, "courier", "bike")  # wakes it at once
                        sent = True
                        print("sent a message on 'courier'")
                if state.status in ("done", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.05)
            print(f"outcome: {state.result}")
            worker.stop()
            await working
            again = await order.invoke("lamp", run_id=run_id, checkpointer=saver)
            print(f"called again, nothing runs: {again == state.result}, charges {charges}")


if __name__ == "__main__":
    asyncio.run(main())
