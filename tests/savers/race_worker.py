"""Code run in child processes by `test_races.py` (spawned, so it must be importable)."""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from tiny_tasks.errors import RunConflictError
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
