"""`Worker`: a process's loop that claims due runs from the store and drives them.

The runs table is the queue. A worker claims runs that are due (queued, running with an
expired lease, paused or sleeping with a wake time that passed, or with a cancel to
deliver) through the saver's `claim_runs`, which leases them to the worker's owner id,
and drives each one by re-attaching it under `driving(Driver(owner, keep=True, ...))`
and `use_clock(clock)`: the engine does the rest (starts a queued run, takes over an
expired one, wakes a sleeper, answers expired deadlines, unwinds a cancelled one, renews
the lease while it runs and releases it with the run's last write).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from . import _telemetry
from ._clock import Clock, current_clock, use_clock
from ._driver import Driver, driving, new_owner_id
from ._task import Task
from .errors import (
    CheckpointerTypeError,
    RunBusyError,
    RunCancelled,
    RunConflictError,
    TaskInterrupted,
    TaskSleeping,
)
from .savers.base import RunInfo, check_checkpointer

__all__ = ["Worker"]

log = logging.getLogger("tiny_tasks.runtime")

RUNTIME_METHODS = ("claim_runs", "renew_lease", "release_lease")
"""What a saver must have to back a worker (the rest of the runtime protocol is used by
the engine when a run needs it)."""


def _seconds(what: str, value: float | timedelta, *, allow_zero: bool = False) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"Worker {what} must be seconds (a float) or a timedelta, not {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        raise ValueError(f"Worker {what} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return float(seconds)


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Worker:
    """Claims due runs of `tasks` from `checkpointer` and drives them, `concurrency` at once.

    `await worker.run()` works until its task is cancelled or the process receives
    SIGTERM or SIGINT (handlers installed when it runs in the main thread), or `stop()`
    is called: it then stops claiming, gives the runs it drives `shutdown_grace` seconds
    to finish or pause, stops the rest at their next write and releases their leases,
    so other workers take them over at once. `await worker.run_once()` claims and drives
    what is due now, until nothing is, and returns how many attempts it drove (for cron
    jobs and serverless functions).

    Only runs of the given tasks are claimed (by task name). `poll_interval`: how often
    an idle worker asks the store for due runs (with `listen`, a saver's
    `wait_for_due` hint, PostgreSQL's NOTIFY, wakes it earlier; polling stays the
    correctness path). `lease` / `renew_every`: the lease's length and how often the
    runs' drivers renew it; a run whose worker died is taken over once its lease
    expired. `clock`: the clock the runs read (tests pass a `ManualClock`). `owner`:
    this worker's lease owner id (default: a fresh one). `keep`: runs keep their
    outcome when they finish. `tracing=True` emits OpenTelemetry spans (needs
    `tiny-tasks[otel]`): one per run attempt, one per step executed.

    Floats are seconds; a `timedelta` is accepted too. The checkpointer must have the
    runtime methods (`claim_runs`, `renew_lease`, `release_lease`, ...): every built-in
    saver does; `CheckpointerTypeError` otherwise. An error in one run never stops the
    worker: it is logged on `tiny_tasks.runtime` with the run's id.
    """

    def __init__(
        self,
        checkpointer: Any,
        tasks: Iterable[Task[Any, Any, Any]],
        *,
        concurrency: int = 50,
        poll_interval: float | timedelta = 1.0,
        lease: float | timedelta = 30.0,
        renew_every: float | timedelta = 10.0,
        shutdown_grace: float | timedelta = 10.0,
        clock: Clock | None = None,
        owner: str | None = None,
        keep: bool = True,
        listen: bool = True,
        tracing: bool = False,
    ) -> None:
        check_checkpointer(checkpointer)
        missing = [m for m in RUNTIME_METHODS if not callable(getattr(checkpointer, m, None))]
        if missing:
            raise CheckpointerTypeError(
                f"Worker needs a checkpointer with the runtime methods (claim_runs, "
                f"renew_lease, release_lease, request_cancel, send_message, next_message, "
                f"prune); {type(checkpointer).__name__} has no {', '.join(missing)}. Use a "
                "built-in saver (MemorySaver, SqliteSaver, PostgresSaver) or add them to "
                "yours (see RuntimeSaver in tiny_tasks.savers.base)"
            )
        self._tasks: dict[str, Task[Any, Any, Any]] = {}
        for item in tasks:
            if not isinstance(item, Task):
                raise TypeError(f"Worker tasks must be Task objects (from @task), not {item!r}")
            other = self._tasks.setdefault(item.name, item)
            if other is not item:
                raise ValueError(
                    f"Worker got two tasks named {item.name!r}: a run stores its task's name "
                    "only, so each name must be one task; rename one with @task('name')"
                )
        if not self._tasks:
            raise ValueError("Worker needs at least one task (tasks=[...]) whose runs it drives")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"Worker concurrency must be an int >= 1, not {concurrency!r}")
        self.checkpointer = checkpointer
        self.concurrency = concurrency
        self.poll_interval = _seconds("poll_interval", poll_interval)
        self.lease = _seconds("lease", lease)
        self.renew_every = _seconds("renew_every", renew_every)
        if self.renew_every >= self.lease:
            raise ValueError(
                f"Worker renew_every ({self.renew_every} s) must be shorter than lease "
                f"({self.lease} s), or leases expire before they are renewed"
            )
        self.shutdown_grace = _seconds("shutdown_grace", shutdown_grace, allow_zero=True)
        self.clock = clock
        self.owner = owner or new_owner_id("worker")
        self.keep = keep
        self.listen = listen
        self.tracing = tracing
        if tracing:
            _telemetry.require()
        self._driver = Driver(self.owner, keep, self.lease, self.renew_every)
        self._active: dict[str, asyncio.Task[None]] = {}
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._saturated = False
        self.driven = 0
        """How many run attempts this worker has driven (finished, paused, failed...)."""

    @property
    def task_names(self) -> list[str]:
        """The names of the tasks whose runs this worker claims."""
        return list(self._tasks)

    @property
    def active(self) -> list[str]:
        """The run ids being driven now."""
        return list(self._active)

    def __repr__(self) -> str:
        return (
            f"Worker(owner={self.owner!r}, tasks={self.task_names!r}, "
            f"concurrency={self.concurrency}, active={len(self._active)})"
        )

    def _now(self) -> float:
        return (self.clock or current_clock()).now()

    async def _sleep(self, seconds: float) -> None:
        await (self.clock or current_clock()).sleep(seconds)

    # -- claiming -------------------------------------------------------------------

    async def _claim(self) -> list[RunInfo]:
        free = self.concurrency - len(self._active)
        if free <= 0:
            return []
        now = self._now()
        claimed: list[RunInfo] = await _resolve(
            self.checkpointer.claim_runs(self.owner, self.task_names, now, now + self.lease, free)
        )
        self._saturated = len(claimed) == free
        for info in claimed:
            log.info(
                "claimed run %r (task %r, was %s%s)",
                info.run_id,
                info.task_name,
                info.status,
                _why(info, now),
                extra={"run_id": info.run_id, "task": info.task_name, "owner": self.owner},
            )
            self._start(info)
        return claimed

    def _start(self, info: RunInfo) -> None:
        task = asyncio.create_task(self._drive(info), name=f"tiny-tasks run {info.run_id}")
        self._active[info.run_id] = task
        task.add_done_callback(lambda _: self._finished(info.run_id))

    def _finished(self, run_id: str) -> None:
        self._active.pop(run_id, None)
        self.driven += 1
        if self._saturated and self._wake is not None:
            self._wake.set()  # the last claim filled every slot: more may be due

    # -- driving ----------------------------------------------------------------------

    async def _drive(self, info: RunInfo) -> None:
        run_id = info.run_id
        task = self._tasks[info.task_name]
        extra = {"run_id": run_id, "task": info.task_name, "owner": self.owner}
        clock = self.clock or current_clock()
        with (
            driving(self._driver),
            use_clock(clock),
            _telemetry.attempt(self.tracing, run_id, info.task_name, info.status) as span,
        ):
            try:
                stream = task(run_id=run_id, checkpointer=self.checkpointer)
                async for _ in stream:
                    pass
                status = getattr(stream, "status", None) or (
                    "paused" if stream.interrupts else "done"
                )
                _telemetry.set_outcome(span, status)
                log.debug("run %r ended its attempt: %s", run_id, status, extra=extra)
            except asyncio.CancelledError:
                _telemetry.set_outcome(span, "stopped")
                raise
            except RunCancelled:
                _telemetry.set_outcome(span, "cancelled")
                log.info("run %r was cancelled", run_id, extra=extra)
            except (TaskInterrupted, TaskSleeping) as paused:
                _telemetry.set_outcome(span, type(paused).__name__)
            except RunConflictError as error:
                _telemetry.set_outcome(span, "conflict", error)
                log.warning(
                    "run %r: write conflict, left to its new owner: %s", run_id, error, extra=extra
                )
            except RunBusyError as error:
                _telemetry.set_outcome(span, "busy", error)
                log.warning("run %r is busy: %s", run_id, error, extra=extra)
            except Exception as error:
                # A task's own failure is its outcome (kept by the engine); the worker
                # goes on either way.
                _telemetry.set_outcome(span, "failed", error)
                log.warning(
                    "run %r failed: %s: %s",
                    run_id,
                    type(error).__name__,
                    error,
                    extra=extra,
                    exc_info=error,
                )

    # -- loops ------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim and drive what is due now, until nothing is; return how many attempts
        were driven (a run that was continued twice, for example after a message arrived
        while it ran, counts twice)."""
        started = self.driven
        while True:
            claimed = await self._claim()
            if not claimed and not self._active:
                return self.driven - started
            if self._active and (not claimed or not self._saturated):
                await asyncio.wait(list(self._active.values()), return_when=asyncio.FIRST_COMPLETED)

    def stop(self) -> None:
        """Ask a running `run()` to stop (as SIGTERM does). Safe from a signal handler."""
        if self._stopping is not None:
            self._stopping.set()

    async def run(self) -> None:
        """Work until cancelled, stopped (`stop()`) or SIGTERM/SIGINT; then stop claiming,
        give running runs `shutdown_grace` seconds, stop the rest at their next write and
        release their leases."""
        if self._stopping is not None:
            raise RuntimeError(f"{self!r} is already running; create one Worker per loop")
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        installed = self._install_signals()
        listener = asyncio.create_task(self._listen()) if self.listen else None
        log.info(
            "worker %s started (tasks %s, concurrency %d)",
            self.owner,
            ", ".join(self.task_names),
            self.concurrency,
            extra={"owner": self.owner},
        )
        try:
            while not self._stopping.is_set():
                await self._poll_once()
                if self._stopping.is_set():
                    break
                if self._saturated and len(self._active) < self.concurrency:
                    continue
                await self._idle()
        finally:
            try:
                await self._shutdown()
            finally:
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(BaseException):
                        await listener
                for sig in installed:
                    asyncio.get_running_loop().remove_signal_handler(sig)
                self._stopping = None
                self._wake = None

    async def _poll_once(self) -> None:
        try:
            await self._claim()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the store is down: try again at the next poll
            self._saturated = False
            log.warning(
                "claiming failed, retrying in %.1f s: %s",
                self.poll_interval,
                error,
                extra={"owner": self.owner},
                exc_info=error,
            )

    async def _idle(self) -> None:
        """Wait for the poll interval, a wake-up hint, a freed slot after a full claim,
        or a stop."""
        assert self._stopping is not None
        assert self._wake is not None
        waits = [
            asyncio.ensure_future(self._sleep(self.poll_interval)),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        # Cleared after the wait, not before: a hint that came during the claim wakes
        # the next wait at once.
        self._wake.clear()

    async def _shutdown(self) -> None:
        if not self._active:
            log.info("worker %s stopped", self.owner, extra={"owner": self.owner})
            return
        log.info(
            "worker %s stopping: %d runs get %.1f s to finish or pause",
            self.owner,
            len(self._active),
            self.shutdown_grace,
            extra={"owner": self.owner},
        )
        running = list(self._active.items())
        if self.shutdown_grace > 0:
            grace = asyncio.ensure_future(self._sleep(self.shutdown_grace))
            pending = {task for _, task in running}
            try:
                while pending and not grace.done():
                    done, _ = await asyncio.wait(
                        [grace, *pending], return_when=asyncio.FIRST_COMPLETED
                    )
                    pending -= done
            finally:
                grace.cancel()
                await asyncio.gather(grace, return_exceptions=True)
        left = [(run_id, task) for run_id, task in running if not task.done()]
        for _, task in left:
            task.cancel()
        await asyncio.gather(*(task for _, task in left), return_exceptions=True)
        for run_id, _ in left:
            try:
                await _resolve(self.checkpointer.release_lease(run_id, self.owner))
            except Exception as error:
                log.warning(
                    "run %r: releasing its lease failed (it expires by itself): %s",
                    run_id,
                    error,
                    extra={"run_id": run_id, "owner": self.owner},
                )
            else:
                log.info(
                    "run %r stopped at shutdown, lease released",
                    run_id,
                    extra={"run_id": run_id, "owner": self.owner},
                )
        log.info("worker %s stopped", self.owner, extra={"owner": self.owner})

    def _install_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, nested loops
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("worker %s got %s: stopping", self.owner, sig.name, extra={"owner": self.owner})
        self.stop()

    async def _listen(self) -> None:
        """Wake the loop when the saver hears that a run may have become due (PostgreSQL's
        `wait_for_due`: a NOTIFY on `tiny_tasks_due`). A hint only: a saver without it,
        or one that cannot LISTEN (PgBouncer in transaction mode), leaves the worker
        polling, which stays the correctness path."""
        wait_for_due = getattr(self.checkpointer, "wait_for_due", None)
        if wait_for_due is None:
            return
        with use_clock(self.clock or current_clock()):
            while True:
                try:
                    heard = await wait_for_due(max(self.poll_interval, 60.0))
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.info(
                        "worker %s: no wake-up hint (%s); polling every %.1f s",
                        self.owner,
                        error,
                        self.poll_interval,
                        extra={"owner": self.owner},
                    )
                    return
                if heard and self._wake is not None:
                    self._wake.set()


def _why(info: RunInfo, now: float) -> str:
    """Why a claimed run was due, for the claim's log record."""
    if info.cancel_requested:
        return ", a cancel to deliver"
    if info.status == "running":
        return ": recovery, its former driver's lease expired"
    if info.status in ("paused", "sleeping"):
        return ": its wake time passed (timer, deadline or message)"
    return ""
