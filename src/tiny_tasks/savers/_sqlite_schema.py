"""Opening a SQLite checkpoint database: pragmas, schema versions and migrations.

Each migration is a list of statements applied in one `BEGIN IMMEDIATE` transaction,
so two processes opening a new database at once cannot both apply it: the second one
waits for the write lock, sees the new version and does nothing. A database written by
a newer tiny-tasks (a schema version this code does not know) is refused rather than
guessed at.
"""

from __future__ import annotations

import sqlite3
import time

from ..errors import TinyTasksError

SCHEMA_TABLE = "tiny_tasks_schema"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # Version 1: the initial schema. The state blob has a table of its own so that
    # `mark_delivered`, the per-partial write, rewrites one small row whatever the
    # state's size; entries are keyed (run_id, seq) without a rowid, so appending one
    # touches one B-tree.
    (
        """CREATE TABLE tiny_tasks_runs (
            run_id TEXT PRIMARY KEY,
            task_name TEXT NOT NULL,
            status TEXT NOT NULL,
            version INTEGER NOT NULL,
            delivered INTEGER NOT NULL,
            pending TEXT NOT NULL,
            entry_count INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE tiny_tasks_states (
            run_id TEXT PRIMARY KEY,
            state BLOB NOT NULL
        )""",
        """CREATE TABLE tiny_tasks_entries (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID""",
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
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID""",
    ),
    # Version 3: the runtime (leases, timers, cancel requests, messages). `due_at` is
    # the run's `claimable_at` (when a worker may claim it), kept by every write that
    # changes what it depends on; the partial index holds only the runs that can ever
    # be claimed, so a claim reads the few due ones first whatever the table's size.
    # A running run of an older version (no lease) is claimable at once.
    (
        "ALTER TABLE tiny_tasks_runs ADD COLUMN lease_owner TEXT",
        "ALTER TABLE tiny_tasks_runs ADD COLUMN lease_expires REAL",
        "ALTER TABLE tiny_tasks_runs ADD COLUMN wake_at REAL",
        "ALTER TABLE tiny_tasks_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tiny_tasks_runs ADD COLUMN waits TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE tiny_tasks_runs ADD COLUMN due_at REAL",
        "UPDATE tiny_tasks_runs SET due_at = updated_at WHERE status IN ('queued', 'running')",
        "CREATE INDEX tiny_tasks_runs_due ON tiny_tasks_runs (due_at, run_id)"
        " WHERE due_at IS NOT NULL",
        """CREATE TABLE tiny_tasks_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            data BLOB NOT NULL,
            created_at REAL NOT NULL,
            taken INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX tiny_tasks_messages_next ON tiny_tasks_messages (run_id, topic, taken, id)",
    ),
)
"""Migration `i` brings the schema from version `i` to version `i + 1`."""

LATEST_VERSION = len(MIGRATIONS)

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

PAGE_SIZE = 2048


def connect(path: str, *, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    """Open `path` in WAL mode with the given durability, migrated to the latest schema.

    Raises `sqlite3.Error` when the file cannot be opened or switched to WAL mode, and
    `TinyTasksError` when it was written by a newer tiny-tasks.
    """
    # isolation_level=None: this module and the saver issue BEGIN/COMMIT themselves.
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=True
    )
    try:
        # For a new file only (an existing one keeps its page size). Every dirty page
        # is a WAL frame, written and checksummed at each commit: 2 KiB pages make the
        # per-partial write about a quarter cheaper than the default 4 KiB.
        connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        # Also for a new file only (an existing one keeps its mode until a full VACUUM):
        # pages freed by deleted runs can then be handed back to the file system by
        # `SqliteSaver.vacuum()` without rewriting the whole database.
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _use_wal(connection, path, busy_timeout)
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _use_wal(connection: sqlite3.Connection, path: str, busy_timeout: float) -> None:
    # Switching a new database to WAL takes an exclusive lock and does not always go
    # through the busy handler, so a process racing another one to create the file
    # retries here until its busy timeout is spent.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.001)
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(
            f"cannot switch the SQLite database {path!r} to WAL mode (it stays in {mode!r} "
            "mode); put it on a local file system that supports shared memory"
        )


def schema_version(connection: sqlite3.Connection) -> int:
    """The schema version stored in the database (0 for a new database)."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
    ).fetchone()
    if exists is None:
        return 0
    (version,) = connection.execute(
        f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}"
    ).fetchone()
    return int(version)


def migrate(connection: sqlite3.Connection, path: str) -> int:
    """Apply every migration the database lacks; return the resulting schema version.

    Raises `TinyTasksError` when the database has a schema version newer than this code.
    """
    if _checked_version(connection, path) == LATEST_VERSION:
        return LATEST_VERSION  # the common case takes no write lock
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE}"
            " (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        current = _checked_version(connection, path)
        for version in range(current + 1, LATEST_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                connection.execute(statement)
            connection.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return LATEST_VERSION


def _checked_version(connection: sqlite3.Connection, path: str) -> int:
    version = schema_version(connection)
    if version > LATEST_VERSION:
        raise TinyTasksError(
            f"the SQLite database {path!r} has checkpoint schema version {version}, but this "
            f"tiny-tasks only knows versions up to {LATEST_VERSION}; upgrade tiny-tasks to "
            "open it"
        )
    return version
