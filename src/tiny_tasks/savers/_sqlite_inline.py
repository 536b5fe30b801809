"""The per-partial write of a `SqliteSaver`, made on the caller's thread when it cannot wait.

The per-partial write is `mark_delivered` (one UPDATE), or `append_partial` when the
engine keeps the stream log (an UPDATE and an INSERT in one `BEGIN IMMEDIATE`
transaction, which answers "busy" at once as the single UPDATE does).

A streamed partial is marked delivered before the consumer sees it, so its cost is paid
once per partial, in sequence. Sent to the saver's thread, it costs a round trip of two
thread switches (about 80 µs here); the write itself is a 20 µs UPDATE. So, at
`synchronous` NORMAL or OFF, where a commit appends to the WAL without an fsync, the
mark runs right where it is awaited, on a second connection that cannot wait:

* its busy timeout is 0: if anyone holds the write lock (another process, or the
  saver's own thread), SQLite answers "busy" at once and the mark goes to the thread,
  which waits for the lock as every other write does;
* it never checkpoints (`wal_autocheckpoint = 0`): a checkpoint copies pages into the
  database file and fsyncs it. Every `CHECKPOINT_EVERY` inline commits, it asks the
  thread for a PASSIVE checkpoint instead, so the WAL stays small;
* it is used only when the saver's thread has no call in hand, so calls still apply in
  the order they were made;
* one caller at a time: a caller in another thread that finds it in use goes to the
  thread instead of waiting;
* only while one run is marking: when marks of different runs follow each other closely
  (several streams at once), they go to the thread, which commits them together (group
  commit beats one inline commit each as soon as two streams write).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _sqlite_queries as queries
from ._sqlite_thread import DatabaseThread
from .base import stamp

CONCURRENT_WITHIN = 0.002
"""Seconds: a mark for another run this soon after the last one means several streams."""

clock = time.monotonic  # replaced in tests that need a clock they control

CHECKPOINT_EVERY = 1000
"""Inline commits between two checkpoint requests (about 1000 WAL frames, as SQLite's
own `wal_autocheckpoint` default)."""


class InlineMarker:
    """Marks partials delivered on the calling thread while that cannot block it."""

    def __init__(self, connection: sqlite3.Connection, thread: DatabaseThread) -> None:
        self._connection = connection
        self._thread = thread
        self._lock = threading.Lock()
        self._commits = 0
        self._closed = False
        self._last_run_id = ""
        self._last_mark_at = 0.0

    @classmethod
    def open(cls, path: str, synchronous: str, thread: DatabaseThread) -> InlineMarker:
        """A marker on a new connection to `path` (which the thread already migrated)."""
        connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA synchronous = {synchronous}")
            connection.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            connection.close()
            raise
        return cls(connection, thread)

    def try_mark(self, run_id: str, delivered: int, expected_version: int) -> int | None:
        """The run's new version, or `None` if the mark must go to the thread.

        Raises `RunConflictError` as the thread would.
        """
        args = (delivered, expected_version, stamp())
        return self._try(run_id, queries.mark_delivered, args, False)

    def try_append(self, run_id: str, seq: int, data: bytes, expected_version: int) -> int | None:
        """`append_partial` here, as `try_mark`: the new version, or `None` (the thread)."""
        args = (seq, data, expected_version, stamp())
        return self._try(run_id, queries.append_partial, args, True)

    def _try(
        self, run_id: str, work: Callable[..., int], args: tuple[Any, ...], transaction: bool
    ) -> int | None:
        now = clock()
        streams_at_once = (
            run_id != self._last_run_id and now - self._last_mark_at < CONCURRENT_WITHIN
        )
        self._last_run_id, self._last_mark_at = run_id, now
        if streams_at_once or self._thread.busy or not self._lock.acquire(blocking=False):
            return None
        try:
            if self._closed:
                return None
            connection = self._connection
            try:
                if transaction:
                    # BEGIN IMMEDIATE takes the write lock or answers "busy" at once.
                    connection.execute("BEGIN IMMEDIATE")
                    try:
                        version = work(connection, run_id, *args)
                        connection.execute("COMMIT")
                    except BaseException:
                        if connection.in_transaction:
                            connection.execute("ROLLBACK")
                        raise
                else:
                    # One statement in autocommit mode: one transaction, no BEGIN/COMMIT.
                    version = work(connection, run_id, *args)
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    return None
                raise
            self._commits += 1
            if self._commits >= CHECKPOINT_EVERY:
                self._commits = 0
                self._thread.request_checkpoint()
            return version
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection; later `try_mark` calls return `None`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._connection.close()
