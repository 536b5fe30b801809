"""One attempt at a durable run, started (and often SIGKILLed) by `test_crash_recovery.py`.

    python crash_worker.py BACKEND TARGET RUN_ID LOG --attempt K [--seed S] [--stop-at WHERE]

BACKEND is `sqlite` (TARGET is a file path) or `postgres` (TARGET is a libpq connection
string; the schema must exist). The worker calls the `crash_workflow` task with the same
input and run id every time, so a killed attempt is continued by the next one. Everything
it does is appended to LOG (an `O_APPEND` file: each line is one `os.write`, so a kill
leaves whole lines only), one line per event:

    attempt K T          the worker has imported everything (T: time.monotonic())
    exec I K TOKEN T     step I runs, in attempt K; TOKEN is the result it will return
    got I.J:TOKEN        the consumer received partial J of step I
    done T               the stream ended: the run is complete

Partial J of step I carries the token its step returned, so a step that ran again after
its result had been used would show up as two tokens for one step.

On stdout the worker prints `ready` once it has logged `attempt` (so the test can time
kills from there, whatever the interpreter's start-up took). `--stop-at WHERE` makes it
also print `stopped WHERE` and block (reading stdin) at one exact point, for the test to
kill it there:

    step-running:I       inside step I, after its `exec` line (its result is not recorded)
    step-returned:I      in the task body, right after step I returned its result
    partial:I.J          in the consumer, right after its `got I.J` line
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from tiny_tasks import TaskContext, step, task
from tiny_tasks._driver import Driver, driving

STEPS = 20
PARTIALS_PER_STEP = 10
STEP_WORK = 0.004  # seconds, at most: the time a step "works" after its exec line
PAUSE_BETWEEN_STEPS = 0.003  # seconds, at most: the body idles after a step's partials
CONSUMER_WORK = 0.0005  # seconds, at most: the consumer's work on some partials
CONSUMER_WORKS = 0.3  # the share of partials the consumer works on


class Worker:
    """This attempt's log, randomness and stop point (module state: one per process)."""

    def __init__(self, log_path: str, attempt: int, seed: int, stop_at: str | None) -> None:
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.attempt = attempt
        self.random = random.Random(seed * 1000 + attempt)
        self.stop_at = stop_at

    def log(self, line: str) -> None:
        os.write(self.log_fd, f"{line}\n".encode())

    def stop_if(self, where: str) -> None:
        """At the requested point: say so, then wait to be killed (or for stdin to close)."""
        if where == self.stop_at:
            sys.stdout.write(f"stopped {where}\n")
            sys.stdout.flush()
            sys.stdin.read()
            raise SystemExit(f"stdin closed while stopped at {where}; expected to be killed")


worker: Worker


async def run_step(i: int) -> str:
    token = os.urandom(4).hex()
    worker.log(f"exec {i} {worker.attempt} {token} {time.monotonic()}")
    worker.stop_if(f"step-running:{i}")
    await asyncio.sleep(worker.random.uniform(0, STEP_WORK))
    return token


@step
async def decorated_step(i: int) -> str:
    return await run_step(i)


@task("crash_workflow")
async def crash_workflow(spec: dict[str, int], ctx: TaskContext) -> AsyncIterator[str]:
    for i in range(spec["steps"]):
        # Both ways of declaring a step: the decorator, and `ctx.step`.
        if i % 2 == 0:
            token = await decorated_step(i)
        else:
            token = await ctx.step(run_step, i, name="context_step")
        worker.stop_if(f"step-returned:{i}")
        for j in range(spec["partials"]):
            yield f"{i}.{j}:{token}"
        await asyncio.sleep(worker.random.uniform(0, PAUSE_BETWEEN_STEPS))


def saver_factory(backend: str) -> Any:
    """The saver class for `backend`, imported now (psycopg is slow to import)."""
    if backend == "sqlite":
        from tiny_tasks.savers import SqliteSaver

        return SqliteSaver
    # The saver imports psycopg when it is made; import it here, as part of start-up.
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401

    from tiny_tasks.savers import PostgresSaver

    return lambda dsn: PostgresSaver(dsn, max_size=1)


async def main(open_saver: Any, target: str, run_id: str) -> None:
    spec = {"steps": STEPS, "partials": PARTIALS_PER_STEP}
    # Every attempt drives the run as the same owner (a restarted process of one service
    # that takes its own run back at once); another owner would wait for the killed
    # attempt's lease to expire (tests/savers/test_lease_kill.py).
    with driving(Driver(owner="crash-worker")):
        async with open_saver(target) as saver:
            stream = crash_workflow(spec, run_id=run_id, checkpointer=saver)
            async for partial, _, interrupt in stream:
                assert interrupt is None, f"unexpected interrupt {interrupt!r}"
                worker.log(f"got {partial}")
                worker.stop_if(f"partial:{partial.partition(':')[0]}")
                if worker.random.random() < CONSUMER_WORKS:
                    await asyncio.sleep(worker.random.uniform(0, CONSUMER_WORK))
    worker.log(f"done {time.monotonic()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["sqlite", "postgres"])
    parser.add_argument("target")
    parser.add_argument("run_id")
    parser.add_argument("log")
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-at", default=None)
    arguments = parser.parse_args()
    open_saver = saver_factory(arguments.backend)
    worker = Worker(arguments.log, arguments.attempt, arguments.seed, arguments.stop_at)
    worker.log(f"attempt {arguments.attempt} {time.monotonic()}")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    asyncio.run(main(open_saver, arguments.target, arguments.run_id))
