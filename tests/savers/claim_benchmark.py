"""Measure a claim with a large runs table (a script, not a test: timings do not belong in CI).

    .venv/bin/python tests/savers/claim_benchmark.py [--runs 1000000] [--no-postgres]

Fills a fresh SQLite file and a fresh PostgreSQL database (a throwaway server) with
`--runs` runs that wait: half paused without a deadline (never claimable: outside the
partial index), half sleeping with a wake time in the future (in the index, not due),
plus 2,000 queued runs. Then reports the milliseconds per `claim_runs(limit=10)` call
through the saver (median and max of 200 claims, each taking 10 of the queued runs) and
the query plan of the claim, which must read the partial index `tiny_tasks_runs_due`.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

import psycopg
from postgres_server import PostgresServer

from tiny_tasks.savers import PostgresSaver, SqliteSaver, _sqlite_queries, postgres

QUEUED = 2000
CLAIMS = 200
FUTURE = 4e9  # a wake time far ahead


def _fill_sqlite(path: Path, runs: int) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN")
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO tiny_tasks_runs (run_id, task_name, status, version, delivered,"
            " pending, entry_count, created_at, updated_at, wake_at, due_at)"
            " SELECT 'waiting-' || i, 'task', CASE WHEN i % 2 THEN 'paused' ELSE 'sleeping' END,"
            " 1, 0, '[]', 0, i, i, CASE WHEN i % 2 THEN NULL ELSE ? + i END,"
            " CASE WHEN i % 2 THEN NULL ELSE ? + i END FROM n",
            (runs, FUTURE, FUTURE),
        )
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO tiny_tasks_runs (run_id, task_name, status, version, delivered,"
            " pending, entry_count, created_at, updated_at, due_at)"
            " SELECT 'queued-' || i, 'task', 'queued', 1, 0, '[]', 0, i, i, i FROM n",
            (QUEUED,),
        )
        connection.execute("COMMIT")
        connection.execute("ANALYZE")


def _sqlite_plan(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(
            "EXPLAIN QUERY PLAN " + _sqlite_queries._CLAIM_SELECT, (1e12, '["task"]', 10)
        ).fetchall()
    return "\n".join(f"  {row[-1]}" for row in rows)


async def _fill_postgres(dsn: str, runs: int) -> str:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO tiny_tasks_runs (run_id, task_name, status, version, delivered,"
            " pending, state, entry_count, created_at, updated_at, wake_at, due_at)"
            " SELECT 'waiting-' || i, 'task', CASE WHEN i %% 2 = 1 THEN 'paused' ELSE"
            " 'sleeping' END, 1, 0, '{}', '', 0, i, i, CASE WHEN i %% 2 = 1 THEN NULL ELSE"
            " %(future)s + i END, CASE WHEN i %% 2 = 1 THEN NULL ELSE %(future)s + i END"
            " FROM generate_series(1, %(runs)s) AS i",
            {"runs": runs, "future": FUTURE},
        )
        await connection.execute(
            "INSERT INTO tiny_tasks_runs (run_id, task_name, status, version, delivered,"
            " pending, state, entry_count, created_at, updated_at, due_at)"
            " SELECT 'queued-' || i, 'task', 'queued', 1, 0, '{}', '', 0, i, i, i"
            " FROM generate_series(1, %(queued)s) AS i",
            {"queued": QUEUED},
        )
        await connection.execute("VACUUM ANALYZE tiny_tasks_runs")
        parameters = {"owner": "w", "names": ["task"], "now": 1e9, "expires": 2e9, "limit": 10}
        query = psycopg.ClientCursor(connection).mogrify(postgres._CLAIM, parameters)
        cursor = await connection.execute(("EXPLAIN " + query).encode())
        return "\n".join(f"  {row[0]}" for row in await cursor.fetchall())


async def _time_claims(saver: Any) -> list[float]:
    samples = []
    for _ in range(CLAIMS):
        started = time.perf_counter()
        claimed = await saver.claim_runs("worker", ["task"], 1e9, 2e9, 10)
        samples.append((time.perf_counter() - started) * 1e3)
        assert len(claimed) == 10, claimed
    return samples


def _report(name: str, samples: list[float]) -> None:
    print(
        f"  {name}: claim_runs(limit=10) {statistics.median(samples):.2f} ms median,"
        f" {max(samples):.2f} ms max ({len(samples)} claims)"
    )


async def main() -> None:
    """Fill, claim, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "claims.db"
        async with SqliteSaver(path) as saver:
            await saver.setup()
        started = time.perf_counter()
        _fill_sqlite(path, options.runs)
        print(
            f"SqliteSaver: {options.runs:,} waiting runs + {QUEUED:,} queued"
            f" (filled in {time.perf_counter() - started:.1f} s); plan:"
        )
        print(_sqlite_plan(path))
        async with SqliteSaver(path) as saver:
            _report("SQLite", await _time_claims(saver))

    if options.no_postgres:
        return
    with PostgresServer(fsync=True) as server:
        server.create_database("claims")
        dsn = server.dsn("claims")
        async with PostgresSaver(dsn) as saver:
            await saver.setup()
            started = time.perf_counter()
            plan = await _fill_postgres(dsn, options.runs)
            print(
                f"PostgresSaver: {options.runs:,} waiting runs + {QUEUED:,} queued"
                f" (filled in {time.perf_counter() - started:.1f} s); plan:"
            )
            print(plan)
            _report("PostgreSQL", await _time_claims(saver))


if __name__ == "__main__":
    asyncio.run(main())
