"""`scan_runs`: keyset-paginated listing of stored runs with their state blobs.

What an HTTP layer needs to page through runs (`GET /runs`) and to list every pending
interrupt across runs (`GET /interrupts`: the paused runs' state blobs, oldest first)
in one indexed query. Each built-in saver's method is a thin shell over one function
here; the queries use the `(status, created_at, run_id)` and
`(task_name, created_at, run_id)` indexes every schema already has.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any, cast

from .base import Checkpoint, RunStatus

__all__ = ["Cursor", "check_scan", "postgres_scan", "scan_checkpoints", "sqlite_scan"]

Cursor = tuple[float, str]
"""A position in the listing: the `(created_at, run_id)` of the last run of a page."""

_COLUMNS = (
    "run_id, task_name, status, version, delivered, pending, {state}, created_at, updated_at,"
    " lease_owner, lease_expires, wake_at, cancel_requested"
)


def check_scan(limit: int, after: Cursor | None) -> None:
    """Raise `ValueError` unless `limit` and `after` suit `scan_runs` (a saver helper)."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    if after is not None and not (
        isinstance(after, tuple) and len(after) == 2 and isinstance(after[1], str)
    ):
        raise ValueError(f"after must be a (created_at, run_id) pair, not {after!r}")


def _where(
    status: RunStatus | None,
    task_name: str | None,
    after: Cursor | None,
    oldest_first: bool,
    mark: str,
) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    parameters: list[Any] = []
    if status is not None:
        conditions.append(f"status = {mark}")
        parameters.append(status)
    if task_name is not None:
        conditions.append(f"task_name = {mark}")
        parameters.append(task_name)
    if after is not None:
        conditions.append(f"(created_at, run_id) {'>' if oldest_first else '<'} ({mark}, {mark})")
        parameters.extend(after)
    order = "ASC" if oldest_first else "DESC"
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"{where} ORDER BY created_at {order}, run_id {order} LIMIT {mark}", parameters


def scan_checkpoints(
    runs: Iterable[Checkpoint],
    *,
    status: RunStatus | None = None,
    task_name: str | None = None,
    after: Cursor | None = None,
    limit: int = 100,
    oldest_first: bool = False,
) -> list[Checkpoint]:
    """`scan_runs` over checkpoints in memory (a helper for simple savers)."""
    check_scan(limit, after)
    chosen = [
        run
        for run in runs
        if (status is None or run.status == status)
        and (task_name is None or run.task_name == task_name)
        and (
            after is None
            or (
                (run.created_at, run.run_id) > after
                if oldest_first
                else (run.created_at, run.run_id) < after
            )
        )
    ]
    chosen.sort(key=lambda run: (run.created_at, run.run_id), reverse=not oldest_first)
    return [_without_entries(run) for run in chosen[:limit]]


def _without_entries(run: Checkpoint) -> Checkpoint:
    return Checkpoint(
        run.run_id,
        run.task_name,
        run.status,
        run.version,
        run.delivered,
        run.pending,
        run.state,
        (),
        run.created_at,
        run.updated_at,
        run.lease_owner,
        run.lease_expires,
        run.wake_at,
        run.cancel_requested,
        run.waits,
    )


def sqlite_scan(
    connection: sqlite3.Connection,
    status: RunStatus | None,
    task_name: str | None,
    after: Cursor | None,
    limit: int,
    oldest_first: bool,
) -> list[Checkpoint]:
    """`scan_runs` on a SQLite connection: one indexed read (called on the saver's thread)."""
    tail, parameters = _where(status, task_name, after, oldest_first, "?")
    columns = _COLUMNS.format(
        state="(SELECT state FROM tiny_tasks_states s WHERE s.run_id = r.run_id)"
    )
    rows = connection.execute(
        f"SELECT {columns} FROM tiny_tasks_runs r{tail}", (*parameters, limit)
    ).fetchall()
    return [_checkpoint(row, tuple(json.loads(row[5]))) for row in rows]


async def postgres_scan(
    execute: Any,
    status: RunStatus | None,
    task_name: str | None,
    after: Cursor | None,
    limit: int,
    oldest_first: bool,
) -> list[Checkpoint]:
    """`scan_runs` on PostgreSQL; `execute(query, parameters)` returns the rows."""
    tail, parameters = _where(status, task_name, after, oldest_first, "%s")
    rows = await execute(
        f"SELECT {_COLUMNS.format(state='state')} FROM tiny_tasks_runs{tail}", (*parameters, limit)
    )
    return [_checkpoint(row, tuple(row[5])) for row in rows]


def _checkpoint(row: Any, pending: tuple[str, ...]) -> Checkpoint:
    run_id, task_name, status, version, delivered, _, state, created_at, updated_at = row[:9]
    lease_owner, lease_expires, wake_at, cancel_requested = row[9:]
    return Checkpoint(
        run_id,
        task_name,
        cast(RunStatus, status),
        version,
        delivered,
        pending,
        bytes(state or b""),
        (),
        created_at,
        updated_at,
        lease_owner,
        lease_expires,
        wake_at,
        bool(cancel_requested),
    )
