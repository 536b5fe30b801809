"""Cancelling runs: `cancel_run`, and how a driven run learns of it and unwinds.

`cancel_run` only asks (`request_cancel` on the saver): a queued run becomes cancelled
at once; any other run gets `cancel_requested` and a new version. Its driver learns of
it in one of three ways:

* opening it (a worker's claim, a re-attach): it replays, and raises `RunCancelled` at
  its first new effect (a pending interrupt raised again included);
* a write that fails its compare-and-swap: the run reloads the row, and if the cancel
  flag is set and it still holds the lease, it adopts the new version, makes the write,
  and raises `RunCancelled` at that effect;
* a lease renewal: it cancels the async steps in flight through asyncio, and raises
  `RunCancelled` at the next effect (at the cancelled step itself).

`RunCancelled` is an ordinary exception raised inside the task, so `finally` blocks and
`except RunCancelled:` compensation run, and the steps and children they call are still
recorded. Code that catches it and goes on gets it again at its next effect; a task that
returns after catching it ends cancelled all the same. An interrupt is never allowed
while cancelling (it would pause a run that must end). The outcome is `cancelled`.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from ._clock import current_clock
from ._lease import runtime_logger
from .errors import CheckpointerTypeError, RunCancelled, RunConflictError
from .savers.base import Checkpointer, RunInfo, check_checkpointer, check_run_id

if TYPE_CHECKING:
    from ._run import Run

__all__ = [
    "adopt_cancel",
    "cancelled_at_partial",
    "cancel_from_renewal",
    "cancel_run",
    "deliver_cancel",
    "is_cancel",
    "prune",
    "step_cancelled",
]


async def _resolve(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value


def _runtime_method(saver: Checkpointer, name: str, what: str) -> Any:
    check_checkpointer(saver)
    method = getattr(saver, name, None)
    if not callable(method):
        raise CheckpointerTypeError(
            f"{what} needs a saver with the runtime protocol; {type(saver).__name__} has no "
            f"{name} method. Use MemorySaver, SqliteSaver or PostgresSaver, or add the "
            "runtime methods to your saver (see tiny_tasks.savers.base.RuntimeSaver)"
        )
    return method


async def cancel_run(checkpointer: Checkpointer, run_id: str) -> RunInfo | None:
    """Ask for `run_id` to be cancelled; returns the run's fields after the request
    (`None` if it is not stored; a finished run is returned unchanged).

    A queued run is cancelled at once. A paused or sleeping run is due at once: a
    `Worker` (or a call re-attaching it) replays it and unwinds it with `RunCancelled`.
    A running one raises `RunCancelled` at its next effect, wherever its driver runs.
    Raises `CheckpointerTypeError` for a saver without the runtime protocol.
    """
    request = _runtime_method(checkpointer, "request_cancel", "cancel_run")
    info: RunInfo | None = await _resolve(request(check_run_id(run_id), current_clock().now()))
    if info is not None:
        runtime_logger.info(
            "run %r: cancel requested (status %s)", run_id, info.status, extra={"run_id": run_id}
        )
    return info


async def prune(checkpointer: Checkpointer, *, older_than: timedelta | float) -> int:
    """Delete the finished runs (kept outcomes) last updated more than `older_than` ago
    (a `timedelta`, or seconds); returns how many were deleted.

    Raises `CheckpointerTypeError` for a saver without the runtime protocol and
    `ValueError` for a negative age.
    """
    method = _runtime_method(checkpointer, "prune", "prune")
    seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
    if not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"older_than must be a timedelta or seconds >= 0, not {older_than!r}")
    count: int = await _resolve(method(current_clock().now() - seconds))
    return count


def is_cancel(error: BaseException | None) -> bool:
    """`error` is `RunCancelled`, or a group (from a TaskGroup) that holds one."""
    if isinstance(error, RunCancelled):
        return True
    return isinstance(error, BaseExceptionGroup) and error.subgroup(RunCancelled) is not None


def deliver_cancel(run: Run, what: str, *, while_unwinding: bool = True) -> None:
    """At an effect of a run whose cancel was requested: raise `RunCancelled`, unless
    the code runs in an `except`/`finally` the cancellation goes through (compensation:
    allowed, and recorded, when `while_unwinding`)."""
    if run.cancel_error is None:
        runtime_logger.info(
            "run %r: cancelled at %s", run.run_id, what, extra={"run_id": run.run_id}
        )
        _raise(run, f"run {run.run_id!r} was cancelled (cancel_run); it stopped at {what}")
    if _unwinding(sys.exc_info()[1]):
        if while_unwinding:
            return
        _raise(
            run,
            f"run {run.run_id!r} is being cancelled: {what} cannot pause it while it unwinds "
            "(its except/finally blocks may call steps and tasks, not interrupt)",
        )
    _raise(
        run,
        f"run {run.run_id!r} was cancelled, and the task caught RunCancelled and went on to "
        f"{what}. Let RunCancelled propagate (do compensation work inside the except or "
        "finally block that sees it)",
    )


def _unwinding(error: BaseException | None) -> bool:
    """The exception being handled is `RunCancelled`, or was raised while handling it."""
    seen = 0
    while error is not None and seen < 100:
        if is_cancel(error):
            return True
        error, seen = error.__context__, seen + 1
    return False


def _raise(run: Run, message: str) -> NoReturn:
    error = RunCancelled(run.run_id, message)
    if run.cancel_error is None:
        run.cancel_error = error
    raise error


def cancel_from_renewal(run: Run) -> None:
    """A renewal found the cancel flag: cancel the steps in flight through asyncio
    (an async step's function is cancelled; a thread step's runs to its end and is
    recorded; each then raises `RunCancelled` in the task); the rest stops at its next
    effect."""
    if run.cancel_requested:
        return
    run.cancel_requested = True
    runtime_logger.info(
        "run %r: cancel request seen while it runs; stopping it at its next effect",
        run.run_id,
        extra={"run_id": run.run_id},
    )
    for site_id in run.in_flight:
        task = run.steps.get(site_id)
        if task is not None and not task.done() and task not in run.cancelling:
            run.cancelling.add(task)
            task.cancel()


def step_cancelled(run: Run, task: asyncio.Task[Any] | None) -> bool:
    """Whether `task`, in an async step, was cancelled by `cancel_from_renewal` (the
    cancellation is then taken back: the step raises `RunCancelled` instead)."""
    if task is None or task not in run.cancelling:
        return False
    run.cancelling.discard(task)
    task.uncancel()
    return True


async def adopt_cancel(run: Run) -> bool:
    """A write failed its compare-and-swap: if a cancel request made it fail (the flag
    is set and this driver still holds the lease), adopt the new version and return
    True; the write can then be made again."""
    lease = run.lease
    if lease is None or run.saver is None:
        return False
    stored = await _resolve(run.saver.load(run.run_id))
    if stored is None or not stored.cancel_requested or stored.lease_owner != lease.owner:
        return False
    run.version = stored.version
    cancel_from_renewal(run)
    return True


async def cancelled_at_partial(run: Run, error: BaseException | None) -> bool:
    """Whether a partial's write failed because the run was cancelled (its stream then
    closes the task, whose `finally` blocks run, and ends the run as cancelled)."""
    if run.cancel_requested and run.cancel_error is None and error is None:
        pass  # a write made for the partial learnt of the cancel (and was made again)
    elif not isinstance(error, RunCancelled):
        if not isinstance(error, RunConflictError):
            return False
        try:
            if not await adopt_cancel(run):
                return False
        except Exception:
            return False
    if run.cancel_error is None:
        runtime_logger.info(
            "run %r: cancelled at a partial", run.run_id, extra={"run_id": run.run_id}
        )
        run.cancel_error = RunCancelled(
            run.run_id, f"run {run.run_id!r} was cancelled (cancel_run); it stopped at a partial"
        )
    return True
