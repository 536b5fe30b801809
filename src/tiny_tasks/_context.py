"""The current frame, site ids, `TaskContext`, and the ambient `interrupt()` / `emit()`.

A frame is one running task invocation inside a run. The frame of the code that is
running lives in one `ContextVar`, which is what makes the ambient `interrupt()` work and
keeps concurrent runs apart: asyncio copies the context into every task it creates.

Every effect (a nested task call, an `interrupt`, a step) takes the next index of its
frame at the moment it is called, so ids come from call order, never completion order,
and are the same on every replay of deterministic code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from ._run import Run
    from ._step import RetryPolicy

T = TypeVar("T")

__all__ = [
    "IN_STEP",
    "NO_DEFAULT",
    "Frame",
    "PauseRun",
    "StepMarker",
    "TaskContext",
    "current_frame",
    "deprecate_patch",
    "emit",
    "interrupt",
    "patched",
]


NO_DEFAULT: Any = type("NoDefault", (), {"__repr__": lambda self: "<no default>"})()
"""`interrupt(..., default=)` not given: a deadline that passes raises instead."""


class PauseRun(BaseException):
    """Unwinds a run that must pause. A `BaseException`, like `asyncio.CancelledError`,
    so that user code's `except Exception:` cannot swallow it; `finally` blocks run."""

    def __init__(self, site_id: str) -> None:
        super().__init__(site_id)
        self.site_id = site_id


class Frame:
    """One running task invocation: its run, its place in the task tree, its counters."""

    __slots__ = ("emitted", "next_index", "order", "path", "run")

    def __init__(self, run: Run, path: str, order: tuple[int, ...]) -> None:
        self.run = run
        self.path = path
        self.order = order
        self.next_index = 0
        self.emitted: deque[Any] = deque()

    def allocate(self, label: str, kind: str) -> tuple[str, tuple[int, ...]]:
        """The site id and sort key of the next effect called from this frame.

        `kind` is "interrupt", "step" or "task"; replay checks it against the journal.
        """
        index = self.next_index
        self.next_index = index + 1
        run = self.run
        recorded = run.recorded_at.get(self.path)
        if recorded is not None:  # replay: the journal has sites in this frame
            found = recorded.get(index)
            if found is not None and found[0] == label and found[1] == kind:
                site_id = found[2]
                run.visited.add(site_id)
                return site_id, (*self.order, index)
        site_id = f"{self.path}/{label}#{index}"
        run.visit(site_id, self.path, index, kind)
        return site_id, (*self.order, index)


class StepMarker:
    """The current "frame" while a step's function runs: steps are opaque."""

    __slots__ = ()


IN_STEP = StepMarker()

_current: ContextVar[Frame | StepMarker | None] = ContextVar("tiny_tasks_frame", default=None)


def current_frame() -> Frame | None:
    """The frame of the task running here, or `None` (also inside a step)."""
    frame = _current.get()
    return frame if isinstance(frame, Frame) else None


def _require_frame(what: str) -> Frame:
    frame = _current.get()
    if isinstance(frame, StepMarker):
        raise RuntimeError(
            f"{what}() was called inside a step; a step's result is recorded whole, so it "
            f"cannot pause or stream. Call {what}() in the task body, before or after the step"
        )
    if frame is None:
        raise RuntimeError(
            f"{what}() was called outside a running task; call it from the body of a "
            "function wrapped with @task while that task is running (or use ctx."
            f"{what}(...) with the TaskContext the task receives)"
        )
    return frame


def interrupt(
    value: Any, *, timeout: timedelta | float | None = None, default: Any = NO_DEFAULT
) -> Any:
    """Pause the current run with `value`; on resume, return the answer given for it.

    With `timeout` (a `timedelta` or seconds), the interrupt has a deadline, computed
    when it is first reached and kept across replays: once it has passed, re-attaching
    the run (a `Worker` does it when due) answers it with `default`, or raises
    `InterruptTimeoutError` here when no default was given; an answer given after the
    deadline is refused with `InterruptTimeoutError`.

    Raises `RuntimeError` when called outside a running task. Pausing unwinds the task
    with a `BaseException`, so `except Exception:` around this call does not stop it.
    """
    return _interrupt(_require_frame("interrupt"), value, timeout, default)


def emit(value: Any) -> None:
    """Stream `value` as a partial of the current task, exactly like a yielded value.

    For coroutine tasks, which cannot `yield`. Raises `RuntimeError` outside a task.
    """
    _require_frame("emit").emitted.append(value)


def patched(patch_id: str) -> bool:
    """Whether this run takes the new branch of a code change named `patch_id`.

    `if patched("id"): <new code> else: <old code>`. True for a run that reaches this
    point for the first time with this code; False for a run that went past it before
    the patch existed (its journal holds effects recorded after this point, by the old
    code). The decision is recorded in the run's journal, so every replay takes the same
    branch. The call takes no place among the task's effects: adding it moves no site.
    Raises `RuntimeError` outside a running task. See docs/migrations.md.
    """
    return _patched(_require_frame("patched"), patch_id, deprecated=False)


def deprecate_patch(patch_id: str) -> None:
    """Mark where `patched(patch_id)` was, once its old branch has been removed.

    Accepts runs that took the new branch and runs that have not reached this point
    yet; a run that went past it before the patch existed (so needs the old branch) is
    refused with `ReplayMismatchError`, and `check_runs` reports it. Once no stored run
    needs the old branch, this call can be removed too.
    """
    _patched(_require_frame("deprecate_patch"), patch_id, deprecated=True)


def _patched(frame: Frame, patch_id: str, *, deprecated: bool) -> bool:
    if not isinstance(patch_id, str) or not patch_id:
        raise TypeError(f"a patch id must be a non-empty str, got {patch_id!r}")
    return frame.run.patch(frame.path, frame.next_index, patch_id, deprecated)


def _interrupt(
    frame: Frame, value: Any, timeout: timedelta | float | None = None, default: Any = NO_DEFAULT
) -> Any:
    site_id, order = frame.allocate("interrupt", "interrupt")
    run = frame.run
    journal = run.journal
    answer = journal.answers.get(site_id, NO_DEFAULT)
    if answer is not NO_DEFAULT:
        return answer
    if timeout is not None or journal.deadlines or journal.timeouts:
        from ._waits import interrupt_deadline

        answered, answer = interrupt_deadline(run, site_id, timeout, default)
        if answered:
            return answer
    run.add_pending(site_id, order, value)
    raise PauseRun(site_id)


class TaskContext:
    """What a task function receives as its second positional argument.

    `interrupt`, `emit` and `step` act on this task's frame, wherever they are called
    from (also from helper coroutines the task runs concurrently). A synchronous task
    (a `def` function or generator) runs in a worker thread and calls its steps with
    `step_sync`, which returns the result itself.
    """

    __slots__ = ("_frame",)

    def __init__(self, frame: Frame) -> None:
        self._frame = frame

    @property
    def run_id(self) -> str:
        """The id of the run this task belongs to."""
        return self._frame.run.run_id

    @property
    def path(self) -> str:
        """This task's place in the run's task tree, e.g. `"workflow/inner#0"`."""
        return self._frame.path

    def interrupt(
        self, value: Any, *, timeout: timedelta | float | None = None, default: Any = NO_DEFAULT
    ) -> Any:
        """Pause the run with `value`; on resume, return the answer given for it.

        `timeout` and `default`: a deadline, as for the ambient `interrupt`.
        """
        return _interrupt(self._frame, value, timeout, default)

    def sleep(self, duration: timedelta | float) -> Coroutine[Any, Any, None]:
        """Sleep `duration` durably: a long sleep holds no process (see `tiny_tasks.sleep`)."""
        from ._step import refuse_in_sync_body
        from ._waits import start_sleep

        refuse_in_sync_body("ctx.sleep(...)")
        return start_sleep(self._frame, duration, None)

    def sleep_until(self, when: datetime | float) -> Coroutine[Any, Any, None]:
        """Sleep until `when` (an aware `datetime`, or seconds since the epoch), durably."""
        from ._step import refuse_in_sync_body
        from ._waits import start_sleep

        refuse_in_sync_body("ctx.sleep_until(...)")
        return start_sleep(self._frame, None, when)

    def recv(
        self, topic: str, timeout: timedelta | float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """`await ctx.recv(topic, timeout=None)`: the oldest message sent to this run on
        `topic` (with `send`), or `None` once `timeout` has passed.

        Each message is received exactly once, recorded in the journal. With no message
        yet, the run waits as `sleeping`, holding no process, until one arrives or the
        timeout passes. Needs a checkpointer that keeps messages (every built-in one):
        `CheckpointerTypeError` otherwise.
        """
        from ._step import refuse_in_sync_body
        from ._waits import start_recv

        refuse_in_sync_body("ctx.recv(...)")
        return start_recv(self._frame, topic, timeout)

    def emit(self, value: Any) -> None:
        """Stream `value` as a partial of this task, exactly like a yielded value."""
        self._frame.emitted.append(value)

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new branch of the change `patch_id` (see `patched`)."""
        return _patched(self._frame, patch_id, deprecated=False)

    def deprecate_patch(self, patch_id: str) -> None:
        """Where `patched(patch_id)` was, its old branch removed (see `deprecate_patch`)."""
        _patched(self._frame, patch_id, deprecated=True)

    def step(
        self,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        thread: bool | None = None,
        **kwargs: Any,
    ) -> Awaitable[T]:
        """Run `fn(*args, **kwargs)` once per run: record its result, replay it after.

        The site id is taken when `step` is called, so steps started concurrently keep
        their identity across replays. `retry` and `timeout` (seconds, > 0) apply to each
        attempt. A synchronous `fn` runs in a worker thread, off the event loop, unless
        `thread=False`; a function made with `@step` brings its own options.
        """
        from ._step import refuse_in_sync_body, start_step

        refuse_in_sync_body("ctx.step(...)")
        return start_step(
            self._frame, fn, args, kwargs, retry=retry, timeout=timeout, name=name, thread=thread
        )

    @overload
    def step_sync(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        thread: bool | None = None,
        **kwargs: Any,
    ) -> T: ...
    @overload
    def step_sync(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        thread: bool | None = None,
        **kwargs: Any,
    ) -> T: ...

    def step_sync(
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        thread: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """`step` for a synchronous task: run the step (once per run) and return its result.

        The step runs on the event loop (its function in yet another worker thread if
        it is synchronous) while this task's thread waits. Raises `RuntimeError` when
        called from async code, which must `await ctx.step(...)` instead.
        """
        from ._step import run_step_sync

        return run_step_sync(
            self._frame, fn, args, kwargs, retry=retry, timeout=timeout, name=name, thread=thread
        )

    def __repr__(self) -> str:
        return f"TaskContext(run_id={self.run_id!r}, path={self.path!r})"
