"""`SqliteSaver`: checkpoints in a SQLite file, on the standard library alone.

The database runs in WAL mode, so readers never block the writer and several processes
on one machine can share a file: writes take SQLite's write lock with
`BEGIN IMMEDIATE`, wait up to `busy_timeout` for it, and are compare-and-swapped on the
run's version, so two workers can never both drive one run.

Durability: with the default `synchronous="NORMAL"` a commit survives the process being
killed at any moment, but the last commits before a power loss or OS crash may be lost
(the database stays consistent). `synchronous="FULL"` fsyncs the WAL on every commit and
survives power loss too, at several times the cost per write.

Database work runs on one thread per saver, except a run's own writes and loads
(`save`, `load`, `delete`, and the per-partial `mark_delivered` or `append_partial`) at NORMAL or
OFF durability, which run where they are awaited whenever they cannot wait there (see
`_sqlite_inline`).

A call that finds the database locked past `busy_timeout` is retried with jittered
backoff (`_retry`). That is safe for writes too: a SQLite commit's outcome is always
known to the connection that made it, and a failed write was rolled back whole.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from . import _sqlite_queries as queries
from ._retry import Backoff
from ._scan import Cursor, check_scan, sqlite_scan
from ._sqlite_inline import THREAD, InlineMarker
from ._sqlite_schema import SYNCHRONOUS_LEVELS, connect
from ._sqlite_thread import DatabaseThread, LoopWaker, Work
from .base import (
    Checkpoint,
    CheckpointWrite,
    Lease,
    RunInfo,
    RunStatus,
    check_partials_limit,
    stamp,
)

__all__ = ["SqliteSaver"]

T = TypeVar("T")


class SqliteSaver:
    """Stores checkpoints in the SQLite database at `path` (created if missing).

    * `synchronous`: `"NORMAL"` (default: safe against a killed process, not against
      power loss), `"FULL"` or `"EXTRA"` (safe against power loss, slower), or `"OFF"`
      (tests only: an OS crash can corrupt the file).
    * `busy_timeout`: seconds a write waits for another process's write lock before it
      fails with `sqlite3.OperationalError` ("database is locked").
    * `retry_attempts` (default 4) and `retry_max_delay` (default 1.0 s): a call that
      fails with "database is locked" or "busy" is retried this many times, after a
      random delay of up to 0.05 s, then 0.1 s, 0.2 s... (at most `retry_max_delay`),
      each retry waiting `busy_timeout` again. Other errors are raised at once.
    * `serde`: the codec the engine uses for this saver's values (`None`: the default).
    * `inline_marks`: at NORMAL or OFF durability, make a run's writes and loads on the
      event loop when that cannot block it (default `True`; see below).

    Database work runs on one thread per saver, not on the event loop; writes queued
    together are committed together. The exception is what a run awaits one call at a
    time, at NORMAL or OFF durability: `save` (a step's result, a pause), `load`,
    `delete` (a finished run) and the per-partial `mark_delivered` / `append_partial`.
    Each is a short transaction that appends to the WAL with no fsync, 10-40 µs. It
    runs on the caller's thread when
    the saver's thread is idle, on a second connection that never waits for a lock (if
    the database is locked it goes to the thread instead) and never checkpoints (it
    asks the thread to); that is 3-5x cheaper than the round trip to the thread, and
    the commit has happened when the call returns, as on the thread.
    `inline_marks=False` sends them to the thread too. A saver may be shared by any number of
    event loops in any threads; calls run in the order they were made, and each
    resolves on the loop that awaited it. A call cancelled before the thread reaches
    it is not applied; once started, a write completes. Close the saver with
    `await saver.close()` or `async with`, or from synchronous code (a script using
    `invoke_sync`) with `saver.close_sync()` or `with`. Do not carry it across
    `os.fork()`.

    Raises `ValueError` for an unknown `synchronous` level, a negative `busy_timeout`,
    `retry_attempts` or `retry_max_delay`, or an in-memory path (each connection would
    see its own database: use `MemorySaver`). Errors opening the file are raised by the
    first awaited call.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        serde: Any = None,
        inline_marks: bool = True,
        retry_attempts: int = 4,
        retry_max_delay: float = 1.0,
    ) -> None:
        self.path = os.fspath(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.serde = serde
        """The codec the engine uses for this saver's values (`None`: the default)."""
        if self.synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}"
            )
        if busy_timeout < 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, not {busy_timeout!r}")
        self._backoff = Backoff(retry_attempts, retry_max_delay)
        if self.path == ":memory:" or self.path.startswith("file::memory:") or not self.path:
            raise ValueError(
                "SqliteSaver needs a file path; an in-memory SQLite database is private to "
                "one connection. Use MemorySaver for checkpoints that live in memory."
            )
        self._wakers: dict[asyncio.AbstractEventLoop, LoopWaker] = {}
        self._wakers_lock = threading.Lock()
        self._closed = False
        self._inline: InlineMarker | None = None
        self._inline_wanted = inline_marks and self.synchronous in ("NORMAL", "OFF")
        path_, level, timeout = self.path, self.synchronous, busy_timeout
        self._thread = DatabaseThread(
            lambda: connect(path_, synchronous=level, busy_timeout=timeout),
            name=f"tiny-tasks-sqlite {self.path}",
        )

    async def setup(self) -> None:
        """Open the database and create or migrate its schema now, not on first use.

        Raises `sqlite3.Error` if the file cannot be opened, `TinyTasksError` if it was
        written by a newer tiny-tasks.
        """
        await self._retrying("setup", queries.ping, (), writes=False)

    async def load(self, run_id: str) -> Checkpoint | None:
        """The stored checkpoint of `run_id` with all its entries, or `None`."""
        inline = self._inline
        if inline is not None:
            found = inline.try_load(run_id)
            if found is not THREAD:
                return cast("Checkpoint | None", found)
        elif self._inline_wanted:
            self._open_inline()
        try:
            result: Checkpoint | None = await self._call(queries.load, (run_id,), writes=False)
        except sqlite3.OperationalError as error:
            result = await self._retry(error, "load", queries.load, (run_id,), writes=False)
        return result

    async def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        """Apply `write` if the run is at `expected_version`; return the new version.

        `expected_version=None` creates the run. Raises `RunConflictError` if the run
        exists (when creating) or is not at `expected_version`.
        """
        inline = self._inline
        if inline is not None:
            done = inline.try_save(write, expected_version)
            if done is not None:
                return done
        elif self._inline_wanted:
            self._open_inline()
        args = (write, queries.encode_pending(write.pending), expected_version, stamp())
        try:
            version: int = await self._call(queries.save, args, writes=True)
        except sqlite3.OperationalError as error:
            version = await self._retry(error, "save", queries.save, args, writes=True)
        return version

    async def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        """Set the delivered count and bump the version; one small UPDATE and commit.

        Raises `RunConflictError` if the run is missing or not at `expected_version`.
        """
        inline = self._inline
        if inline is not None:
            done = inline.try_mark(run_id, delivered, expected_version)
            if done is not None:
                return done
        elif self._inline_wanted:
            self._open_inline()  # for the next marks; this one keeps its place in line
        args = (run_id, delivered, expected_version, stamp())
        try:
            version: int = await self._call(queries.mark_delivered, args, writes=True)
        except sqlite3.OperationalError as error:
            work = queries.mark_delivered
            version = await self._retry(error, "mark_delivered", work, args, writes=True)
        return version

    async def append_partial(
        self, run_id: str, seq: int, data: bytes, expected_version: int
    ) -> int:
        """Store partial `seq` of the run's stream and set `delivered` to `seq + 1`.

        One transaction: the UPDATE of `mark_delivered` and an INSERT (replacing a stale
        row at `seq`); inline on the caller's thread as `mark_delivered` is. Raises
        `RunConflictError` if the run is missing or not at `expected_version`.
        """
        inline = self._inline
        if inline is not None:
            done = inline.try_append(run_id, seq, data, expected_version)
            if done is not None:
                return done
        elif self._inline_wanted:
            self._open_inline()
        version: int = await self._retrying(
            "append_partial",
            queries.append_partial,
            (run_id, seq, data, expected_version, stamp()),
            writes=True,
        )
        return version

    async def load_partials(
        self, run_id: str, after: int = -1, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """The stored partials with `after < seq < delivered`, in order, at most `limit`.

        `[]` for a missing run. Raises `ValueError` for a negative `limit`.
        """
        check_partials_limit(limit)
        rows: list[tuple[int, bytes]] = await self._retrying(
            "load_partials", queries.load_partials, (run_id, after, limit), writes=False
        )
        return rows

    def _open_inline(self) -> None:
        self._inline_wanted = False
        path, synchronous, thread = self.path, self.synchronous, self._thread
        opening = self._call(
            lambda _: InlineMarker.open(path, synchronous, thread), (), writes=False
        )
        opening.add_done_callback(self._install_inline)

    def _install_inline(self, opening: asyncio.Future[InlineMarker]) -> None:
        if opening.cancelled() or opening.exception() is not None:
            return  # the thread keeps every mark; its calls report what is wrong
        marker = opening.result()
        if self._closed:
            marker.close()
        else:
            self._inline = marker

    async def delete(self, run_id: str) -> None:
        """Forget `run_id`, its entries, partials and messages (no error if not stored)."""
        inline = self._inline
        if inline is not None:
            if inline.try_delete(run_id):
                return
        elif self._inline_wanted:
            self._open_inline()
        await self._retrying("delete", queries.delete, (run_id,), writes=True)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        """Stored runs, newest first, filtered by status and task name.

        Raises `ValueError` for a negative `limit` or `offset`.
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, not {limit} and {offset}")
        runs: list[RunInfo] = await self._retrying(
            "list_runs", queries.list_runs, (status, task_name, limit, offset), writes=False
        )
        return runs

    async def claim_runs(
        self,
        owner: str,
        task_names: Sequence[str],
        now: float,
        lease_expires: float,
        limit: int,
    ) -> list[RunInfo]:
        """Lease up to `limit` claimable runs of `task_names` to `owner`, earliest first.

        One write transaction (the database's write lock): a SELECT over the partial
        index of claimable runs and an UPDATE of those it found, so claims of several
        processes never take the same run. See `RuntimeSaver`.
        """
        args = (list(task_names), now, lease_expires, limit)
        claimed: list[RunInfo] = await self._retrying(
            "claim_runs", queries.claim_runs, (owner, *args), writes=True
        )
        return claimed

    async def renew_lease(self, run_id: str, owner: str, lease_expires: float) -> Lease:
        """Extend `owner`'s lease on `run_id` (see `RuntimeSaver`)."""
        lease: Lease = await self._retrying(
            "renew_lease", queries.renew_lease, (run_id, owner, lease_expires), writes=True
        )
        return lease

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on `run_id` (see `RuntimeSaver`)."""
        await self._retrying("release_lease", queries.release_lease, (run_id, owner), writes=True)

    async def request_cancel(self, run_id: str, now: float) -> RunInfo | None:
        """Ask for `run_id` to be cancelled (see `RuntimeSaver`)."""
        info: RunInfo | None = await self._retrying(
            "request_cancel", queries.request_cancel, (run_id, now), writes=True
        )
        return info

    async def send_message(self, run_id: str, topic: str, data: bytes, now: float) -> int | None:
        """Store a message for `run_id`; `None` if it is missing or finished (see
        `RuntimeSaver`)."""
        message_id: int | None = await self._retrying(
            "send_message", queries.send_message, (run_id, topic, data, now), writes=True
        )
        return message_id

    async def next_message(self, run_id: str, topic: str) -> tuple[int, bytes] | None:
        """The oldest untaken message of `topic` for `run_id`, as `(id, data)`."""
        found: tuple[int, bytes] | None = await self._retrying(
            "next_message", queries.next_message, (run_id, topic), writes=False
        )
        return found

    async def prune(self, finished_before: float, limit: int | None = None) -> int:
        """Delete finished runs last updated before `finished_before`, with their
        entries, partials and messages; return how many (see `RuntimeSaver`)."""
        count: int = await self._retrying(
            "prune", queries.prune, (finished_before, limit), writes=True
        )
        return count

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
        indexed read; see `Checkpointer`. Raises `ValueError` for a negative `limit`."""
        check_scan(limit, after)
        runs: list[Checkpoint] = await self._retrying(
            "scan_runs",
            sqlite_scan,
            (status, task_name, after, limit, oldest_first),
            writes=False,
        )
        return runs

    async def vacuum(self, *, full: bool = False) -> int:
        """Give the space of deleted runs back to the file system; return the bytes freed.

        SQLite keeps the pages of deleted rows for reuse, so the file never shrinks on
        its own. Files created by this version are in incremental auto-vacuum mode:
        `vacuum()` releases their free pages in short write transactions (8 MiB each),
        and costs time in proportion to the space freed, not to the database's size.
        A file created by an older tiny-tasks, or `full=True`, is rewritten whole by
        SQLite's VACUUM (which also defragments it and switches it to incremental mode):
        that holds the write lock for the whole rewrite and needs free disk space about
        twice the live data, as the copy goes through the WAL. Both end with a
        truncating WAL checkpoint, which a reader in another process can delay (the
        space then comes back at a later checkpoint).

        This saver's other calls wait while it runs. Raises `sqlite3.OperationalError`
        ("database is locked") if another process holds the write lock past
        `busy_timeout` on every retry.
        """
        # writes=False: the thread runs it outside a transaction, which VACUUM needs.
        freed: int = await self._retrying("vacuum", queries.vacuum, (self.path, full), writes=False)
        return freed

    async def close(self) -> None:
        """Finish the queued calls, close the connection and stop the thread.

        Calling it again does nothing. Calls made after it raise `RuntimeError`.
        """
        loop = asyncio.get_running_loop()
        with self._wakers_lock:
            if self._closed:
                return
            waker = self._waker_locked(loop)
            self._closed = True
        stopped: asyncio.Future[None] = loop.create_future()
        if self._inline is not None:
            self._inline.close()
        if self._thread.stop(stopped, waker):
            await stopped
            self._thread.join()  # returns at once: the thread ends after resolving `stopped`
        self._close_wakers(loop)

    def close_sync(self) -> None:
        """`close` for synchronous code: finish the queued calls, close, stop the thread.

        Blocks until the saver's thread has ended. Calling it again (or `close`) does
        nothing. Calls made after it raise `RuntimeError`.
        """
        with self._wakers_lock:
            if self._closed:
                return
            self._closed = True
        if self._inline is not None:
            self._inline.close()
        if self._thread.stop(None, None):
            self._thread.join()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        self._close_wakers(current)

    def __enter__(self) -> SqliteSaver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close_sync()

    async def __aenter__(self) -> SqliteSaver:
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
        return f"SqliteSaver({self.path!r}, synchronous={self.synchronous!r}{state})"

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or not hasattr(self, "_thread"):
            return
        warnings.warn(
            f"{self!r} was never closed; await saver.close() or use 'async with' (from "
            "synchronous code: saver.close_sync() or 'with')",
            ResourceWarning,
            stacklevel=1,
            source=self,
        )
        self._closed = True
        if self._inline is not None:
            self._inline.close()
        self._thread.stop(None, None)
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        self._close_wakers(current)

    async def _retrying(
        self, operation: str, work: Work, args: tuple[Any, ...], *, writes: bool
    ) -> Any:
        try:
            return await self._call(work, args, writes=writes)
        except sqlite3.OperationalError as error:
            return await self._retry(error, operation, work, args, writes=writes)

    async def _retry(
        self,
        error: sqlite3.OperationalError,
        operation: str,
        work: Work,
        args: tuple[Any, ...],
        *,
        writes: bool,
    ) -> Any:
        """Call `work` again while it fails because the database is locked (or busy)."""
        backoff = self._backoff
        for retry in range(1, backoff.attempts + 1):
            if not _is_locked(error):
                break
            await backoff.wait(retry, self, operation, error)
            try:
                return await self._call(work, args, writes=writes)
            except sqlite3.OperationalError as again:
                error = again
        raise error

    def _call(self, work: Work, args: tuple[Any, ...], *, writes: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        waker = self._wakers.get(loop) or self._waker(loop)
        future = loop.create_future()
        if not self._thread.submit((work, args, writes, future, waker)):
            raise self._closed_error()
        return future

    def _closed_error(self) -> RuntimeError:
        return RuntimeError(f"{self!r} is closed; open a new SqliteSaver to use the file")

    def _waker(self, loop: asyncio.AbstractEventLoop) -> LoopWaker:
        with self._wakers_lock:
            if self._closed:
                raise self._closed_error()
            return self._waker_locked(loop)

    def _waker_locked(self, loop: asyncio.AbstractEventLoop) -> LoopWaker:
        waker = self._wakers.get(loop)
        if waker is None:
            for old_loop, old in list(self._wakers.items()):
                if old_loop.is_closed():  # forget loops that ended (asyncio.run returned)
                    old.close()
                    del self._wakers[old_loop]
            waker = self._wakers[loop] = LoopWaker(loop)
        return waker

    def _close_wakers(self, current: asyncio.AbstractEventLoop | None) -> None:
        with self._wakers_lock:
            wakers, self._wakers = self._wakers, {}
        for loop, waker in wakers.items():
            if loop is current or loop.is_closed():
                waker.close()
            else:
                try:
                    loop.call_soon_threadsafe(waker.close)
                except RuntimeError:  # closed meanwhile
                    waker.close()


def _is_locked(error: sqlite3.OperationalError) -> bool:
    """Whether `error` is SQLite's "database is locked" or "busy": worth a retry."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # raised by Python, not by SQLite
        return False
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
