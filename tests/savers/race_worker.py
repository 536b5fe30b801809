"""Code run in child processes by `test_races.py` (spawned, so it must be importable)."""

from __future__ import annotations

import asyncio
import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from tiny_tasks import TaskContext, interrupt, task
from tiny_tasks.errors import RunConflictError, TinyTasksError
from tiny_tasks.savers import PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite

BARRIER_TIMEOUT = 60.0


def open_saver(kind: str, target: str) -> Any:
    """A saver of `kind` ("sqlite" or "postgres") on `target` (a path or a DSN)."""
    return SqliteSaver(target) if kind == "sqlite" else PostgresSaver(target, max_size=1)


def race(
    kind: str, target: str, run_id: str, rounds: int, name: str, barrier: Barrier, out: Queue[Any]
) -> None:
    """Each round: load the run, wait for the rival to load it too, save; report outcomes.

    Puts `(name, [(loaded_version, won), ...])` on `out`, or `(name, error_text)`.
    """
    try:
        out.put((name, asyncio.run(_race(kind, target, run_id, rounds, name, barrier))))
    except BaseException as error:
        barrier.abort()  # never leave the rival waiting
        out.put((name, f"{type(error).__name__}: {error}"))


async def _race(
    kind: str, target: str, run_id: str, rounds: int, name: str, barrier: Barrier
) -> list[tuple[int, bool]]:
    outcomes: list[tuple[int, bool]] = []
    async with open_saver(kind, target) as saver:
        await saver.setup()
        for round_number in range(rounds):
            stored = await saver.load(run_id)
            assert stored is not None
            # Both processes now hold the same version; release them together.
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
            label = f"{name}:{round_number}".encode()
            write = CheckpointWrite(run_id, "race", "running", round_number, (), label, (label,))
            try:
                await saver.save(write, stored.version)
            except RunConflictError:
                outcomes.append((stored.version, False))
            else:
                outcomes.append((stored.version, True))
            # The round is over for both before either loads for the next one.
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
    return outcomes


def open_concurrently(kind: str, target: str, name: str, barrier: Barrier, out: Queue[Any]) -> None:
    """Open a saver on a new store at the same moment as the others and set it up."""
    try:
        barrier.wait(BARRIER_TIMEOUT)
        asyncio.run(_open_and_setup(kind, target))
        out.put((name, "ok"))
    except BaseException as error:
        barrier.abort()
        out.put((name, f"{type(error).__name__}: {error}"))


async def _open_and_setup(kind: str, target: str) -> None:
    async with open_saver(kind, target) as saver:
        await saver.setup()
        await saver.list_runs()


def connect_concurrently(paths: list[str], name: str, barrier: Barrier, out: Queue[Any]) -> None:
    """For each new SQLite file in turn, open it at the same moment as the others."""
    from tiny_tasks.savers._sqlite_schema import connect

    try:
        for path in paths:
            barrier.wait(BARRIER_TIMEOUT)
            connect(path, synchronous="NORMAL", busy_timeout=5.0).close()
        out.put((name, "ok"))
    except BaseException as error:
        barrier.abort()
        out.put((name, f"{type(error).__name__}: {error}"))


# -- two workers resuming one paused run through the engine --------------------------------


@task("approval")
async def approval(order: int, ctx: TaskContext):  # type: ignore[no-untyped-def]
    """Pauses for an answer, then charges once (a recorded step) and finishes."""
    answer = interrupt(f"approve order {order}?")
    yield f"approved by {answer}"
    receipt = await ctx.step(charge, order, answer)
    yield receipt


def charge(order: int, worker: str) -> str:
    """The side effect, logged outside the run: one line per execution."""
    with open(os.environ["TINY_TASKS_CHARGES_LOG"], "a") as log:
        log.write(f"{order} {worker}\n")
    return f"receipt {order} by {worker}"


def resume_race(
    kind: str,
    target: str,
    rounds: int,
    name: str,
    charges_log: str,
    barrier: Barrier,
    out: Queue[Any],
) -> None:
    """Each round, at the same moment as the rival: resume run `order-<round>` as `name`.

    Puts `(name, [(outcome, partials), ...])` on `out`, outcome being "finished" or the
    error's class name; or `(name, error_text)` if the worker itself failed.
    """
    os.environ["TINY_TASKS_CHARGES_LOG"] = charges_log
    try:
        out.put((name, asyncio.run(_resume_race(kind, target, rounds, name, barrier))))
    except BaseException as error:
        barrier.abort()
        out.put((name, f"{type(error).__name__}: {error}"))


async def _resume_race(
    kind: str, target: str, rounds: int, name: str, barrier: Barrier
) -> list[tuple[str, list[str]]]:
    outcomes: list[tuple[str, list[str]]] = []
    async with open_saver(kind, target) as saver:
        await saver.setup()
        for round_number in range(rounds):
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
            partials: list[str] = []
            try:
                stream = approval.resume(name, run_id=f"order-{round_number}", checkpointer=saver)
                async for partial, _, _ in stream:
                    partials.append(partial)
            except TinyTasksError as error:
                outcomes.append((type(error).__name__, partials))
            else:
                outcomes.append(("finished", partials))
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
    return outcomes


def claim_all(kind: str, target: str, name: str, barrier: Barrier, out: Queue[Any]) -> None:
    """Claim runs of the task "claimed", three at a time, until none is left; report
    `(name, [run ids in the order claimed])`, or `(name, error_text)`."""
    try:
        out.put((name, asyncio.run(_claim_all(kind, target, name, barrier))))
    except BaseException as error:
        barrier.abort()
        out.put((name, f"{type(error).__name__}: {error}"))


async def _claim_all(kind: str, target: str, name: str, barrier: Barrier) -> list[str]:
    claimed: list[str] = []
    async with open_saver(kind, target) as saver:
        await saver.setup()
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)  # every process claims at once
        while True:
            now = time.time() + 120.0
            runs = await saver.claim_runs(name, ["claimed"], now, now + 1e6, 3)
            if not runs:
                return claimed
            claimed.extend(run.run_id for run in runs)
