"""The thread that owns a `SqliteSaver`'s connection, and the cheap way back to the loop.

Every database call of a saver runs on one dedicated thread with one connection, so the
event loop never waits on a lock, a commit or an fsync. Coroutines put jobs on a queue
and await a future. The thread takes the first job, then every write already queued
behind it (up to `MAX_BATCH`), and commits them in one transaction (group commit): each
caller still awaits its own durable commit, but a burst of writes pays for one. A job
that fails with anything but `RunConflictError` (which a job raises before it changes
anything) rolls the whole batch back, and the thread retries each job in a transaction
of its own, so one bad write never takes its neighbours down.

Results go back to the awaiting loop through `LoopWaker`: a socket pair registered
with that loop, written once per batch, whose callback resolves every finished future.
That is several µs cheaper per call than `call_soon_threadsafe`, which wakes the loop
through its self-pipe and then needs another loop iteration. Any number of loops, in
any threads, may submit jobs; each gets its own waker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import socket
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeAlias

from ..errors import RunConflictError

MAX_BATCH = 64
"""The most writes committed together; bounds how long one transaction holds the lock."""

Work: TypeAlias = Callable[..., Any]
Outcome: TypeAlias = "tuple[asyncio.Future[Any], Any, BaseException | None]"


class LoopWaker:
    """Resolves one event loop's futures from the database thread.

    Falls back to `call_soon_threadsafe` on loops without `add_reader` (Windows'
    proactor loop).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ready: collections.deque[Outcome] = collections.deque()
        self._receiver, self._sender = socket.socketpair()
        self._receiver.setblocking(False)
        self._sender.setblocking(False)
        try:
            loop.add_reader(self._receiver.fileno(), self._on_readable)
        except NotImplementedError:
            self._close_sockets()
            self._uses_socket = False
        else:
            self._uses_socket = True

    def deliver(self, outcomes: list[Outcome]) -> None:
        """Hand finished jobs to the loop (called on the database thread)."""
        self._ready.extend(outcomes)
        # try/except rather than contextlib.suppress: this runs once per batch.
        if self._uses_socket:
            try:  # noqa: SIM105
                self._sender.send(b"\0")
            except OSError:
                pass  # the buffer is full (a wake-up is pending) or the waker was closed
        else:
            try:  # noqa: SIM105
                self.loop.call_soon_threadsafe(self._resolve_ready)
            except RuntimeError:
                pass  # the loop is closed: nobody is left to await these futures

    def _on_readable(self) -> None:
        with contextlib.suppress(OSError):
            self._receiver.recv(4096)
        self._resolve_ready()

    def _resolve_ready(self) -> None:
        ready = self._ready
        while ready:
            future, result, error = ready.popleft()
            if future.done():
                continue  # cancelled while the job ran
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def close(self) -> None:
        """Resolve what has arrived and stop listening (call on the loop's own thread,
        or once the loop is closed)."""
        if not self.loop.is_closed():
            self._resolve_ready()  # results sent before the close may not be read yet
        if self._uses_socket:
            if not self.loop.is_closed():
                self.loop.remove_reader(self._receiver.fileno())
            self._close_sockets()
            self._uses_socket = False

    def _close_sockets(self) -> None:
        self._receiver.close()
        self._sender.close()


Job: TypeAlias = "tuple[Work, tuple[Any, ...], bool, asyncio.Future[Any], LoopWaker]"


class _Stop:
    """Tells the thread to close its connection; `waker` learns when it has."""

    def __init__(self, future: asyncio.Future[None] | None, waker: LoopWaker | None) -> None:
        self.future = future
        self.waker = waker


class _Checkpoint:
    """Asks the thread for a PASSIVE WAL checkpoint (for writes made on other connections)."""


_CHECKPOINT = _Checkpoint()


class DatabaseThread:
    """A daemon thread that owns one SQLite connection and runs jobs on it in order.

    `connect` runs on the thread; if it fails, every job fails with its error.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Job | _Stop | _Checkpoint] = queue.SimpleQueue()
        self._stopping = False
        self._lock = threading.Lock()  # no job may be queued behind the stop request
        self._unfinished = 0  # jobs submitted and not yet run (changed under _lock)
        self._checkpoint_queued = False
        # The thread must not refer to the saver, so an unclosed saver can be collected.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called."""
        return self._stopping

    @property
    def busy(self) -> bool:
        """Whether a submitted job has not finished yet (read without a lock: a hint)."""
        return self._unfinished != 0

    def submit(self, job: Job) -> bool:
        """Queue `job` (resolved on its loop once committed); `False` if stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._unfinished += 1
            self._queue.put(job)
            return True

    def request_checkpoint(self) -> None:
        """Queue a PASSIVE checkpoint of the WAL, unless one is queued already.

        The thread is `busy` until it is done, so no write on another connection of
        this saver appends to the WAL meanwhile: the checkpoint can then copy every
        frame, and the next write starts the WAL over instead of making it longer.
        """
        with self._lock:
            if not self._stopping and not self._checkpoint_queued:
                self._checkpoint_queued = True
                self._unfinished += 1
                self._queue.put(_CHECKPOINT)

    def stop(self, future: asyncio.Future[None] | None, waker: LoopWaker | None) -> bool:
        """Finish the queued jobs, close the connection, then resolve `future`.

        Returns `False` (and does nothing) if the thread was already asked to stop.
        """
        with self._lock:
            if self._stopping:
                return False
            self._stopping = True
            self._queue.put(_Stop(future, waker))
            return True

    def join(self) -> None:
        """Wait for the thread to end (it ends right after resolving the stop future)."""
        self._thread.join()

    def _serve(self) -> None:
        try:
            connection = self._connect()
        except BaseException as error:  # reported to every caller, not lost in a thread
            self._fail_all(error)
            return
        try:
            self._serve_jobs(connection)
        except BaseException as error:  # pragma: no cover - a bug: fail calls, never hang
            connection.close()
            self._fail_all(error)
            return
        connection.close()
        self._finish()

    def _serve_jobs(self, connection: sqlite3.Connection) -> None:
        jobs = self._queue
        carried: Job | _Stop | _Checkpoint | None = None
        while True:
            job = carried if carried is not None else jobs.get()
            carried = None
            if isinstance(job, _Stop):
                jobs.put(job)  # _finish resolves it once the connection is closed
                return
            if isinstance(job, _Checkpoint):
                self._checkpoint(connection)
                continue
            if not job[2]:
                outcome = _run_read(connection, job)
                self._done(1)  # before the caller can learn of it: no longer busy then
                if outcome is not None:
                    job[4].deliver([outcome])
                continue
            batch = [job]
            # This thread is the only consumer: a non-empty queue cannot run dry here.
            while len(batch) < MAX_BATCH and not jobs.empty():
                queued = jobs.get_nowait()
                if isinstance(queued, _Stop | _Checkpoint) or not queued[2]:
                    carried = queued
                    break
                batch.append(queued)
            size = len(batch)
            batch = [job for job in batch if not job[3].cancelled()]
            outcomes = _run_writes(connection, batch)
            self._done(size)
            _deliver(batch, outcomes)

    def _done(self, count: int) -> None:
        with self._lock:
            self._unfinished -= count

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        # A busy database or a reader on an old snapshot only makes it partial; the
        # next request (or this connection's own autocheckpoint) goes further.
        with contextlib.suppress(sqlite3.Error):
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        with self._lock:
            self._checkpoint_queued = False
            self._unfinished -= 1

    def _fail_all(self, error: BaseException) -> None:
        while True:
            job = self._queue.get()
            if isinstance(job, _Stop):
                self._queue.put(job)
                self._finish()
                return
            if not isinstance(job, _Checkpoint):
                job[4].deliver([(job[3], None, error)])
            self._done(1)

    def _finish(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Stop):
                if job.future is not None and job.waker is not None:
                    job.waker.deliver([(job.future, None, None)])
            elif isinstance(job, _Checkpoint):
                continue
            else:  # pragma: no cover - submit refuses jobs once stopping
                job[4].deliver([(job[3], None, RuntimeError("the saver was closed"))])


def _run_read(connection: sqlite3.Connection, job: Job) -> Outcome | None:
    work, args, _, future, _ = job
    if future.cancelled():
        return None
    try:
        outcome: Outcome = (future, work(connection, *args), None)
    except BaseException as error:
        outcome = (future, None, error)
    finally:
        _roll_back(connection)
    return outcome


def _run_writes(connection: sqlite3.Connection, batch: list[Job]) -> list[Outcome]:
    if len(batch) <= 1:
        return [_one_transaction(connection, job) for job in batch]
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:  # locked: retrying one by one would wait again
        return [(job[3], None, error) for job in batch]
    try:
        return _group_transaction(connection, batch)
    except Exception:
        return [_one_transaction(connection, job) for job in batch]


def _one_transaction(connection: sqlite3.Connection, job: Job) -> Outcome:
    work, args, _, future, _ = job
    try:
        connection.execute("BEGIN IMMEDIATE")
        result = work(connection, *args)
        connection.execute("COMMIT")
    except BaseException as error:
        _roll_back(connection)
        return (future, None, error)
    return (future, result, None)


def _group_transaction(connection: sqlite3.Connection, batch: list[Job]) -> list[Outcome]:
    """Run `batch` inside the open transaction and commit; roll back and raise on failure."""
    outcomes: list[Outcome] = []
    try:
        for work, args, _, future, _ in batch:
            try:
                outcomes.append((future, work(connection, *args), None))
            except RunConflictError as conflict:
                outcomes.append((future, None, conflict))
        connection.execute("COMMIT")
    except BaseException:
        _roll_back(connection)
        raise
    return outcomes


def _roll_back(connection: sqlite3.Connection) -> None:
    """End an open transaction; a failure to do so shows up in the next job's BEGIN."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _deliver(batch: list[Job], outcomes: list[Outcome]) -> None:
    if not batch:
        return
    if len(batch) == 1:
        batch[0][4].deliver(outcomes)
        return
    by_waker: dict[LoopWaker, list[Outcome]] = {}
    for job, outcome in zip(batch, outcomes, strict=True):
        by_waker.setdefault(job[4], []).append(outcome)
    for waker, finished in by_waker.items():
        waker.deliver(finished)
