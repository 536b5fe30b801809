"""One attempt at a run that receives messages, started (and often SIGKILLed) by
`test_message_crashes.py`.

    python recv_worker.py DB RUN_ID COUNT LOG --attempt K [--seed S] [--stop-at WHERE]

The `receiver` task takes COUNT messages on topic "numbers" with `ctx.recv`, running a
step after each, and returns what it received. Each attempt re-attaches the same run id
in the SQLite file DB; with no message left to take, the run sleeps and the attempt
ends. LOG gets one line per event (one `os.write` each, so a kill leaves whole lines):

    exec V K        the step after receiving V runs, in attempt K
    end STATUS R    the stream ended: the run's status, and its result as JSON

On stdout the worker prints `ready` once it has started; `--stop-at got:V` makes it
print `stopped got:V` right after `recv` returned V, and wait there to be killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from typing import Any

from tiny_tasks import TaskContext, task
from tiny_tasks._driver import Driver, driving
from tiny_tasks.savers import SqliteSaver

STEP_WORK = 0.003  # seconds, at most


class Attempt:
    """This process's log, randomness and stop point."""

    def __init__(self, log_path: str, number: int, seed: int, stop_at: str | None) -> None:
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.number = number
        self.random = random.Random(seed * 1000 + number)
        self.stop_at = stop_at

    def log(self, line: str) -> None:
        os.write(self.log_fd, f"{line}\n".encode())


attempt: Attempt


async def after_receiving(value: Any) -> Any:
    attempt.log(f"exec {value} {attempt.number}")
    await asyncio.sleep(attempt.random.uniform(0, STEP_WORK))
    return value


@task("receiver")
async def receiver(count: int, ctx: TaskContext) -> list[Any]:
    got = []
    for _ in range(count):
        value = await ctx.recv("numbers")
        if attempt.stop_at == f"got:{value}":
            sys.stdout.write(f"stopped got:{value}\n")
            sys.stdout.flush()
            sys.stdin.read()
            raise SystemExit("stdin closed while stopped; expected to be killed")
        got.append(await ctx.step(after_receiving, value))
    return got


async def main(path: str, run_id: str, count: int) -> None:
    # Every attempt drives the run as the same owner (a restarted process of one service
    # that takes its own run back at once); another owner would wait for the killed
    # attempt's lease to expire.
    with driving(Driver(owner="recv-worker")):
        async with SqliteSaver(path) as saver:
            stream = receiver(count, run_id=run_id, checkpointer=saver)
            async for _ in stream:
                pass
    attempt.log(f"end {stream.status} {json.dumps(stream.result)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("run_id")
    parser.add_argument("count", type=int)
    parser.add_argument("log")
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-at", default=None)
    arguments = parser.parse_args()
    attempt = Attempt(arguments.log, arguments.attempt, arguments.seed, arguments.stop_at)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    asyncio.run(main(arguments.db, arguments.run_id, arguments.count))
