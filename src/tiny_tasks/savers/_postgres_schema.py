"""The PostgreSQL checkpoint schema: its versions, its migrations and `setup`.

`setup` runs in one transaction under a transaction-level advisory lock, so any number
of processes may call it at once: the first applies the missing migrations, the others
wait for it and then find nothing to do. The tables live in the first schema of the
connection's `search_path` (set it with `options=-csearch_path=...` to use another).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TinyTasksError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

SCHEMA_TABLE = "tiny_tasks_schema"

ADVISORY_LOCK_KEY = 0x7469_6E79_7461_736B  # "tinytask": serialises concurrent setups

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # Version 1: the initial schema. Ids and names use the "C" collation so that runs
    # with equal creation times are ordered by code point, as in every other saver.
    # fillfactor leaves room on each page for HOT updates of the per-partial write.
    (
        """CREATE TABLE tiny_tasks_runs (
            run_id text COLLATE "C" PRIMARY KEY,
            task_name text COLLATE "C" NOT NULL,
            status text NOT NULL,
            version bigint NOT NULL,
            delivered bigint NOT NULL,
            pending text[] NOT NULL,
            state bytea NOT NULL,
            entry_count bigint NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL
        ) WITH (fillfactor = 80)""",
        """CREATE TABLE tiny_tasks_entries (
            run_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE INDEX tiny_tasks_runs_by_created ON tiny_tasks_runs (created_at, run_id)",
        "CREATE INDEX tiny_tasks_runs_by_status ON tiny_tasks_runs (status, created_at, run_id)",
        "CREATE INDEX tiny_tasks_runs_by_task_name"
        " ON tiny_tasks_runs (task_name, created_at, run_id)",
    ),
    # Version 2: the stream log, the content of each partial delivered with exactly-once
    # delivery, keyed by its position. Rows at or after the run's `delivered` count are
    # stale (a re-run replaced them) and never read; `append_partial` overwrites them.
    (
        """CREATE TABLE tiny_tasks_partials (
            run_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
    ),
    # Version 3: the runtime (leases, timers, cancel requests, messages). `due_at` is
    # the run's `claimable_at` (when a worker may claim it), set by every write from
    # what it depends on; a write that leaves it (and the status) as they were stays a
    # HOT update. The partial index holds only the runs that can ever be claimed, so a
    # claim reads the few due ones first whatever the table's size. A running run of
    # an older version (no lease) is claimable at once.
    (
        "ALTER TABLE tiny_tasks_runs ADD COLUMN lease_owner text,"
        " ADD COLUMN lease_expires double precision, ADD COLUMN wake_at double precision,"
        " ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,"
        " ADD COLUMN waits text[] NOT NULL DEFAULT '{}', ADD COLUMN due_at double precision",
        "UPDATE tiny_tasks_runs SET due_at = updated_at WHERE status IN ('queued', 'running')",
        "CREATE INDEX tiny_tasks_runs_due ON tiny_tasks_runs (due_at, run_id)"
        " WHERE due_at IS NOT NULL",
        """CREATE TABLE tiny_tasks_messages (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id text COLLATE "C" NOT NULL,
            topic text NOT NULL,
            data bytea NOT NULL,
            created_at double precision NOT NULL,
            taken boolean NOT NULL DEFAULT false
        )""",
        "CREATE INDEX tiny_tasks_messages_next ON tiny_tasks_messages (run_id, topic, taken, id)",
    ),
)
"""Migration `i` brings the schema from version `i` to version `i + 1`."""

LATEST_VERSION = len(MIGRATIONS)


async def migrate(connection: AsyncConnection[Any]) -> int:
    """Create or migrate the schema; return the resulting version.

    Raises `TinyTasksError` when the database has a schema version newer than this code.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await connection.execute(f"SELECT COALESCE(max(version), 0) FROM {SCHEMA_TABLE}")
        row = await cursor.fetchone()
        current = int(row[0]) if row is not None else 0
        if current > LATEST_VERSION:
            raise TinyTasksError(
                f"the PostgreSQL database has checkpoint schema version {current}, but this "
                f"tiny-tasks only knows versions up to {LATEST_VERSION}; upgrade tiny-tasks "
                "to use it"
            )
        for version in range(current + 1, LATEST_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                await connection.execute(statement)
            await connection.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (%s)", (version,)
            )
    return LATEST_VERSION
