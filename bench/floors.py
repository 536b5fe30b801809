"""Commit floors: what one durable write costs at the storage layer, with no workflow engine.

    bench/.env/bin/python bench/floors.py [--postgres URL] [--quick] [--json FILE]

Measured in the same run as the systems (and, for PostgreSQL, on the same throwaway
server), so the engines' figures can be read against them:

* SQLite through `sqlite3`: one single-row `INSERT` and its `COMMIT`, in WAL mode at
  `synchronous=NORMAL` (tiny-tasks' default) and `FULL` (LangGraph's), and in a rollback
  journal at `FULL` (DBOS's);
* PostgreSQL through psycopg: one `INSERT ...; COMMIT` round trip (autocommit, one
  statement) with `synchronous_commit` on (the server's default) and off;
* the hop from an event loop to a worker thread and back (`loop.run_in_executor` on a
  one-thread pool), which every SQLite saver running its database work on a thread pays
  once per awaited call.

Prints a Markdown table (median and min–max of `ROUNDS` rounds, each the mean of `n`
operations).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROUNDS = 5


def rounds(operation: Callable[[int], None], n: int) -> list[float]:
    """Seconds per operation for ROUNDS rounds of `n` operations (after one warm-up round)."""
    operation(max(1, n // 10))
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        operation(n)
        samples.append((time.perf_counter() - started) / n)
    return samples


def sqlite_commit(folder: Path, journal: str, synchronous: str) -> Callable[[int], None]:
    path = folder / f"floor-{journal}-{synchronous}.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"PRAGMA journal_mode={journal}")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    body = b"x" * 100

    def insert(n: int) -> None:
        for _ in range(n):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t (body) VALUES (?)", (body,))
            connection.execute("COMMIT")

    return insert


def postgres_commit(url: str, synchronous_commit: str) -> Callable[[int], None]:
    import psycopg

    connection = psycopg.connect(url, autocommit=True)
    connection.execute(f"SET synchronous_commit = {synchronous_commit}")
    connection.execute("CREATE TABLE IF NOT EXISTS floor_t (id BIGSERIAL PRIMARY KEY, body BYTEA)")
    body = b"x" * 100

    def insert(n: int) -> None:
        for _ in range(n):  # autocommit: the INSERT is its own transaction, one round trip
            connection.execute("INSERT INTO floor_t (body) VALUES (%s)", (body,))

    return insert


def thread_hop() -> Callable[[int], None]:
    pool = ThreadPoolExecutor(1)

    def hop(n: int) -> None:
        async def many() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(n):
                await loop.run_in_executor(pool, int)

        asyncio.run(many())

    return hop


def measure(postgres: str | None, quick: bool) -> list[dict[str, object]]:
    n_sqlite, n_pg, n_hop = (50, 50, 200) if quick else (500, 500, 5_000)
    rows: list[dict[str, object]] = []

    def add(what: str, durability: str, samples: list[float]) -> None:
        rows.append(
            {
                "what": what,
                "durability": durability,
                "median_us": statistics.median(samples) * 1e6,
                "min_us": min(samples) * 1e6,
                "max_us": max(samples) * 1e6,
            }
        )

    with tempfile.TemporaryDirectory(prefix="tiny-tasks-floors-") as tmp:
        folder = Path(tmp)
        for journal, level, who in (
            ("WAL", "NORMAL", "tiny-tasks' default"),
            ("WAL", "FULL", "LangGraph's default"),
            ("DELETE", "FULL", "DBOS's default"),
        ):
            add(
                "SQLite INSERT + COMMIT",
                f"{journal}, synchronous={level} ({who})",
                rounds(sqlite_commit(folder, journal, level), n_sqlite),
            )
    if postgres:
        from _pg import create_database

        url = create_database(postgres, "bench_floors")
        for setting, note in (("on", "server default"), ("off", "survives a killed client")):
            add(
                "PostgreSQL INSERT; COMMIT",
                f"synchronous_commit={setting} ({note})",
                rounds(postgres_commit(url, setting), n_pg),
            )
    add("event loop -> thread -> event loop", "no I/O", rounds(thread_hop(), n_hop))
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| operation | durability | median µs | min–max µs |", "|---|---|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['what']} | {row['durability']} | {row['median_us']:.1f} | "
            f"{row['min_us']:.1f}–{row['max_us']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=None, help="base URL of a throwaway server")
    parser.add_argument("--quick", action="store_true", help="few operations, for CI")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    options = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    rows = measure(options.postgres, options.quick)
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(markdown(rows))


if __name__ == "__main__":
    main()
