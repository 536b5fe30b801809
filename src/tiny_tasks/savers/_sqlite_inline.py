"""A `SqliteSaver`'s run writes and loads, made on the caller's thread when they cannot wait.

The calls made here are the ones a run makes one after another, each awaited before
the run goes on: the per-partial write (`mark_delivered`, one UPDATE, or
`append_partial` when the engine keeps the stream log), a step's or a pause's `save`
and a finished run's `delete` (a few statements in one `BEGIN IMMEDIATE` transaction,
which answers "busy" at once as the single UPDATE does), and a resume's `load` (one read
transaction).

A streamed partial is marked delivered before the consumer sees it, and a step's result
is stored before it is handed back, so their cost is paid once each, in sequence. Sent to
the saver's thread, a call costs a round trip of two thread switches (80-110 µs here);
the write itself is a 10-30 µs commit. So, at `synchronous` NORMAL or OFF, where a commit
appends to the WAL without an fsync, the call runs right where it is awaited, on a
second connection that cannot wait (at FULL the fsync would hold the event loop, and
the round trip is a small part of the write's cost):

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
* only while one run is writing: when writes of different runs follow each other
  closely (several runs at once), they go to the thread, which commits them together
  (group commit beats one inline commit each as soon as two runs write).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from . import _sqlite_queries as queries
from ._sqlite_thread import DatabaseThread
from .base import CheckpointWrite, stamp

CONCURRENT_WITHIN = 0.002
"""Seconds: a write for another run this soon after the last one means several runs."""

THREAD: Any = object()
"""What `_try` returns when the call must go to the saver's thread."""

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
        self._changes = 0

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
        version = self._try(run_id, queries.mark_delivered, args, False)
        return None if version is THREAD else cast(int, version)

    def try_append(self, run_id: str, seq: int, data: bytes, expected_version: int) -> int | None:
        """`append_partial` here, as `try_mark`: the new version, or `None` (the thread)."""
        args = (seq, data, expected_version, stamp())
        version = self._try(run_id, queries.append_partial, args, True)
        return None if version is THREAD else cast(int, version)

    def try_save(self, write: CheckpointWrite, expected_version: int | None) -> int | None:
        """`save` here, as `try_mark`: the new version, or `None` (the thread)."""
        args = (queries.encode_pending(write.pending), expected_version, stamp())
        version = self._try(write.run_id, _save, (write, *args), True)
        return None if version is THREAD else cast(int, version)

    def try_delete(self, run_id: str) -> bool:
        """`delete` here (one transaction); `False` if it must go to the thread."""
        return self._try(run_id, queries.delete, (), True) is not THREAD

    def try_load(self, run_id: str) -> Any:
        """`load` here (one read transaction): the checkpoint, `None` if the run is not
        stored, or `THREAD`."""
        return self._try(run_id, queries.load, (), False)

    def _try(
        self, run_id: str, work: Callable[..., Any], args: tuple[Any, ...], transaction: bool
    ) -> Any:
        now = clock()
        streams_at_once = (
            run_id != self._last_run_id and now - self._last_mark_at < CONCURRENT_WITHIN
        )
        self._last_run_id, self._last_mark_at = run_id, now
        if streams_at_once or self._thread.busy or not self._lock.acquire(blocking=False):
            return THREAD
        try:
            if self._closed:
                return THREAD
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
                    # One statement in autocommit mode (or a read that opens its own
                    # transaction): no BEGIN/COMMIT here.
                    version = work(connection, run_id, *args)
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    if connection.in_transaction:  # a read that found the file busy
                        connection.execute("ROLLBACK")
                    return THREAD
                raise
            if not transaction and not connection.total_changes - self._changes:
                return version  # a read: nothing committed, nothing to checkpoint
            self._changes = connection.total_changes
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


def _save(
    connection: sqlite3.Connection,
    run_id: str,
    write: CheckpointWrite,
    pending: str,
    expected_version: int | None,
    now: float,
) -> int:
    return queries.save(connection, write, pending, expected_version, now)
