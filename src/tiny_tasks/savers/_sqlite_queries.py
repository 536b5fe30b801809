"""The SQL a `SqliteSaver` runs, as functions of a connection (called on its thread).

Write functions run inside a transaction the thread opened (`BEGIN IMMEDIATE`) and
raise `RunConflictError` before changing anything when the compare-and-swap fails, so a
conflict never spoils the other writes committed with it. `load` opens its own read
transaction so the run and its entries come from one snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import Any, cast

from ..errors import RunConflictError
from ._conflict import conflict_error
from .base import Checkpoint, CheckpointWrite, RunInfo, RunStatus

_MARK_DELIVERED = (
    "UPDATE tiny_tasks_runs SET delivered = ?, version = version + 1, updated_at = ?"
    " WHERE run_id = ? AND version = ?"
)
# The log holds only partials below `delivered`: appending at `seq` cuts it there.
_CUT_AFTER = "DELETE FROM tiny_tasks_partials WHERE run_id = ? AND seq > ?"
_CUT_FROM = "DELETE FROM tiny_tasks_partials WHERE run_id = ? AND seq >= ?"
_APPEND_PARTIAL = "INSERT OR REPLACE INTO tiny_tasks_partials (run_id, seq, data) VALUES (?, ?, ?)"
# Rows at or after `delivered` are stale: a later write cut the log there.
_LOAD_PARTIALS = (
    "SELECT seq, data FROM tiny_tasks_partials WHERE run_id = ? AND seq > ?"
    " AND seq < (SELECT delivered FROM tiny_tasks_runs WHERE run_id = ?) ORDER BY seq LIMIT ?"
)
_CREATE = (
    "INSERT INTO tiny_tasks_runs (run_id, task_name, status, version, delivered, pending,"
    " entry_count, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id) DO NOTHING"
)
_CREATE_STATE = "INSERT OR REPLACE INTO tiny_tasks_states (run_id, state) VALUES (?, ?)"
# Without RETURNING (which doubles the cost of an UPDATE in SQLite 3.40). The indexed
# columns are left out: writing them, even unchanged, dirties an index page per write.
_UPDATE = (
    "UPDATE tiny_tasks_runs SET version = version + 1, delivered = ?, pending = ?,"
    " entry_count = entry_count + ?, updated_at = ? WHERE run_id = ? AND version = ?"
)
_UPDATE_INDEXED = (
    "UPDATE tiny_tasks_runs SET task_name = ?, status = ?"
    " WHERE run_id = ? AND (task_name IS NOT ? OR status IS NOT ?)"
)
_UPDATE_STATE = "UPDATE tiny_tasks_states SET state = ? WHERE run_id = ?"
# Entry `index` of a write of `count` gets seq entry_count - count + index, after the
# run's entry_count was raised by `count`; the parameter is count - index.
_APPEND = (
    "INSERT INTO tiny_tasks_entries (run_id, seq, data)"
    " SELECT run_id, entry_count - ?, ? FROM tiny_tasks_runs WHERE run_id = ?"
)
_VERSION = "SELECT version FROM tiny_tasks_runs WHERE run_id = ?"
_LOAD_RUN = (
    "SELECT task_name, status, version, delivered, pending, state, created_at, updated_at"
    " FROM tiny_tasks_runs JOIN tiny_tasks_states USING (run_id) WHERE run_id = ?"
)
_LOAD_ENTRIES = "SELECT data FROM tiny_tasks_entries WHERE run_id = ? ORDER BY seq"
_INFO_COLUMNS = "run_id, task_name, status, version, delivered, pending, created_at, updated_at"


def encode_pending(pending: tuple[str, ...]) -> str:
    """`pending` as the JSON text stored in the `pending` column."""
    return json.dumps(list(pending), ensure_ascii=False)


def _decode_pending(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def mark_delivered(
    connection: sqlite3.Connection, run_id: str, delivered: int, expected_version: int
) -> int:
    """Set `delivered` and bump the version if the run is at `expected_version`."""
    changed = connection.execute(
        _MARK_DELIVERED, (delivered, time.time(), run_id, expected_version)
    ).rowcount
    if changed != 1:
        raise _conflict(connection, run_id, expected_version)
    return expected_version + 1


def append_partial(
    connection: sqlite3.Connection, run_id: str, seq: int, data: bytes, expected_version: int
) -> int:
    """Store partial `seq` (cutting the log there) and set `delivered` to `seq + 1` if
    the run is at `expected_version` (inside a transaction: three statements)."""
    changed = connection.execute(
        _MARK_DELIVERED, (seq + 1, time.time(), run_id, expected_version)
    ).rowcount
    if changed != 1:
        raise _conflict(connection, run_id, expected_version)
    connection.execute(_CUT_AFTER, (run_id, seq))  # finds nothing unless a re-run differs
    connection.execute(_APPEND_PARTIAL, (run_id, seq, data))
    return expected_version + 1


def load_partials(
    connection: sqlite3.Connection, run_id: str, after: int, limit: int | None
) -> list[tuple[int, bytes]]:
    """The partials with `after < seq < delivered`, in order, at most `limit` (one read)."""
    rows = connection.execute(
        _LOAD_PARTIALS, (run_id, after, run_id, -1 if limit is None else limit)
    ).fetchall()
    return [(seq, data) for seq, data in rows]


def save(
    connection: sqlite3.Connection,
    write: CheckpointWrite,
    pending: str,
    expected_version: int | None,
) -> int:
    """Apply `write` (with `pending` already encoded) if the run is at `expected_version`."""
    now = time.time()
    run_id, count = write.run_id, len(write.entries)
    if expected_version is None:
        created = connection.execute(
            _CREATE,
            (run_id, write.task_name, write.status, write.delivered, pending, count, now, now),
        ).rowcount
        if created != 1:
            raise conflict_error(run_id, 0, None)
        connection.execute(_CREATE_STATE, (run_id, write.state))
        version = 1
    else:
        changed = connection.execute(
            _UPDATE, (write.delivered, pending, count, now, run_id, expected_version)
        ).rowcount
        if changed != 1:
            raise _conflict(connection, run_id, expected_version)
        connection.execute(
            _UPDATE_INDEXED, (write.task_name, write.status, run_id, write.task_name, write.status)
        )
        connection.execute(_UPDATE_STATE, (write.state, run_id))
        connection.execute(_CUT_FROM, (run_id, write.delivered))
        version = expected_version + 1
    if count == 1:
        connection.execute(_APPEND, (1, write.entries[0], run_id))
    elif count:
        connection.executemany(
            _APPEND, [(count - index, data, run_id) for index, data in enumerate(write.entries)]
        )
    return version


def _conflict(connection: sqlite3.Connection, run_id: str, expected: int) -> RunConflictError:
    row = connection.execute(_VERSION, (run_id,)).fetchone()
    return conflict_error(run_id, None if row is None else int(row[0]), expected)


def delete(connection: sqlite3.Connection, run_id: str) -> None:
    """Remove the run, its entries and its partials (nothing to do if it is not stored)."""
    connection.execute("DELETE FROM tiny_tasks_entries WHERE run_id = ?", (run_id,))
    connection.execute("DELETE FROM tiny_tasks_partials WHERE run_id = ?", (run_id,))
    connection.execute("DELETE FROM tiny_tasks_states WHERE run_id = ?", (run_id,))
    connection.execute("DELETE FROM tiny_tasks_runs WHERE run_id = ?", (run_id,))


def load(connection: sqlite3.Connection, run_id: str) -> Checkpoint | None:
    """The run and all its entries, read in one transaction; `None` if not stored."""
    connection.execute("BEGIN")
    try:
        row = connection.execute(_LOAD_RUN, (run_id,)).fetchone()
        if row is None:
            return None
        entries = tuple(data for (data,) in connection.execute(_LOAD_ENTRIES, (run_id,)))
    finally:
        connection.execute("COMMIT")
    task_name, status, version, delivered, pending, state, created_at, updated_at = row
    return Checkpoint(
        run_id,
        task_name,
        cast(RunStatus, status),
        version,
        delivered,
        _decode_pending(pending),
        state,
        entries,
        created_at,
        updated_at,
    )


def list_runs(
    connection: sqlite3.Connection,
    status: RunStatus | None,
    task_name: str | None,
    limit: int,
    offset: int,
) -> list[RunInfo]:
    """Runs newest first (ties by run id, descending), filtered and paginated."""
    conditions: list[str] = []
    parameters: list[Any] = []
    if status is not None:
        conditions.append("status = ?")
        parameters.append(status)
    if task_name is not None:
        conditions.append("task_name = ?")
        parameters.append(task_name)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = connection.execute(
        f"SELECT {_INFO_COLUMNS} FROM tiny_tasks_runs{where}"
        " ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?",
        (*parameters, limit, offset),
    ).fetchall()
    return [
        RunInfo(
            run_id,
            name,
            cast(RunStatus, run_status),
            version,
            delivered,
            _decode_pending(pending),
            created_at,
            updated_at,
        )
        for run_id, name, run_status, version, delivered, pending, created_at, updated_at in rows
    ]


def ping(connection: sqlite3.Connection) -> None:
    """Nothing: awaiting it proves the connection is open and the schema migrated."""


INCREMENTAL = 2
"""`PRAGMA auto_vacuum` of a file whose free pages `incremental_vacuum` can release."""

VACUUM_CHUNK_PAGES = 4096
"""Free pages released per transaction (8 MiB of 2 KiB pages): bounds the write lock."""


def vacuum(connection: sqlite3.Connection, path: str, full: bool) -> int:
    """Give the free pages of `path` back to the file system; return the bytes released.

    Runs outside a transaction (VACUUM cannot run in one). A file in incremental
    auto-vacuum mode releases its free pages in chunks of `VACUUM_CHUNK_PAGES`, each
    its own short write transaction; any other file (made by an older tiny-tasks), or
    `full=True`, is rewritten whole by VACUUM, which also switches it to incremental
    mode. The WAL is then checkpointed and truncated, so the file really shrinks.
    """
    before = _size(path)
    (mode,) = connection.execute("PRAGMA auto_vacuum").fetchone()
    if full or mode != INCREMENTAL:
        connection.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
        connection.execute("VACUUM")
    else:
        while connection.execute("PRAGMA freelist_count").fetchone()[0] > 0:
            # Not execute(): the sqlite3 module steps a statement without result columns
            # once, which releases one page; executescript runs it to completion.
            connection.executescript(f"PRAGMA incremental_vacuum({VACUUM_CHUNK_PAGES});")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return max(before - _size(path), 0)


def _size(path: str) -> int:
    """Bytes used by the database file and its WAL."""
    total = 0
    for name in (path, path + "-wal"):
        with contextlib.suppress(FileNotFoundError):  # the last connection to close drops the WAL
            total += os.stat(name).st_size
    return total
