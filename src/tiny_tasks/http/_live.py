"""The runs this server process drives now, and the watchers each one feeds.

A run started or resumed over HTTP is driven by an asyncio task of the server (not by
the request that started it): it drains the run's stream, so the engine stores every
partial before this module sees it, and hands each partial, with its position in the
run's stream, to the watchers attached here (the SSE responses of this process).
Watchers in other processes read the same partials from the store.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._acting import Acting, acting
from .._clock import current_clock
from .._driver import Driver, driving
from .._journal import decode_journal
from .._run import NO_INPUT, resolve
from .._task import Task
from .._values import Command, Interrupt
from ..errors import (
    InputMismatchError,
    InterruptAnsweredError,
    NoCheckpointError,
    RunBusyError,
    RunCancelled,
    RunConflictError,
    TaskMismatchError,
    UnknownInterruptError,
    VersionMismatchError,
)
from ..savers.base import FINISHED, Checkpoint, Checkpointer
from ..serde import Serializer, default_serializer

__all__ = ["Ending", "LiveRun", "LiveRuns"]

EndKind = Literal["interrupt", "done", "error", "cancelled", "sleeping"]


@dataclass(frozen=True, slots=True)
class Ending:
    """How one attempt at a run ended: paused on `interrupts`, done with `result`,
    failed / cancelled with `error` (type name, message), or asleep (a timer or a
    message will wake it: not an end for its watchers)."""

    kind: EndKind
    interrupts: tuple[Interrupt, ...] = ()
    result: Any = None
    error: tuple[str, str] | None = None


Item = tuple[int, str] | Ending


class LiveRun:
    """One run driven by this process: its next partial's position, its watchers.

    Watchers receive `(seq, text)` for each partial (`text`: its SSE event, from
    `encode(seq, value)`), then the `Ending`.
    """

    def __init__(self, run_id: str, next_seq: int, encode: Callable[[int, Any], str]) -> None:
        self.run_id = run_id
        self.encode = encode
        self.next_seq = next_seq
        self.ending: Ending | None = None
        self.stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.driver: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Queue[Item]] = set()

    def subscribe(self) -> asyncio.Queue[Item]:
        """A queue that receives each later partial `(seq, value)`, then the `Ending`."""
        queue: asyncio.Queue[Item] = asyncio.Queue()
        if self.ending is not None:
            queue.put_nowait(self.ending)
        else:
            self._watchers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Item]) -> None:
        """Stop feeding `queue`."""
        self._watchers.discard(queue)

    def publish(self, item: Item) -> None:
        """Hand `item` to every watcher."""
        for queue in self._watchers:
            queue.put_nowait(item)

    def publish_partial(self, seq: int, value: Any) -> None:
        """Hand partial `seq` to every watcher, as its SSE text (encoded once for all)."""
        if self._watchers:
            self.publish((seq, self.encode(seq, value)))

    def mark_stored(self) -> None:
        """The attempt's first write is stored (called by the engine, see `_acting`)."""
        if not self.stored.done():
            self.stored.set_result(None)


Watch = tuple[LiveRun, "asyncio.Queue[Item] | None"]
"""A run started here, and a queue subscribed to it from its start (if asked for)."""


class LiveRuns:
    """Starts, resumes and re-attaches runs for a `TaskApp`; one per app."""

    def __init__(
        self,
        tasks: dict[str, Task[Any, Any, Any]],
        saver: Checkpointer,
        orphan_after: float,
        encode: Callable[[int, Any], str],
        driver: Driver,
    ) -> None:
        self.tasks = tasks
        self.driver = driver
        self.saver = saver
        self.serde: Serializer = getattr(saver, "serde", None) or default_serializer()
        self.orphan_after = orphan_after
        self.encode = encode
        self.live: dict[str, LiveRun] = {}
        # One lock per run id while someone holds it: requests of this process that start,
        # resume or re-attach one run go one at a time.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- reading --------------------------------------------------------------------

    async def load(self, run_id: str) -> Checkpoint | None:
        """The stored run, or `None`."""
        stored: Checkpoint | None = await resolve(self.saver.load(run_id))
        return stored

    # -- starting and resuming -------------------------------------------------------

    async def start(
        self,
        task: Task[Any, Any, Any],
        given: Any,
        run_id: str,
        principal: str | None,
        watch: bool = False,
        no_input: Callable[[], Any] = lambda: None,
    ) -> Watch | None:
        """Start `task` on `given` as run `run_id`; return `None` if it existed.

        Returns the started run and, with `watch`, a queue subscribed to it before it
        started (so it misses nothing). An existing run of that id with the same input
        (or `given=NO_INPUT`) is left as it is; a new run without input starts on
        `no_input()`.
        Raises `InputMismatchError` / `TaskMismatchError` for an existing run with
        another input or task, and whatever the run raised before its first write.
        """
        async with self._lock(run_id):
            stored = await self.load(run_id)
            if stored is not None:
                self._check_same(stored, task, given)
                return None
            if given is NO_INPUT:
                given = no_input()
            # Stored first (queued, with its input and who submitted it): from here on
            # the run exists whatever happens to this process; then driven here.
            with acting(Acting(principal)):
                await task.submit(
                    given,
                    run_id=run_id,
                    checkpointer=self.saver,
                    keep=self.driver.keep is not False,
                )
            live = LiveRun(run_id, 0, self.encode)
            try:
                return await self._launch(live, self._reattach(task, run_id), None, watch)
            except (RunBusyError, RunConflictError):
                # Submitted at the same moment by another request, or claimed by a
                # worker first: it is driven elsewhere; watchers follow it from the store.
                return live, None

    def _check_same(self, stored: Checkpoint, task: Task[Any, Any, Any], given: Any) -> None:
        if stored.task_name != task.name:
            raise TaskMismatchError(stored.run_id, stored.task_name, task.name)
        journal = decode_journal(stored, self.serde)
        if given is not NO_INPUT and journal.input != given:
            raise InputMismatchError(stored.run_id, journal.input, given)

    async def resume(
        self,
        task: Task[Any, Any, Any],
        command: Command,
        run_id: str,
        principal: str | None,
        if_match: str | None,
        watch: bool = False,
    ) -> Watch:
        """Answer the paused run `run_id` with `command` and drive the rest of it.

        Returns (as `start`) once the answers are stored (of two concurrent answers, the one whose
        write lands first). Raises `InterruptAnsweredError` naming what won when the
        interrupts were answered first by someone else, `VersionMismatchError` when
        `if_match` is not the stored version, `NoCheckpointError` for a missing run.
        """
        async with self._lock(run_id):
            stored = await self.load(run_id)
            if stored is None:
                raise NoCheckpointError(run_id)
            if stored.task_name != task.name:
                raise TaskMismatchError(run_id, stored.task_name, task.name)
            self._check_still_pending(stored, command)
            if if_match is not None and if_match != str(stored.version):
                raise VersionMismatchError(run_id, if_match, stored.version)
            live = LiveRun(run_id, stored.delivered, self.encode)
            try:
                return await self._launch(
                    live,
                    lambda: task(
                        command, run_id=run_id, checkpointer=self.saver, keep=self.driver.keep
                    ),
                    principal,
                    watch,
                )
            except (RunConflictError, RunBusyError, NoCheckpointError, UnknownInterruptError):
                # Another process's answer landed between our read and our write.
                stored = await self.load(run_id)
                if stored is None:
                    raise
                self._check_still_pending(stored, command)
                raise

    def _check_still_pending(self, stored: Checkpoint, command: Command) -> None:
        journal = decode_journal(stored, self.serde)
        sites = list(command.answers) if command.answers is not None else list(journal.pending)
        if stored.status == "paused" and all(site in journal.pending for site in sites):
            return
        if stored.status != "paused" or any(site in journal.answers for site in sites):
            if not sites:  # a plain resume of a run that no longer waits: what it answered
                sites = list(journal.answered_by or journal.answers)[-1:]
            answered = {
                site: (journal.answers[site], journal.answered_by.get(site))
                for site in sites
                if site in journal.answers
            }
            raise InterruptAnsweredError(stored.run_id, answered)

    async def adopt(self, stored: Checkpoint) -> LiveRun | None:
        """Re-attach a run that nobody drives but has something to do now (see
        `_orphaned`): the engine starts a queued run, takes over an abandoned one, wakes
        a sleeper that is due and unwinds a cancelled one. Returns the run's `LiveRun`,
        or `None` if it is not such a run, its task is not served here, or someone else
        took it first.
        """
        task = self.tasks.get(stored.task_name)
        if task is None or not _orphaned(stored, self.orphan_after):
            return None
        run_id = stored.run_id
        async with self._lock(run_id):
            if run_id in self.live:
                return self.live[run_id]
            live = LiveRun(run_id, stored.delivered, self.encode)
            try:
                await self._launch(live, self._reattach(task, run_id), None, False)
            except Exception:
                return None  # another process re-attached it first, or it cannot go on
            return live

    def _reattach(self, task: Task[Any, Any, Any], run_id: str) -> Callable[[], Any]:
        return lambda: task(run_id=run_id, checkpointer=self.saver, keep=self.driver.keep)

    async def _launch(
        self, live: LiveRun, make_stream: Callable[[], Any], principal: str | None, watch: bool
    ) -> Watch:
        """Start driving `live`; return once its first write is stored (or it ended
        without writing: a re-attach with nothing to do).

        Raises what the run raised if it failed before storing anything.
        """
        with acting(Acting(principal, live.mark_stored)), driving(self.driver):
            stream = make_stream()
        queue = live.subscribe() if watch else None
        live.driver = asyncio.create_task(
            self._drive(live, stream), name=f"tiny-tasks run {live.run_id}"
        )
        self.live[live.run_id] = live
        await asyncio.wait([live.stored, live.driver], return_when=asyncio.FIRST_COMPLETED)
        if not live.stored.done():
            error = live.driver.result()
            if error is not None:  # it ended before storing anything: it did not start
                raise error
        return live, queue

    async def _drive(self, live: LiveRun, stream: Any) -> Any:
        """Drain the run's stream, feeding the watchers; return an error that ended it
        before its first write (for `_launch`)."""
        interrupts: list[Interrupt] = []
        rewound = False
        early: BaseException | None = None
        ending = Ending("error", error=("ServerStopped", "the server stopped driving the run"))
        try:
            async for partial, snapshot, interrupt in stream:
                if interrupt is not None:
                    interrupts.append(interrupt)
                    continue
                if snapshot.rewind is not None and not rewound:
                    live.next_seq, rewound = snapshot.rewind, True
                seq = live.next_seq
                live.next_seq += 1
                live.publish_partial(seq, partial)
            if interrupts:
                ending = Ending("interrupt", tuple(interrupts))
            elif getattr(stream, "status", None) == "sleeping":
                ending = Ending("sleeping")
            else:
                ending = Ending("done", result=stream.result)
        except RunCancelled as error:
            ending = Ending("cancelled", error=(type(error).__name__, str(error)))
        except Exception as error:
            ending = Ending("error", error=(type(error).__name__, str(error)))
            if not live.stored.done():
                early = error
        finally:
            live.ending = ending
            live.publish(ending)
            if self.live.get(live.run_id) is live:
                del self.live[live.run_id]
        return early

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def aclose(self) -> None:
        """Stop driving every run (the store keeps them where they are)."""
        drivers = [live.driver for live in self.live.values() if live.driver is not None]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)


def _orphaned(stored: Checkpoint, orphan_after: float) -> bool:
    """Whether nobody drives `stored` although it has something to do now: queued; or
    running with an expired lease, or (a saver without leases) without a write for
    `orphan_after` seconds; or paused / sleeping with a cancel request or a due timer.
    Never while a live lease is held."""
    now = current_clock().now()
    if stored.lease_owner is not None and (stored.lease_expires or 0.0) > now:
        return False  # a live driver holds it
    if stored.status == "queued":
        return True
    if stored.status == "running":
        return stored.lease_owner is not None or now - stored.updated_at >= orphan_after
    if stored.status in ("paused", "sleeping"):  # a cancel to unwind, or a timer due
        return stored.cancel_requested or (stored.wake_at is not None and stored.wake_at <= now)
    return False


def finished(stored: Checkpoint) -> bool:
    """Whether `stored` is a finished run (kept with its outcome)."""
    return stored.status in FINISHED
