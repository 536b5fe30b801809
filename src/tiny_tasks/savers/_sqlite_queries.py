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
from typing import Any, cast

from ..errors import RunConflictError
from ._conflict import conflict_error
from .base import (
    FINISHED,
    Checkpoint,
    CheckpointWrite,
    Lease,
    RunInfo,
    RunStatus,
    claimable_at,
)

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
    " entry_count, created_at, updated_at, lease_owner, lease_expires, wake_at, waits, due_at)"
    " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING"
)


def _claimable_sql(status: str, lease_expires: str, wake_at: str, updated_at: str) -> str:
    """`base.claimable_at` in SQL, over the given expressions and the row's columns.

    A running run without a lease keeps the earliest time it was claimable at (`MIN`),
    so that its writes (each with a new `updated_at`) leave the index alone.
    """
    lease = f"COALESCE({lease_expires}, {updated_at})"
    return (
        f"CASE WHEN {status} = 'queued' THEN MAX({updated_at}, {lease})"
        f" WHEN {status} = 'running' THEN COALESCE({lease_expires},"
        f" MIN({updated_at}, COALESCE(due_at, {updated_at})))"
        f" WHEN {status} IN ('paused', 'sleeping') THEN CASE WHEN cancel_requested"
        f" THEN MAX({updated_at}, {lease})"
        f" ELSE MAX({wake_at}, COALESCE({lease_expires}, {wake_at})) END"
        " ELSE NULL END"
    )


_CLAIMABLE = _claimable_sql("status", "lease_expires", "wake_at", "updated_at")
"""The row's `claimable_at`, from its columns (for a statement that changed them before)."""
_CREATE_STATE = "INSERT OR REPLACE INTO tiny_tasks_states (run_id, state) VALUES (?, ?)"
# Without RETURNING (which doubles the cost of an UPDATE in SQLite 3.40). The indexed
# columns are left out: writing them, even unchanged, dirties an index page per write.
# The lease, wake time and waits are not indexed: written with the rest of the row.
_UPDATE = (
    "UPDATE tiny_tasks_runs SET version = version + 1, delivered = ?, pending = ?,"
    " entry_count = entry_count + ?, updated_at = ?, lease_owner = ?, lease_expires = ?,"
    " wake_at = ?, waits = ? WHERE run_id = ? AND version = ?"
)
# After _UPDATE, so `due_at` is computed from the new lease and wake time. It finds
# nothing to change on a step's write (same status, same lease): no index page is
# dirtied. The lease changes on a run's first write, a renewal, and its last write.
_NEW_CLAIMABLE = _claimable_sql(":status", "lease_expires", "wake_at", "updated_at")
_UPDATE_INDEXED = (
    f"UPDATE tiny_tasks_runs SET task_name = :task_name, status = :status,"
    f" due_at = {_NEW_CLAIMABLE} WHERE run_id = :run_id AND (task_name IS NOT :task_name"
    f" OR status IS NOT :status OR due_at IS NOT {_NEW_CLAIMABLE})"
)
_TAKE = "UPDATE tiny_tasks_messages SET taken = 1 WHERE run_id = ? AND id = ?"
_WAKE_ON_SAVE = (
    "UPDATE tiny_tasks_runs SET wake_at = updated_at WHERE run_id = ?"
    " AND (wake_at IS NULL OR wake_at > updated_at) AND EXISTS (SELECT 1 FROM"
    " tiny_tasks_messages, json_each(tiny_tasks_runs.waits) AS waited WHERE"
    " tiny_tasks_messages.run_id = tiny_tasks_runs.run_id"
    " AND tiny_tasks_messages.topic = waited.value AND tiny_tasks_messages.taken = 0)"
)
# Unchanged on a step's write (the state changes when the run pauses): then it finds
# nothing to change, and the page is not written to the WAL again.
_UPDATE_STATE = "UPDATE tiny_tasks_states SET state = ?1 WHERE run_id = ?2 AND state IS NOT ?1"
# Entry `index` of a write of `count` gets seq entry_count - count + index, after the
# run's entry_count was raised by `count`; the parameter is count - index.
_APPEND = (
    "INSERT INTO tiny_tasks_entries (run_id, seq, data)"
    " SELECT run_id, entry_count - ?, ? FROM tiny_tasks_runs WHERE run_id = ?"
)
_VERSION = "SELECT version FROM tiny_tasks_runs WHERE run_id = ?"
_LOAD_RUN = (
    "SELECT task_name, status, version, delivered, pending, state, created_at, updated_at,"
    " lease_owner, lease_expires, wake_at, cancel_requested, waits"
    " FROM tiny_tasks_runs JOIN tiny_tasks_states USING (run_id) WHERE run_id = ?"
)
_LOAD_ENTRIES = "SELECT data FROM tiny_tasks_entries WHERE run_id = ? ORDER BY seq"
_INFO_COLUMNS = (
    "run_id, task_name, status, version, delivered, pending, created_at, updated_at,"
    " lease_owner, lease_expires, wake_at, cancel_requested"
)


def encode_pending(pending: tuple[str, ...]) -> str:
    """`pending` as the JSON text stored in the `pending` column."""
    return json.dumps(list(pending), ensure_ascii=False)


def _decode_pending(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def mark_delivered(
    connection: sqlite3.Connection, run_id: str, delivered: int, expected_version: int, now: float
) -> int:
    """Set `delivered` and bump the version if the run is at `expected_version`."""
    changed = connection.execute(
        _MARK_DELIVERED, (delivered, now, run_id, expected_version)
    ).rowcount
    if changed != 1:
        raise _conflict(connection, run_id, expected_version)
    return expected_version + 1


def append_partial(
    connection: sqlite3.Connection,
    run_id: str,
    seq: int,
    data: bytes,
    expected_version: int,
    now: float,
) -> int:
    """Store partial `seq` (cutting the log there) and set `delivered` to `seq + 1` if
    the run is at `expected_version` (inside a transaction: three statements)."""
    changed = connection.execute(_MARK_DELIVERED, (seq + 1, now, run_id, expected_version)).rowcount
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
    now: float,
) -> int:
    """Apply `write` (with `pending` already encoded) if the run is at `expected_version`,
    stamped `now` (the caller's `stamp()`: this runs on the saver's thread)."""
    run_id, count = write.run_id, len(write.entries)
    waits = encode_pending(write.waits) if write.waits else "[]"
    if expected_version is None:
        # A new run has no messages (delete forgot them) and no cancel request.
        due = claimable_at(write.status, write.lease_expires, write.wake_at, False, now)
        created = connection.execute(
            _CREATE,
            (
                run_id,
                write.task_name,
                write.status,
                write.delivered,
                pending,
                count,
                now,
                now,
                write.lease_owner,
                write.lease_expires,
                write.wake_at,
                waits,
                due,
            ),
        ).rowcount
        if created != 1:
            raise conflict_error(run_id, 0, None)
        connection.execute(_CREATE_STATE, (run_id, write.state))
        version = 1
    else:
        changed = connection.execute(
            _UPDATE,
            (
                write.delivered,
                pending,
                count,
                now,
                write.lease_owner,
                write.lease_expires,
                write.wake_at,
                waits,
                run_id,
                expected_version,
            ),
        ).rowcount
        if changed != 1:
            raise _conflict(connection, run_id, expected_version)
        for taken in write.taken:
            connection.execute(_TAKE, (run_id, taken))
        if write.waits and write.status in ("paused", "sleeping"):
            connection.execute(_WAKE_ON_SAVE, (run_id,))
        connection.execute(
            _UPDATE_INDEXED,
            {"task_name": write.task_name, "status": write.status, "run_id": run_id},
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
    """Remove the run, its entries, partials and messages (nothing to do if not stored)."""
    connection.execute("DELETE FROM tiny_tasks_entries WHERE run_id = ?", (run_id,))
    connection.execute("DELETE FROM tiny_tasks_partials WHERE run_id = ?", (run_id,))
    connection.execute("DELETE FROM tiny_tasks_states WHERE run_id = ?", (run_id,))
    connection.execute("DELETE FROM tiny_tasks_messages WHERE run_id = ?", (run_id,))
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
    (task_name, status, version, delivered, pending, state, created_at, updated_at) = row[:8]
    lease_owner, lease_expires, wake_at, cancel_requested, waits = row[8:]
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
        lease_owner,
        lease_expires,
        wake_at,
        bool(cancel_requested),
        _decode_pending(waits),
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
    return [_info(row) for row in rows]


def _info(row: tuple[Any, ...]) -> RunInfo:
    run_id, name, status, version, delivered, pending, created_at, updated_at = row[:8]
    lease_owner, lease_expires, wake_at, cancel_requested = row[8:12]
    return RunInfo(
        run_id,
        name,
        cast(RunStatus, status),
        version,
        delivered,
        _decode_pending(pending),
        created_at,
        updated_at,
        lease_owner,
        lease_expires,
        wake_at,
        bool(cancel_requested),
    )


# The runtime protocol (`RuntimeSaver`): every write here runs in the thread's
# `BEGIN IMMEDIATE` transaction, which holds the database's write lock, so a claim's
# SELECT and UPDATE are one atomic step across processes.

_CLAIM_SELECT = (
    "SELECT run_id FROM tiny_tasks_runs INDEXED BY tiny_tasks_runs_due"
    " WHERE due_at <= ? AND task_name IN (SELECT value FROM json_each(?))"
    " ORDER BY due_at, run_id LIMIT ?"
)
_CLAIM_UPDATE = (
    "UPDATE tiny_tasks_runs SET lease_owner = ?1, lease_expires = ?2, version = version + 1,"
    f" due_at = {_claimable_sql('status', '?2', 'wake_at', 'updated_at')}"
    f" WHERE run_id IN (SELECT value FROM json_each(?3)) RETURNING {_INFO_COLUMNS}"
)


def claim_runs(
    connection: sqlite3.Connection,
    owner: str,
    task_names: list[str],
    now: float,
    lease_expires: float,
    limit: int,
) -> list[RunInfo]:
    """Lease up to `limit` claimable runs of `task_names` to `owner`, earliest first."""
    if not task_names or limit <= 0:
        return []
    names = json.dumps(task_names, ensure_ascii=False)
    chosen = [run_id for (run_id,) in connection.execute(_CLAIM_SELECT, (now, names, limit))]
    if not chosen:
        return []
    ids = json.dumps(chosen, ensure_ascii=False)
    claimed = {
        row[0]: _info(row)
        for row in connection.execute(_CLAIM_UPDATE, (owner, lease_expires, ids)).fetchall()
    }
    return [claimed[run_id] for run_id in chosen]


_RENEW = (
    "UPDATE tiny_tasks_runs SET lease_expires = ?1,"
    f" due_at = {_claimable_sql('status', '?1', 'wake_at', 'updated_at')}"
    " WHERE run_id = ?2 AND lease_owner = ?3 RETURNING cancel_requested"
)
_RELEASE = (
    "UPDATE tiny_tasks_runs SET lease_owner = NULL, lease_expires = NULL,"
    f" due_at = {_claimable_sql('status', 'NULL', 'wake_at', 'updated_at')}"
    " WHERE run_id = ? AND lease_owner = ?"
)


def renew_lease(
    connection: sqlite3.Connection, run_id: str, owner: str, lease_expires: float
) -> Lease:
    """Extend `owner`'s lease (no version bump); `Lease(held=False)` if it has none."""
    row = connection.execute(_RENEW, (lease_expires, run_id, owner)).fetchone()
    return Lease(held=False) if row is None else Lease(True, bool(row[0]))


def release_lease(connection: sqlite3.Connection, run_id: str, owner: str) -> None:
    """Clear `owner`'s lease on the run, if it holds it (no version bump)."""
    connection.execute(_RELEASE, (run_id, owner))


_CANCEL = (
    "UPDATE tiny_tasks_runs SET cancel_requested = 1, version = version + 1,"
    " updated_at = :now, status = :status, lease_owner = :owner, lease_expires = :expires,"
    " wake_at = :wake, waits = :waits, due_at = :due WHERE run_id = :run_id"
)


def request_cancel(connection: sqlite3.Connection, run_id: str, now: float) -> RunInfo | None:
    """Set the run's cancel request and bump its version (a queued run is cancelled)."""
    row = connection.execute(
        f"SELECT {_INFO_COLUMNS}, waits FROM tiny_tasks_runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        return None
    info = _info(row)
    if info.status in FINISHED:
        return info
    status, owner, expires, wake, waits = (
        info.status,
        info.lease_owner,
        info.lease_expires,
        info.wake_at,
        row[12],
    )
    if status == "queued":
        status, owner, expires, wake, waits = "cancelled", None, None, None, "[]"
    connection.execute(
        _CANCEL,
        {
            "now": now,
            "status": status,
            "owner": owner,
            "expires": expires,
            "wake": wake,
            "waits": waits,
            "due": claimable_at(status, expires, wake, True, now),
            "run_id": run_id,
        },
    )
    return RunInfo(
        run_id,
        info.task_name,
        status,
        info.version + 1,
        info.delivered,
        info.pending,
        info.created_at,
        now,
        owner,
        expires,
        wake,
        True,
    )


_SEND = "INSERT INTO tiny_tasks_messages (run_id, topic, data, created_at) VALUES (?, ?, ?, ?)"
_WAKE_ON_SEND = (
    "UPDATE tiny_tasks_runs SET wake_at = ?1,"
    f" due_at = {_claimable_sql('status', 'lease_expires', '?1', 'updated_at')}"
    " WHERE run_id = ?2 AND status IN ('paused', 'sleeping') AND (wake_at IS NULL OR"
    " wake_at > ?1) AND EXISTS (SELECT 1 FROM json_each(waits) WHERE value = ?3)"
)


def send_message(
    connection: sqlite3.Connection, run_id: str, topic: str, data: bytes, now: float
) -> int | None:
    """Store a message for the run and wake it if it waits on `topic`; `None` (storing
    nothing) if the run is missing or finished."""
    row = connection.execute(
        "SELECT status FROM tiny_tasks_runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None or row[0] in FINISHED:
        return None
    message_id = connection.execute(_SEND, (run_id, topic, data, now)).lastrowid
    connection.execute(_WAKE_ON_SEND, (now, run_id, topic))
    return message_id


_NEXT_MESSAGE = (
    "SELECT id, data FROM tiny_tasks_messages WHERE run_id = ? AND topic = ? AND taken = 0"
    " ORDER BY id LIMIT 1"
)


def next_message(
    connection: sqlite3.Connection, run_id: str, topic: str
) -> tuple[int, bytes] | None:
    """The oldest untaken message of `topic` for the run, as `(id, data)`."""
    row = connection.execute(_NEXT_MESSAGE, (run_id, topic)).fetchone()
    return None if row is None else (row[0], row[1])


_PRUNABLE = (
    "SELECT run_id FROM tiny_tasks_runs WHERE status IN ('done', 'failed', 'cancelled')"
    " AND updated_at < ? ORDER BY updated_at, run_id LIMIT ?"
)


def prune(connection: sqlite3.Connection, finished_before: float, limit: int | None) -> int:
    """Delete up to `limit` finished runs last updated before `finished_before`."""
    old = connection.execute(
        _PRUNABLE, (finished_before, -1 if limit is None else max(limit, 0))
    ).fetchall()
    for (run_id,) in old:
        delete(connection, run_id)
    return len(old)


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
