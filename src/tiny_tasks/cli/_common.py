"""The CLI's shared pieces: usage errors and failures, opening a store, output."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import TinyTasksError

PAGE = 1000
"""Runs fetched per query by `runs --all`."""


class _Usage(Exception):
    """A usage error: reported on one line, exit status 2."""


class _Failure(Exception):
    """A failure explained on one line, exit status 1."""


# --- opening a store -----------------------------------------------------------------


async def _open(store: str, *, vacuum: bool = False, pool: int = 1) -> Any:
    if store.startswith(("postgres://", "postgresql://")):
        if vacuum:
            raise _Usage(
                "vacuum is for SQLite stores; PostgreSQL gives space back with its own "
                "VACUUM (autovacuum does it by default)"
            )
        return await _open_postgres(store, pool)
    _check_sqlite_store(store)
    from ..savers.sqlite import SqliteSaver

    saver = SqliteSaver(store)
    try:
        await saver.setup()
    except BaseException:
        await saver.close()
        raise
    return saver


def _check_sqlite_store(store: str) -> None:
    """Refuse, without creating or changing anything, what is not a tiny-tasks store."""
    path = Path(store)
    if not path.exists():
        raise _Usage(f"no SQLite store at {store!r} (the file does not exist)")
    if path.is_dir():
        raise _Usage(f"{store!r} is a directory, not a SQLite store")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as connection:
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tiny_tasks_schema'"
            ).fetchone()
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error):
            raise _Usage(f"{store!r} is not a SQLite database") from error
        raise _Failure(f"cannot open the SQLite store {store!r}: {error}") from error
    if found is None:
        raise _Usage(f"{store!r} is a SQLite database but not a tiny-tasks store")


async def _open_postgres(url: str, pool: int = 1) -> Any:
    try:
        import psycopg
    except ImportError:
        raise _Failure(
            "a postgresql:// store needs psycopg: pip install 'tiny-tasks[postgres]'"
        ) from None
    from ..savers.postgres import PostgresSaver

    try:  # a connection of our own first: a wrong URL fails at once, with the server's words
        connection = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    except psycopg.Error as error:
        # The URL is not repeated: it may hold a password.
        raise _Failure(f"cannot connect to the PostgreSQL store: {error}") from None
    await connection.close()
    return PostgresSaver(url, max_size=pool)


def _store_error(error: TinyTasksError) -> str:
    cause = error.__cause__
    if cause is not None and type(cause).__name__ == "UndefinedTable":
        return "this PostgreSQL database is not a tiny-tasks store (its tables are missing)"
    return str(error)


def _size(store: str) -> int:
    total = 0
    for name in (store, store + "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(name).st_size
    return total


def _bytes(count: int) -> str:
    for power, unit in ((3, "GB"), (2, "MB"), (1, "kB")):
        if count >= 1000**power:
            return f"{count / 1000**power:.1f} {unit}"
    return f"{count} bytes"


# --- output --------------------------------------------------------------------------


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    """A `report(text)` that rewrites one status line on stderr, if stderr is a terminal."""
    shown = sys.stderr.isatty()

    def report(text: str) -> None:
        if shown:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()

    try:
        yield report
    finally:
        if shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _cell(text: str) -> str:
    """`text` as is if every character prints; escaped repr-style otherwise, so a newline
    or a control character in a stored name cannot break a table or a terminal."""
    return text if text.isprintable() else repr(text)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
