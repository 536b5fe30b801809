"""A direct call that drives one run and is SIGKILLed inside its second step
(by `tests/savers/test_lease_kill.py`).

    python lease_kill_worker.py BACKEND TARGET RUN_ID LOG

BACKEND is `sqlite` (TARGET a file path) or `postgres` (TARGET a connection string; the
schema must exist). Each step appends `<step> <pid>` to LOG (an `O_APPEND` file, one
`os.write` a line). Inside `ship` the worker prints `stopped` and blocks until killed.
The test process imports this module for the same task and steps, which do not block there.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from tiny_tasks import TaskContext, task

BLOCK_IN_SHIP = False  # set by the worker process only


def log(line: str) -> None:
    fd = os.open(os.environ["TINY_TASKS_KILL_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


async def charge(order: str) -> str:
    log("charge")
    return f"receipt for {order}"


async def ship(order: str) -> str:
    log("ship")
    if BLOCK_IN_SHIP:
        sys.stdout.write("stopped\n")
        sys.stdout.flush()
        sys.stdin.read()  # blocks the whole process: it is killed here
        raise SystemExit("stdin closed; expected to be killed")
    return f"shipped {order}"


@task("lease_victim")
async def lease_victim(order: str, ctx: TaskContext) -> list[str]:
    receipt = await ctx.step(charge, order)
    shipped = await ctx.step(ship, order)
    return [receipt, shipped]


def open_saver(backend: str, target: str) -> Any:
    """A saver of `backend` on `target`."""
    from tiny_tasks.savers import PostgresSaver, SqliteSaver

    return SqliteSaver(target) if backend == "sqlite" else PostgresSaver(target, max_size=1)


async def main(backend: str, target: str, run_id: str) -> None:
    async with open_saver(backend, target) as saver:
        await lease_victim.invoke("order-7", run_id=run_id, checkpointer=saver)


if __name__ == "__main__":
    backend, target, run_id, log_path = sys.argv[1:5]
    os.environ["TINY_TASKS_KILL_LOG"] = log_path
    BLOCK_IN_SHIP = True
    asyncio.run(main(backend, target, run_id))
