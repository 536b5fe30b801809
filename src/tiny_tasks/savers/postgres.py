"""`PostgresSaver`: checkpoints in PostgreSQL, for many processes on many machines.

Needs the `postgres` extra (`pip install 'tiny-tasks[postgres]'`: psycopg 3 and
psycopg-pool); they are imported when a saver is created, never by
`import tiny_tasks.savers`. Every method is one statement, so one round trip on an
autocommit connection: a save updates the run and appends its entries in one statement
with data-modifying CTEs, and `mark_delivered` is a single UPDATE. Compare-and-swap is
`UPDATE ... WHERE version = %s` (or `INSERT ... ON CONFLICT DO NOTHING` to create) and
a look at the row count. Timestamps come from the server's clock, the one clock all
workers share.

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
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from ..errors import RunConflictError, SaverConnectionError, TinyTasksError
from ._conflict import conflict_error
from ._postgres_schema import migrate
from ._retry import Backoff
from .base import Checkpoint, CheckpointWrite, RunInfo, RunStatus, check_partials_limit

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresSaver"]

T = TypeVar("T")

_NOW = "extract(epoch FROM statement_timestamp())::float8"
_MARK_DELIVERED = (
    f"UPDATE tiny_tasks_runs SET delivered = %s, version = version + 1, updated_at = {_NOW}"
    " WHERE run_id = %s AND version = %s"
)
# One statement: the compare-and-swap of `mark_delivered`, then, only if it changed the
# run, the log cut after `seq` and the partial stored at `seq` (replacing a stale one).
_APPEND_PARTIAL = (
    f"WITH changed AS (UPDATE tiny_tasks_runs SET delivered = %(delivered)s, version ="
    f" version + 1, updated_at = {_NOW} WHERE run_id = %(run_id)s AND version = %(expected)s"
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
    " delivered, pending, state, entry_count, created_at, updated_at) VALUES (%(run_id)s,"
    " %(task_name)s, %(status)s, 1, %(delivered)s, %(pending)s, %(state)s, %(count)s,"
    f" {_NOW}, {_NOW}) ON CONFLICT (run_id) DO NOTHING RETURNING run_id, entry_count),"
    + _APPEND_FROM
)
_UPDATE = (
    "WITH changed AS (UPDATE tiny_tasks_runs SET task_name = %(task_name)s, status ="
    " %(status)s, version = version + 1, delivered = %(delivered)s, pending = %(pending)s,"
    " state = %(state)s, entry_count = entry_count + %(count)s, updated_at ="
    f" {_NOW} WHERE run_id = %(run_id)s AND version = %(expected)s"
    " RETURNING run_id, entry_count), cut AS (DELETE FROM tiny_tasks_partials WHERE run_id ="
    " (SELECT run_id FROM changed) AND seq >= %(delivered)s)," + _APPEND_FROM
)
_VERSION = "SELECT version FROM tiny_tasks_runs WHERE run_id = %s"
_MARKED = "SELECT version, delivered FROM tiny_tasks_runs WHERE run_id = %s"
_DELETE = (
    "WITH entries AS (DELETE FROM tiny_tasks_entries WHERE run_id = %(run_id)s),"
    " partials AS (DELETE FROM tiny_tasks_partials WHERE run_id = %(run_id)s)"
    " DELETE FROM tiny_tasks_runs WHERE run_id = %(run_id)s"
)
_LOAD = (
    "SELECT task_name, status, version, delivered, pending, state, created_at, updated_at,"
    " ARRAY(SELECT data FROM tiny_tasks_entries AS entry WHERE entry.run_id = run.run_id"
    " ORDER BY seq) FROM tiny_tasks_runs AS run WHERE run_id = %s"
)
_LIST = (
    "SELECT run_id, task_name, status, version, delivered, pending, created_at, updated_at"
    " FROM tiny_tasks_runs{where} ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s"
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

    A saver's pool belongs to the event loop that opened it: use one saver per loop.

    The first call opens the pool: it connects once first, waiting at most
    `connect_timeout` seconds (unless the connection string sets its own), and raises
    `SaverConnectionError` with the server's own error (a wrong database, host, socket,
    user or password) naming the target without its password, instead of letting the
    pool retry in the background. A later call tries again.

    Raises `ImportError` naming the extra to install when psycopg is missing,
    `ValueError` for a negative `retry_attempts` or `retry_max_delay`, a connection
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
        self._conninfo = conninfo if isinstance(conninfo, str) else ""
        self._target = ""
        self._owns_pool = isinstance(conninfo, str)
        if isinstance(conninfo, str):
            try:
                params = conninfo_to_dict(conninfo)
            except Exception as error:  # psycopg.ProgrammingError
                raise ValueError(f"invalid PostgreSQL connection string: {error}") from None
            self._target = _describe_target(params)
            self._pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                conninfo,
                min_size=1,
                max_size=max_size,
                open=False,
                kwargs={"autocommit": True},
                name="tiny-tasks",
            )
        else:
            self._pool = conninfo
        self._opened = not self._owns_pool
        self._opening = asyncio.Lock()
        self._closed = False

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
        task_name, status, version, delivered, pending, state, created, updated, entries = row
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
        )

    async def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        """Apply `write` if the run is at `expected_version`; return the new version.

        `expected_version=None` creates the run. Raises `RunConflictError` if the run
        exists (when creating) or is not at `expected_version`.
        """
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
        }
        query = _CREATE if expected_version is None else _UPDATE
        row, uncertain = await self._execute("save", query, parameters, _fetch_one)
        if row is None or row[0] != 1:
            if uncertain and await self._saved_before(write, expected_version):
                return 1 if expected_version is None else expected_version + 1
            raise await self._conflict(write.run_id, expected_version)
        return 1 if expected_version is None else expected_version + 1

    async def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        """Set the delivered count and bump the version: one UPDATE, one round trip.

        Raises `RunConflictError` if the run is missing or not at `expected_version`.
        """
        parameters = (delivered, run_id, expected_version)
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
        """Forget `run_id`, its entries and its partials (no error if it is not stored)."""
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
        return [
            RunInfo(
                run_id,
                name,
                cast(RunStatus, state),
                version,
                delivered,
                tuple(pending),
                created,
                updated,
            )
            for run_id, name, state, version, delivered, pending, created, updated in rows
        ]

    async def close(self) -> None:
        """Close the pool if the saver created it (a pool you passed in stays open)."""
        if self._closed:
            return
        self._closed = True
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
    ) -> tuple[T, bool]:
        """Run one statement, retrying transient failures on a fresh connection.

        Returns `outcome(cursor)` and whether an earlier attempt may have been applied
        (its connection was lost while the statement was in flight).
        """
        uncertain = False
        backoff = self._backoff
        for retry in range(backoff.attempts + 1):
            try:
                async with self._connection() as connection:
                    try:
                        cursor = await connection.execute(query, parameters)
                        return await outcome(cursor), uncertain
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
