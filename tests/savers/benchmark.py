"""Measure the savers' per-call cost (a script, not a test: timings do not belong in CI).

    .venv/bin/python tests/savers/benchmark.py [--calls 5000] [--repeats 7] [--no-postgres]

For each saver it reports microseconds per awaited call, awaited one after another from
one coroutine: `mark_delivered` (the per-partial write that records the count),
`append_partial` (the per-partial write of exactly-once delivery, which also stores a
12-byte partial in the stream log) and `save` (a 14-byte state and one 200-byte entry);
then `save` of a step under a lease (as a run driven by the runtime writes it); then
the same `mark_delivered` from 16 coroutines at once, where
group commit shares each SQLite transaction. SQLite runs at NORMAL durability with and
without `inline_marks` (the per-partial write on the caller's thread, or every write on
the saver's thread), then at FULL durability.
The figure reported is the median over `--repeats` runs (min in brackets).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from postgres_server import PostgresServer

from tiny_tasks.savers import PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite

ENTRY = b"e" * 200
STATE = b"state-blob-123"


def _write(run_id: str, delivered: int) -> CheckpointWrite:
    return CheckpointWrite(run_id, "bench", "running", delivered, (), STATE, (ENTRY,))


def _leased_write(run_id: str, delivered: int) -> CheckpointWrite:
    """A step of a run driven under a lease (every runtime write carries it)."""
    return CheckpointWrite(
        run_id, "bench", "running", delivered, (), STATE, (ENTRY,), "owner-1", 2e9
    )


def _report(name: str, samples: list[float]) -> None:
    print(f"  {name:44} {statistics.median(samples):7.1f} µs  [min {min(samples):6.1f}]")


async def _repeat(repeats: int, calls: int, body: Callable[[int], Awaitable[None]]) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await body(calls)
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return samples


async def bench_saver(saver: Any, calls: int, repeats: int) -> None:
    """Sequential mark_delivered and save, then 16 concurrent writers."""
    version = await saver.save(_write("sequential", 0), None)

    async def marks(count: int) -> None:
        nonlocal version
        for delivered in range(count):
            version = await saver.mark_delivered("sequential", delivered, version)

    delivered_so_far = 0

    async def appends(count: int) -> None:
        nonlocal version, delivered_so_far
        for _ in range(count):
            version = await saver.append_partial(
                "sequential",
                delivered_so_far,
                b'"token %04d"' % (delivered_so_far % 10000),
                version,
            )
            delivered_so_far += 1

    async def saves(count: int) -> None:
        nonlocal version
        for delivered in range(count):
            version = await saver.save(_write("sequential", delivered), version)

    async def leased_saves(count: int) -> None:
        nonlocal version
        for delivered in range(count):
            version = await saver.save(_leased_write("sequential", delivered), version)

    async def concurrent_marks(count: int) -> None:
        async def one(run_id: str, share: int) -> None:
            stored = await saver.load(run_id)
            current = 0 if stored is None else stored.version
            if stored is None:
                current = await saver.save(_write(run_id, 0), None)
            for delivered in range(share):
                current = await saver.mark_delivered(run_id, delivered, current)

        await asyncio.gather(*(one(f"concurrent-{n}", count // 16) for n in range(16)))

    await marks(calls // 10)  # warm up caches and prepared statements
    _report("mark_delivered, sequential", await _repeat(repeats, calls, marks))
    _report("save (1 entry of 200 B), sequential", await _repeat(repeats, calls, saves))
    _report("save under a lease, sequential", await _repeat(repeats, calls, leased_saves))
    _report("append_partial (12 B), sequential", await _repeat(repeats, calls, appends))
    _report(
        "mark_delivered, 16 coroutines (per call)", await _repeat(repeats, calls, concurrent_marks)
    )


async def main() -> None:
    """Run every measurement and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-postgres", action="store_true")
    options = parser.parse_args()
    calls, repeats = options.calls, options.repeats

    for synchronous, inline_marks in (("NORMAL", True), ("NORMAL", False), ("FULL", True)):
        with tempfile.TemporaryDirectory() as folder:
            print(f"SqliteSaver, synchronous={synchronous}, inline_marks={inline_marks}")
            path = Path(folder) / "bench.db"
            saver = SqliteSaver(path, synchronous=synchronous, inline_marks=inline_marks)
            async with saver:
                await bench_saver(saver, calls, repeats)

    if options.no_postgres:
        return
    with PostgresServer(fsync=True) as server:
        for synchronous_commit in ("on", "off"):
            name = f"bench_{synchronous_commit}"
            server.create_database(name)
            server.execute(f"ALTER DATABASE {name} SET synchronous_commit = {synchronous_commit}")
            print(f"PostgresSaver (Unix socket, fsync=on, synchronous_commit={synchronous_commit})")
            async with PostgresSaver(server.dsn(name)) as pg_saver:
                await pg_saver.setup()
                await bench_saver(pg_saver, max(calls // 5, 100), repeats)


if __name__ == "__main__":
    asyncio.run(main())
