"""`PostgresSaver`: checkpoints in PostgreSQL, for many processes on many machines.

Needs the `postgres` extra (`pip install 'tiny-tasks[postgres]'`: psycopg 3 and
psycopg-pool); they are imported when a saver is created, never by
`import tiny_tasks.savers`. Every method is one statement, so one round trip on an
autocommit connection: a save updates the run and appends its entries in one statement
with data-modifying CTEs, and `mark_delivered` is a single UPDATE. Compare-and-swap is
`UPDATE ... WHERE version = %s` (or `INSERT ... ON CONFLICT DO NOTHING` to create) and
a look at the row count. Timestamps come from the caller (`base.stamp()`, the runtime's
clock), as every time the runtime compares with them (leases, wake times, claims).

The runtime protocol (`RuntimeSaver`): a claim is one statement, `SELECT ... FOR UPDATE
SKIP LOCKED` over the partial index of claimable runs feeding an UPDATE, so workers on
many machines never take the same run and never wait for each other. Submitting a
queued run, sending a message and requesting a cancel send `NOTIFY tiny_tasks_due`, a
hint a worker can wait on (`wait_for_due`); polling stays the correctness path.

Transient failures are retried with jittered backoff (`_retry`) on a fresh connection:
a lost connection (the server restarted, `pg_terminate_backend`, a network reset) and
a serialization failure or deadlock. A write whose connection was lost may have
committed before the answer was lost; the retry is then refused by the compare-and-swap,
and the saver tells "my earlier attempt applied" (the run is at the next version and
holds exactly this write's fields and, last, its entries) from a real conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from ..errors import RunConflictError, SaverConnectionError, TinyTasksError
from ._conflict import conflict_error
from ._postgres_schema import migrate
from ._retry import Backoff
from ._scan import Cursor, check_scan, postgres_scan
from .base import (
    Checkpoint,
    CheckpointWrite,
    Lease,
    RunInfo,
    RunStatus,
    check_partials_limit,
    claimable_at,
    stamp,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresSaver"]

T = TypeVar("T")

DURABILITY = ("full", "process")
"""The `durability` levels of a `PostgresSaver`."""

CHANNEL = "tiny_tasks_due"
"""The channel of the `NOTIFY` sent when a run may have become due (see `wait_for_due`)."""

_MARK_DELIVERED = (
    "UPDATE tiny_tasks_runs SET delivered = %s, version = version + 1, updated_at = %s"
    " WHERE run_id = %s AND version = %s"
)
# One statement: the compare-and-swap of `mark_delivered`, then, only if it changed the
# run, the log cut after `seq` and the partial stored at `seq` (replacing a stale one).
_APPEND_PARTIAL = (
    "WITH changed AS (UPDATE tiny_tasks_runs SET delivered = %(delivered)s, version ="
    " version + 1, updated_at = %(now)s WHERE run_id = %(run_id)s AND version = %(expected)s"
    " RETURNING run_id), cut AS (DELETE FROM tiny_tasks_partials WHERE run_id ="
    " (SELECT run_id FROM changed) AND seq > %(seq)s)"
    " INSERT INTO tiny_tasks_partials (run_id, seq, data)"
    " SELECT run_id, %(seq)s, %(data)s FROM changed"
    " ON CONFLICT (run_id, seq) DO UPDATE SET data = EXCLUDED.data"
)
# Rows at or after `delivered` are stale: a later write cut the log there.
_LOAD_PARTIALS = (
    "SELECT seq, data FROM tiny_tasks_partials WHERE run_id = %(run_id)s AND seq > %(after)s"
    " AND seq < (SELECT delivered FROM tiny_tasks_runs WHERE run_id = %(run_id)s)"
    " ORDER BY seq LIMIT %(limit)s"
)
_APPEND_FROM = (
    " appended AS (INSERT INTO tiny_tasks_entries (run_id, seq, data)"
    " SELECT changed.run_id, changed.entry_count - %(count)s + entry.seq - 1, entry.data"
    " FROM changed, unnest(%(entries)s::bytea[]) WITH ORDINALITY AS entry (data, seq))"
    " SELECT count(*) FROM changed"
)
_CREATE = (
    "WITH changed AS (INSERT INTO tiny_tasks_runs (run_id, task_name, status, version,"
    " delivered, pending, state, entry_count, created_at, updated_at, lease_owner,"
    " lease_expires, wake_at, waits, due_at) VALUES (%(run_id)s, %(task_name)s, %(status)s,"
    " 1, %(delivered)s, %(pending)s, %(state)s, %(count)s, %(now)s, %(now)s,"
    " %(lease_owner)s, %(lease_expires)s, %(wake_at)s, %(waits)s, %(due_at)s)"
    " ON CONFLICT (run_id) DO NOTHING RETURNING run_id, entry_count)," + _APPEND_FROM
)
# A queued run is due at once: tell the workers that listen.
_CREATE_QUEUED = _CREATE.replace(
    " SELECT count(*) FROM changed",
    f" SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', run_id) FROM changed) AS notified",
)


def _claimable_sql(
    status: str, lease: str, wake: str, updated: str, cancel: str, due: str = "due_at"
) -> str:
    """`base.claimable_at` in SQL over the given expressions (`due_at`: the row's own).

    A running run without a lease keeps the earliest time it was claimable at
    (`LEAST`), so its writes (each with a new `updated_at`) leave `due_at` unchanged and
    stay HOT updates. GREATEST and LEAST skip NULLs, hence the explicit cases.
    """
    return (
        f"CASE WHEN {status} = 'queued' THEN GREATEST({updated}, {lease})"
        f" WHEN {status} = 'running' THEN COALESCE({lease}, LEAST({updated}, {due}))"
        f" WHEN {status} IN ('paused', 'sleeping') THEN CASE"
        f" WHEN {cancel} THEN GREATEST({updated}, {lease})"
        f" WHEN {wake} IS NULL THEN NULL ELSE GREATEST({wake}, {lease}) END"
        " ELSE NULL END"
    )


_WRITE_CLAIMABLE = _claimable_sql(
    "%(status)s",
    "%(lease_expires)s::float8",
    "%(wake_at)s::float8",
    "%(now)s::float8",
    "cancel_requested",
)
_UPDATE = (
    "WITH changed AS (UPDATE tiny_tasks_runs SET task_name = %(task_name)s, status ="
    " %(status)s, version = version + 1, delivered = %(delivered)s, pending = %(pending)s,"
    " state = %(state)s, entry_count = entry_count + %(count)s, updated_at = %(now)s,"
    " lease_owner = %(lease_owner)s, lease_expires = %(lease_expires)s, wake_at ="
    f" %(wake_at)s, waits = %(waits)s, due_at = {_WRITE_CLAIMABLE}"
    " WHERE run_id = %(run_id)s AND version = %(expected)s"
    " RETURNING run_id, entry_count), cut AS (DELETE FROM tiny_tasks_partials WHERE run_id ="
    " (SELECT run_id FROM changed) AND seq >= %(delivered)s)," + _APPEND_FROM
)
# A write that consumes messages marks them taken in the same statement.
_UPDATE_TAKING = _UPDATE.replace(
    " appended AS (",
    " taken AS (UPDATE tiny_tasks_messages SET taken = true WHERE run_id = (SELECT run_id"
    " FROM changed) AND id = ANY(%(taken)s::bigint[])), appended AS (",
)
# The second statement of a write that starts waiting on messages, in its transaction
# (after the first took the run's row lock, with a snapshot taken after it): a message
# sent before that lock is seen here, and one sent after finds the run waiting.
_WAKE_ON_SAVE = (
    "UPDATE tiny_tasks_runs SET wake_at = updated_at, due_at = "
    + _claimable_sql("status", "lease_expires", "updated_at", "updated_at", "cancel_requested")
    + " WHERE run_id = %(run_id)s AND status IN ('paused', 'sleeping')"
    " AND (wake_at IS NULL OR wake_at > updated_at)"
    " AND EXISTS (SELECT 1 FROM tiny_tasks_messages AS message WHERE message.run_id ="
    " %(run_id)s AND NOT message.taken AND message.topic = ANY(tiny_tasks_runs.waits))"
)
_VERSION = "SELECT version FROM tiny_tasks_runs WHERE run_id = %s"
_MARKED = "SELECT version, delivered FROM tiny_tasks_runs WHERE run_id = %s"
_DELETE = (
    "WITH entries AS (DELETE FROM tiny_tasks_entries WHERE run_id = %(run_id)s),"
    " partials AS (DELETE FROM tiny_tasks_partials WHERE run_id = %(run_id)s),"
    " messages AS (DELETE FROM tiny_tasks_messages WHERE run_id = %(run_id)s)"
    " DELETE FROM tiny_tasks_runs WHERE run_id = %(run_id)s"
)
_LOAD = (
    "SELECT task_name, status, version, delivered, pending, state, created_at, updated_at,"
    " lease_owner, lease_expires, wake_at, cancel_requested, waits,"
    " ARRAY(SELECT data FROM tiny_tasks_entries AS entry WHERE entry.run_id = run.run_id"
    " ORDER BY seq) FROM tiny_tasks_runs AS run WHERE run_id = %s"
)
_INFO_COLUMNS = (
    "run_id, task_name, status, version, delivered, pending, created_at, updated_at,"
    " lease_owner, lease_expires, wake_at, cancel_requested"
)
_LIST = (
    f"SELECT {_INFO_COLUMNS}"
    " FROM tiny_tasks_runs{where} ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s"
)
_INFO = f"SELECT {_INFO_COLUMNS} FROM tiny_tasks_runs WHERE run_id = %s"
# One statement: lock the earliest claimable runs no other claim holds (SKIP LOCKED:
# concurrent claims take different runs without waiting), then lease them.
_CLAIM = (
    "WITH due AS (SELECT run_id, due_at FROM tiny_tasks_runs WHERE due_at <= %(now)s"
    " AND task_name = ANY(%(names)s::text[]) ORDER BY due_at, run_id LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED) UPDATE tiny_tasks_runs AS run SET lease_owner = %(owner)s,"
    " lease_expires = %(expires)s, version = version + 1, due_at = "
    + _claimable_sql(
        "run.status",
        "%(expires)s::float8",
        "run.wake_at",
        "run.updated_at",
        "run.cancel_requested",
        "run.due_at",
    )
    + " FROM due WHERE run.run_id = due.run_id RETURNING due.due_at, "
    + ", ".join(f"run.{column.strip()}" for column in _INFO_COLUMNS.split(","))
)
_RENEW = (
    "UPDATE tiny_tasks_runs SET lease_expires = %(expires)s, due_at = "
    + _claimable_sql("status", "%(expires)s::float8", "wake_at", "updated_at", "cancel_requested")
    + " WHERE run_id = %(run_id)s AND lease_owner = %(owner)s RETURNING cancel_requested"
)
_RELEASE = (
    "UPDATE tiny_tasks_runs SET lease_owner = NULL, lease_expires = NULL, due_at = "
    + _claimable_sql("status", "NULL::float8", "wake_at", "updated_at", "cancel_requested")
    + " WHERE run_id = %(run_id)s AND lease_owner = %(owner)s"
)
_QUEUED = "status = 'queued'"
_CANCEL = (
    "UPDATE tiny_tasks_runs SET cancel_requested = true, version = version + 1,"
    f" updated_at = %(now)s, due_at = CASE WHEN {_QUEUED} THEN NULL ELSE "
    + _claimable_sql("status", "lease_expires", "wake_at", "%(now)s::float8", "true")
    + f" END, status = CASE WHEN {_QUEUED} THEN 'cancelled' ELSE status END,"
    f" lease_owner = CASE WHEN {_QUEUED} THEN NULL ELSE lease_owner END,"
    f" lease_expires = CASE WHEN {_QUEUED} THEN NULL ELSE lease_expires END,"
    f" wake_at = CASE WHEN {_QUEUED} THEN NULL ELSE wake_at END,"
    f" waits = CASE WHEN {_QUEUED} THEN '{{}}' ELSE waits END"
    " WHERE run_id = %(run_id)s AND status NOT IN ('done', 'failed', 'cancelled')"
    f" RETURNING {_INFO_COLUMNS}, pg_notify('{CHANNEL}', run_id)::text"
)
# Lock the run first: a write making it wait either committed before (the wake below
# sees it waiting) or checks for this message after (see _WAKE_ON_SAVE).
_SEND = (
    "WITH run AS (SELECT run_id FROM tiny_tasks_runs WHERE run_id = %(run_id)s"
    " AND status NOT IN ('done', 'failed', 'cancelled') FOR UPDATE),"
    " message AS (INSERT INTO tiny_tasks_messages (run_id, topic, data, created_at)"
    " SELECT run_id, %(topic)s, %(data)s, %(now)s FROM run RETURNING id),"
    " woken AS (UPDATE tiny_tasks_runs AS waiting SET wake_at = %(now)s, due_at = "
    + _claimable_sql(
        "waiting.status",
        "waiting.lease_expires",
        "%(now)s::float8",
        "waiting.updated_at",
        "waiting.cancel_requested",
        "waiting.due_at",
    )
    + " FROM run WHERE waiting.run_id = run.run_id AND waiting.status IN ('paused', 'sleeping')"
    " AND %(topic)s = ANY(waiting.waits) AND (waiting.wake_at IS NULL"
    " OR waiting.wake_at > %(now)s))"
    f" SELECT id, pg_notify('{CHANNEL}', %(run_id)s)::text FROM message"
)
_NEXT_MESSAGE = (
    "SELECT id, data FROM tiny_tasks_messages WHERE run_id = %s AND topic = %s AND NOT taken"
    " ORDER BY id LIMIT 1"
)
_PRUNE = (
    "WITH old AS (SELECT run_id FROM tiny_tasks_runs WHERE status IN ('done', 'failed',"
    " 'cancelled') AND updated_at < %(before)s ORDER BY updated_at, run_id LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED),"
    " entries AS (DELETE FROM tiny_tasks_entries WHERE run_id IN (SELECT run_id FROM old)),"
    " partials AS (DELETE FROM tiny_tasks_partials WHERE run_id IN (SELECT run_id FROM old)),"
    " messages AS (DELETE FROM tiny_tasks_messages WHERE run_id IN (SELECT run_id FROM old))"
    " DELETE FROM tiny_tasks_runs WHERE run_id IN (SELECT run_id FROM old)"
)


class PostgresSaver:
    """Stores checkpoints in PostgreSQL; call `await saver.setup()` once before use.

    `conninfo` is a libpq connection string (the saver then owns a pool of up to
    `max_size` autocommit connections, opened on first use and closed by `close()`)
    or an `AsyncConnectionPool` you opened and will close yourself (autocommit
    connections save a round trip per call). `serde` is the codec the engine uses for
    this saver's values (`None`: the default).

    `retry_attempts` (default 4) and `retry_max_delay` (default 1.0 s): a call that
    fails because its connection was lost (`OperationalError` with no SQLSTATE or
    class 08, or a server shutdown, 57P01-57P03) or with a serialization failure or
    deadlock (40001, 40P01) is retried this many times on a fresh connection, after a
    random delay of up to 0.05 s, then 0.1 s, 0.2 s... (at most `retry_max_delay`).
    `PoolTimeout` is not retried: the pool has already spent its own `timeout`
    trying to connect.

    `durability`: what a write has survived once the call returned.

    * `"full"` (default): the server flushed its WAL to disk before answering
      (`synchronous_commit` as the server sets it, on by default): the write survives
      the application being killed and the server crashing or losing power.
    * `"process"`: the saver's connections run with `synchronous_commit = off`, so the
      server answers before its WAL reaches disk and flushes it within a moment
      (`wal_writer_delay`, 200 ms by default, at most three times that). A write
      survives the application process being killed at any moment, as with
      `SqliteSaver`'s default; a crash of the server or its machine can lose the last
      writes before it (the database stays consistent: it never holds half a write,
      and compare-and-swap still refuses every stale write). On a fast disk this saves
      little; where an fsync is slow it saves most of a write's cost. Needs a connection
      string (with a pool you pass in, set `synchronous_commit` on its connections).

    A saver's pool belongs to the event loop that opened it: use one saver per loop.

    The first call opens the pool: it connects once first, waiting at most
    `connect_timeout` seconds (unless the connection string sets its own), and raises
    `SaverConnectionError` with the server's own error (a wrong database, host, socket,
    user or password) naming the target without its password, instead of letting the
    pool retry in the background. A later call tries again.

    Raises `ImportError` naming the extra to install when psycopg is missing,
    `ValueError` for an unknown `durability` (or `"process"` with a pool passed in),
    a negative `retry_attempts` or `retry_max_delay`, a connection
    string that cannot be parsed or a `connect_timeout` that is not a whole number of
    seconds >= 1.
    """

    def __init__(
        self,
        conninfo: str | AsyncConnectionPool[Any],
        *,
        max_size: int = 10,
        serde: Any = None,
        retry_attempts: int = 4,
        retry_max_delay: float = 1.0,
        connect_timeout: int = 5,
        durability: str = "full",
    ) -> None:
        try:
            from psycopg.conninfo import conninfo_to_dict
            from psycopg_pool import AsyncConnectionPool
        except ImportError as error:
            raise ImportError(
                "PostgresSaver needs psycopg 3 and psycopg-pool; install them with "
                "pip install 'tiny-tasks[postgres]'"
            ) from error
        self.serde = serde
        """The codec the engine uses for this saver's values (`None`: the default)."""
        self._backoff = Backoff(retry_attempts, retry_max_delay)
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int):
            raise ValueError(f"connect_timeout must be an int of seconds, not {connect_timeout!r}")
        if connect_timeout < 1:
            raise ValueError(f"connect_timeout must be >= 1 second, not {connect_timeout}")
        self._connect_timeout = connect_timeout
        if durability not in DURABILITY:
            raise ValueError(
                f"durability must be one of {', '.join(map(repr, DURABILITY))}, not {durability!r}"
            )
        self.durability = durability
        """`"full"` or `"process"`: what a write survives once it returned (see the class)."""
        if durability == "process" and not isinstance(conninfo, str):
            raise ValueError(
                "durability='process' needs a connection string: with a pool you pass in, "
                "open its connections with synchronous_commit off yourself (for example "
                "kwargs={'autocommit': True, 'options': '-c synchronous_commit=off'})"
            )
        self._conninfo = conninfo if isinstance(conninfo, str) else ""
        self._target = ""
        self._owns_pool = isinstance(conninfo, str)
        if isinstance(conninfo, str):
            try:
                params = conninfo_to_dict(conninfo)
            except Exception as error:  # psycopg.ProgrammingError
                raise ValueError(f"invalid PostgreSQL connection string: {error}") from None
            self._target = _describe_target(params)
            kwargs: dict[str, Any] = {"autocommit": True}
            if durability == "process":
                # Added to the connection's own options, which a keyword would replace.
                options = params.get("options") or ""
                kwargs["options"] = f"{options} -c synchronous_commit=off".strip()
            self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=max_size,
                open=False,
                kwargs=kwargs,
                name="tiny-tasks",
            )
        else:
            self._pool = conninfo
        self._opened = not self._owns_pool
        self._opening = asyncio.Lock()
        self._closed = False
        self._listening: _Listener | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The connection pool the saver uses."""
        return self._pool

    async def setup(self) -> None:
        """Create the tables, or migrate them to this version's schema.

        Idempotent and safe to call from several processes at once (an advisory lock
        serialises them). Raises `TinyTasksError` if the database has a newer schema.
        """
        backoff = self._backoff
        for retry in range(backoff.attempts + 1):
            try:
                async with self._connection() as connection:
                    await migrate(connection)
                return
            except Exception as error:
                if retry == backoff.attempts or _transient(error) is None:
                    raise
                await self._before_retry(retry + 1, "setup", error)

    async def load(self, run_id: str) -> Checkpoint | None:
        """The stored checkpoint of `run_id` with all its entries, or `None`."""
        row, _ = await self._execute("load", _LOAD, (run_id,), _fetch_one)
        if row is None:
            return None
        task_name, status, version, delivered, pending, state, created, updated = row[:8]
        lease_owner, lease_expires, wake_at, cancel_requested, waits, entries = row[8:]
        return Checkpoint(
            run_id,
            task_name,
            status,
            version,
            delivered,
            tuple(pending),
            bytes(state),
            tuple(bytes(entry) for entry in entries),
            created,
            updated,
            lease_owner,
            lease_expires,
            wake_at,
            cancel_requested,
            tuple(waits),
        )

    async def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        """Apply `write` if the run is at `expected_version`; return the new version.

        `expected_version=None` creates the run. Raises `RunConflictError` if the run
        exists (when creating) or is not at `expected_version`.
        """
        now = stamp()
        parameters = {
            "run_id": write.run_id,
            "task_name": write.task_name,
            "status": write.status,
            "delivered": write.delivered,
            "pending": list(write.pending),
            "state": write.state,
            "count": len(write.entries),
            "entries": list(write.entries),
            "expected": expected_version,
            "now": now,
            "lease_owner": write.lease_owner,
            "lease_expires": write.lease_expires,
            "wake_at": write.wake_at,
            "waits": list(write.waits),
            "taken": list(write.taken),
        }
        then = None
        if expected_version is None:
            # A new run has no messages (delete forgot them) and no cancel request.
            due = claimable_at(write.status, write.lease_expires, write.wake_at, False, now)
            parameters["due_at"] = due
            query = _CREATE_QUEUED if write.status == "queued" else _CREATE
        else:
            query = _UPDATE_TAKING if write.taken else _UPDATE
            if write.waits and write.status in ("paused", "sleeping"):
                then = _WAKE_ON_SAVE
        row, uncertain = await self._execute("save", query, parameters, _fetch_one, then)
        if row is None or row[0] != 1:
            if uncertain and await self._saved_before(write, expected_version):
                return 1 if expected_version is None else expected_version + 1
            raise await self._conflict(write.run_id, expected_version)
        return 1 if expected_version is None else expected_version + 1

    async def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        """Set the delivered count and bump the version: one UPDATE, one round trip.

        Raises `RunConflictError` if the run is missing or not at `expected_version`.
        """
        parameters = (delivered, stamp(), run_id, expected_version)
        changed, uncertain = await self._execute(
            "mark_delivered", _MARK_DELIVERED, parameters, _row_count
        )
        if changed != 1:
            if uncertain:
                row, _ = await self._execute("load", _MARKED, (run_id,), _fetch_one)
                if row is not None and tuple(row) == (expected_version + 1, delivered):
                    return expected_version + 1
            raise await self._conflict(run_id, expected_version)
        return expected_version + 1

    async def append_partial(
        self, run_id: str, seq: int, data: bytes, expected_version: int
    ) -> int:
        """Store partial `seq` of the run's stream and set `delivered` to `seq + 1`:
        one statement, one round trip.

        Raises `RunConflictError` if the run is missing or not at `expected_version`.
        """
        parameters = {
            "run_id": run_id,
            "delivered": seq + 1,
            "expected": expected_version,
            "seq": seq,
            "data": data,
            "now": stamp(),
        }
        changed, uncertain = await self._execute(
            "append_partial", _APPEND_PARTIAL, parameters, _row_count
        )
        if changed != 1:
            if uncertain:  # one statement: if the run moved as it would have, it was applied
                row, _ = await self._execute("load", _MARKED, (run_id,), _fetch_one)
                if row is not None and tuple(row) == (expected_version + 1, seq + 1):
                    return expected_version + 1
            raise await self._conflict(run_id, expected_version)
        return expected_version + 1

    async def load_partials(
        self, run_id: str, after: int = -1, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """The stored partials with `after < seq < delivered`, in order, at most `limit`.

        `[]` for a missing run. Raises `ValueError` for a negative `limit`.
        """
        check_partials_limit(limit)
        parameters = {"run_id": run_id, "after": after, "limit": limit}
        rows, _ = await self._execute("load_partials", _LOAD_PARTIALS, parameters, _fetch_all)
        return [(seq, bytes(data)) for seq, data in rows]

    async def delete(self, run_id: str) -> None:
        """Forget `run_id`, its entries, partials and messages (no error if not stored)."""
        await self._execute("delete", _DELETE, {"run_id": run_id}, _row_count)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        """Stored runs, newest first (ties by run id), filtered by status and task name.

        Raises `ValueError` for a negative `limit` or `offset`.
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, not {limit} and {offset}")
        conditions: list[str] = []
        parameters: list[Any] = []
        if status is not None:
            conditions.append("status = %s")
            parameters.append(status)
        if task_name is not None:
            conditions.append("task_name = %s")
            parameters.append(task_name)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        query, values = _LIST.format(where=where), (*parameters, limit, offset)
        rows, _ = await self._execute("list_runs", query, values, _fetch_all)
        return [_info(row) for row in rows]

    async def claim_runs(
        self,
        owner: str,
        task_names: Sequence[str],
        now: float,
        lease_expires: float,
        limit: int,
    ) -> list[RunInfo]:
        """Lease up to `limit` claimable runs of `task_names` to `owner`, earliest first.

        One statement: `FOR UPDATE SKIP LOCKED` over the partial index of claimable
        runs, then an UPDATE of those it locked, so concurrent claims (on any machine)
        take different runs without waiting for each other. See `RuntimeSaver`.
        """
        if not task_names or limit <= 0:
            return []
        parameters = {
            "owner": owner,
            "names": list(task_names),
            "now": now,
            "expires": lease_expires,
            "limit": limit,
        }
        rows, _ = await self._execute("claim_runs", _CLAIM, parameters, _fetch_all)
        rows.sort(key=lambda row: (row[0], row[1]))
        return [_info(row[1:]) for row in rows]

    async def renew_lease(self, run_id: str, owner: str, lease_expires: float) -> Lease:
        """Extend `owner`'s lease on `run_id` (see `RuntimeSaver`)."""
        parameters = {"run_id": run_id, "owner": owner, "expires": lease_expires}
        row, _ = await self._execute("renew_lease", _RENEW, parameters, _fetch_one)
        return Lease(held=False) if row is None else Lease(True, bool(row[0]))

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on `run_id` (see `RuntimeSaver`)."""
        parameters = {"run_id": run_id, "owner": owner}
        await self._execute("release_lease", _RELEASE, parameters, _row_count)

    async def request_cancel(self, run_id: str, now: float) -> RunInfo | None:
        """Ask for `run_id` to be cancelled, and notify the workers (see `RuntimeSaver`)."""
        parameters = {"run_id": run_id, "now": now}
        row, _ = await self._execute("request_cancel", _CANCEL, parameters, _fetch_one)
        if row is None:  # missing or finished
            row, _ = await self._execute("request_cancel", _INFO, (run_id,), _fetch_one)
            return None if row is None else _info(row)
        return _info(row[:12])

    async def send_message(self, run_id: str, topic: str, data: bytes, now: float) -> int | None:
        """Store a message for `run_id` and notify the workers; `None` if the run is
        missing or finished (see `RuntimeSaver`)."""
        parameters = {"run_id": run_id, "topic": topic, "data": data, "now": now}
        row, _ = await self._execute("send_message", _SEND, parameters, _fetch_one)
        return None if row is None else int(row[0])

    async def next_message(self, run_id: str, topic: str) -> tuple[int, bytes] | None:
        """The oldest untaken message of `topic` for `run_id`, as `(id, data)`."""
        row, _ = await self._execute("next_message", _NEXT_MESSAGE, (run_id, topic), _fetch_one)
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def prune(self, finished_before: float, limit: int | None = None) -> int:
        """Delete finished runs last updated before `finished_before`, with their
        entries, partials and messages; return how many (see `RuntimeSaver`)."""
        parameters = {"before": finished_before, "limit": None if limit is None else max(limit, 0)}
        count, _ = await self._execute("prune", _PRUNE, parameters, _row_count)
        return count

    async def wait_for_due(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a hint that a run may have become due.

        A worker's idle wait between two polls: it returns `True` as soon as a
        `NOTIFY tiny_tasks_due` arrives (sent when a run is submitted, sent a message
        or asked to cancel), `False` when the timeout passes. The saver listens on a
        connection of its own, opened on the first call and kept, so a notification
        sent between two waits is not lost. Where LISTEN is not available (no
        connection, PgBouncer in transaction mode, missing privileges) it only sleeps
        and returns `False`: polling remains the correctness path. The timeout runs on
        the runtime's clock (`current_clock()`).
        """
        from .._clock import current_clock

        listener = await self._listener()
        sleep = asyncio.ensure_future(current_clock().sleep(timeout))
        if listener is None:
            await sleep
            return False
        heard = asyncio.ensure_future(listener.wait())
        try:
            await asyncio.wait((sleep, heard), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            heard.cancel()
        return heard.done() and not heard.cancelled() and heard.exception() is None

    async def _listener(self) -> _Listener | None:
        if self._listening is None:
            self._listening = await _Listener.open(self._conninfo, self._pool)
        return self._listening if self._listening.ok else None

    async def scan_runs(
        self,
        *,
        status: RunStatus | None = None,
        task_name: str | None = None,
        after: Cursor | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[Checkpoint]:
        """Stored runs with their state (without entries), keyset-paginated, in one
        indexed query; see `Checkpointer`. Raises `ValueError` for a negative `limit`."""
        check_scan(limit, after)

        async def execute(query: str, parameters: Any) -> list[tuple[Any, ...]]:
            rows, _ = await self._execute("scan_runs", query, parameters, _fetch_all)
            return rows

        return await postgres_scan(execute, status, task_name, after, limit, oldest_first)

    async def close(self) -> None:
        """Close the pool if the saver created it (a pool you passed in stays open)."""
        if self._closed:
            return
        self._closed = True
        if self._listening is not None:
            await self._listening.close()
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self) -> PostgresSaver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return f"PostgresSaver(pool={self._pool.name!r}{state})"

    def _connection(self) -> Any:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; create a new PostgresSaver")
        if not self._opened:
            return _OpeningConnection(self)
        return self._pool.connection()

    async def _execute(
        self,
        operation: str,
        query: str,
        parameters: Any,
        outcome: Callable[[AsyncCursor[Any]], Awaitable[T]],
        then: str | None = None,
    ) -> tuple[T, bool]:
        """Run one statement, retrying transient failures on a fresh connection.

        Returns `outcome(cursor)` and whether an earlier attempt may have been applied
        (its connection was lost while the statement was in flight). With `then`, runs
        that statement (same parameters) after it, in one transaction.
        """
        uncertain = False
        backoff = self._backoff
        for retry in range(backoff.attempts + 1):
            try:
                async with self._connection() as connection:
                    try:
                        if then is None:
                            cursor = await connection.execute(query, parameters)
                            return await outcome(cursor), uncertain
                        async with connection.transaction():
                            cursor = await connection.execute(query, parameters)
                            result = await outcome(cursor)
                            await connection.execute(then, parameters)
                        return result, uncertain
                    except Exception as error:
                        _reraise(error)
            except Exception as error:
                kind = _transient(error)
                if retry == backoff.attempts or kind is None:
                    raise
                uncertain = uncertain or kind == "connection"
                await self._before_retry(retry + 1, operation, error)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _before_retry(self, retry: int, operation: str, error: Exception) -> None:
        if _transient(error) == "connection" and self._opened:
            # Connections the server dropped are still idle in the pool: discard them
            # now rather than fail one retry on each of them.
            with contextlib.suppress(Exception):
                await self._pool.check()
        await self._backoff.wait(retry, self, operation, error)

    async def _saved_before(self, write: CheckpointWrite, expected_version: int | None) -> bool:
        """Whether the run holds `write` applied over `expected_version` (by an attempt
        whose answer was lost), rather than another worker's write."""
        stored = await self.load(write.run_id)
        if stored is None:
            return False
        count = len(write.entries)
        return (
            stored.version == (1 if expected_version is None else expected_version + 1)
            and (stored.task_name, stored.status, stored.delivered, stored.pending)
            == (write.task_name, write.status, write.delivered, write.pending)
            and stored.state == write.state
            and (count == 0 or stored.entries[-count:] == write.entries)
            and (expected_version is not None or stored.entries == write.entries)
        )

    async def _conflict(self, run_id: str, expected_version: int | None) -> RunConflictError:
        if expected_version is None:
            return conflict_error(run_id, 0, None)
        row, _ = await self._execute("load", _VERSION, (run_id,), _fetch_one)
        return conflict_error(run_id, None if row is None else int(row[0]), expected_version)


class _OpeningConnection:
    """`pool.connection()` for a pool the saver still has to open (its first call)."""

    def __init__(self, saver: PostgresSaver) -> None:
        self._saver = saver
        self._context: Any = None

    async def __aenter__(self) -> AsyncConnection[Any]:
        saver = self._saver
        async with saver._opening:  # the pool's open(wait=True) is not reentrant
            if not saver._opened:
                # One connection first: a wrong URL fails now with the server's error,
                # where the pool would retry in the background until its timeout.
                await _try_connect(saver._conninfo, saver._target, saver._connect_timeout)
                await saver._pool.open(wait=True, timeout=saver._connect_timeout * 2)
                saver._opened = True
        self._context = saver._pool.connection()
        connection: AsyncConnection[Any] = await self._context.__aenter__()
        return connection

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._context.__aexit__(*exc_info)


def _info(row: Sequence[Any]) -> RunInfo:
    run_id, name, status, version, delivered, pending, created, updated = row[:8]
    lease_owner, lease_expires, wake_at, cancel_requested = row[8:12]
    return RunInfo(
        run_id,
        name,
        cast(RunStatus, status),
        version,
        delivered,
        tuple(pending),
        created,
        updated,
        lease_owner,
        lease_expires,
        wake_at,
        bool(cancel_requested),
    )


class _Listener:
    """A connection of its own that LISTENs on `CHANNEL` (see `wait_for_due`)."""

    def __init__(self, connection: AsyncConnection[Any] | None) -> None:
        self._connection = connection
        self._heard = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        if connection is not None:
            self._reader = asyncio.ensure_future(self._read(connection))

    @property
    def ok(self) -> bool:
        """Whether it listens (else `wait_for_due` only sleeps)."""
        return self._connection is not None and not self._connection.closed

    @classmethod
    async def open(cls, conninfo: str, pool: AsyncConnectionPool[Any]) -> _Listener:
        """Listen on a new connection (to `conninfo`, or with the pool's settings)."""
        import psycopg

        # A pool you passed in: its connection settings, when they are plain values.
        options = pool.kwargs if not conninfo and isinstance(pool.kwargs, dict) else {}
        target = conninfo or pool.conninfo
        if not isinstance(target, str):
            return cls(None)
        try:
            connection = await psycopg.AsyncConnection.connect(
                target, **{**options, "autocommit": True}
            )
        except Exception:
            return cls(None)
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
        except Exception:
            await connection.close()
            return cls(None)  # no LISTEN here (a pooler, privileges): poll only
        return cls(connection)

    async def _read(self, connection: AsyncConnection[Any]) -> None:
        with contextlib.suppress(Exception):
            async for _ in connection.notifies():
                self._heard.set()

    async def wait(self) -> None:
        """Until a notification arrives (or has arrived since the last `wait`)."""
        await self._heard.wait()
        self._heard.clear()

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._connection is not None:
            await self._connection.close()


async def _fetch_one(cursor: AsyncCursor[Any]) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = await cursor.fetchone()
    return row


async def _fetch_all(cursor: AsyncCursor[Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = await cursor.fetchall()
    return rows


async def _row_count(cursor: AsyncCursor[Any]) -> int:
    return cursor.rowcount


_SHUTDOWN_STATES = frozenset({"57P01", "57P02", "57P03"})
_RETRIED_STATES = frozenset({"40001", "40P01"})


def _transient(error: BaseException) -> str | None:
    """How `error` may be retried: "connection" (lost: a write's outcome is unknown),
    "rolled back" (serialization failure, deadlock), or `None` (not transient)."""
    from psycopg import OperationalError
    from psycopg_pool import PoolTimeout

    if not isinstance(error, OperationalError) or isinstance(error, PoolTimeout):
        return None
    state = error.sqlstate
    if state in _RETRIED_STATES:
        return "rolled back"
    if state is None or state.startswith("08") or state in _SHUTDOWN_STATES:
        return "connection"
    return None


def _describe_target(params: dict[str, Any]) -> str:
    """The connection parameters that say where, never the password."""
    shown = {k: v for k, v in params.items() if k in ("host", "hostaddr", "port", "dbname", "user")}
    if not shown:
        return "(libpq defaults: PGHOST, PGDATABASE, ...)"
    return " ".join(f"{key}={value}" for key, value in shown.items())


async def _try_connect(conninfo: str, target: str, timeout: int) -> None:
    """Open and close one connection; `SaverConnectionError` with the server's reason."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    options: dict[str, Any] = {}
    if "connect_timeout" not in conninfo_to_dict(conninfo):
        options["connect_timeout"] = timeout
    try:
        connection = await psycopg.AsyncConnection.connect(conninfo, **options)
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise SaverConnectionError(target, reason) from error
    await connection.close()


def _reraise(error: Exception) -> NoReturn:
    """Explain a missing table (setup was not called); re-raise anything else."""
    from psycopg.errors import UndefinedTable

    if isinstance(error, UndefinedTable):
        raise TinyTasksError(
            f"the tiny-tasks tables are missing from this database "
            f"({error.diag.message_primary}); call await saver.setup() once to create them"
        ) from error
    raise error
