"""Steps: calls whose result is recorded once per run and replayed afterwards.

`await ctx.step(fn, *args)` or a function decorated with `@step`, called inside a task;
in a synchronous task, `ctx.step_sync(fn, *args)`. The first execution's result (or the
error that survived its retries) is stored in the journal under the step's site id
before it is handed back; every replay returns the recorded result, or raises the
recorded error again, without calling `fn`.

A synchronous step function runs in a worker thread (`asyncio.to_thread`, with the
caller's context), so a blocking call in it never stalls the event loop; `thread=False`
runs it on the loop instead (for a quick function, or one that needs the loop).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import functools
import hashlib
import inspect
import math
import random
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, TypeVar, overload

from . import _telemetry
from ._cancel import deliver_cancel, step_cancelled
from ._clock import current_clock
from ._context import IN_STEP, Frame, _current, current_frame
from ._journal import StepRecord
from ._sync import body_thread
from .errors import (
    ReplayMismatchError,
    RunCancelled,
    SerializationError,
    StepFailedError,
    TaskDefinitionError,
    TinyTasksError,
)

T = TypeVar("T")
Params = ParamSpec("Params")

__all__ = ["RetryPolicy", "run_step_sync", "start_step", "step"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step retries: `attempts` in all, exponential backoff with full jitter.

    The delay before retry n (1-based) is a random time up to
    `min(max_delay, initial_delay * multiplier ** (n - 1))`. Only exceptions that are
    instances of `retry_on` (an exception class or a tuple of them) are retried; others
    are recorded at once.

    Raises `ValueError` naming the field for `attempts` below 1, a negative or
    non-finite delay, or a `multiplier` below 1 or not finite (1 keeps the delay
    constant); `TypeError` for a `retry_on` that is not exception classes.
    """

    attempts: int = 3
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"RetryPolicy.attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        for field in ("initial_delay", "max_delay"):
            _check_seconds(f"RetryPolicy.{field}", getattr(self, field), allow_zero=True)
        multiplier = self.multiplier
        if not _is_number(multiplier) or not math.isfinite(multiplier) or multiplier < 1:
            raise ValueError(
                f"RetryPolicy.multiplier must be a finite number >= 1 (1 keeps the delay "
                f"constant), got {multiplier!r}"
            )
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            object.__setattr__(self, "retry_on", retry_on := (retry_on,))
        if not isinstance(retry_on, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in retry_on
        ):
            raise TypeError(
                "RetryPolicy.retry_on must be an exception class or a tuple of them, "
                f"got {retry_on!r}"
            )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        try:
            growth = self.initial_delay * self.multiplier ** (retry - 1)
        except OverflowError:
            growth = math.inf
        ceiling = min(self.max_delay, growth)
        return random.uniform(0, ceiling) if self.jitter else ceiling


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_seconds(what: str, value: object, *, allow_zero: bool) -> None:
    """Raise `ValueError` naming `what` unless `value` is a finite, positive number."""
    if (
        _is_number(value)
        and math.isfinite(value)  # type: ignore[arg-type]
        and (value > 0 or (allow_zero and value == 0))  # type: ignore[operator]
    ):
        return
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{what} must be a finite number of seconds {bound}, got {value!r}")


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None:
        _check_seconds("the step timeout", timeout, allow_zero=False)


class _StepOptions(NamedTuple):
    """What `@step` recorded about a function, so `ctx.step(fn)` can use it too."""

    fn: Callable[..., Any]
    name: str | None
    retry: RetryPolicy | None
    timeout: float | None
    thread: bool


_NO_RETRY = RetryPolicy(attempts=1)


def start_step(
    frame: Frame,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    retry: RetryPolicy | None,
    timeout: float | None,
    name: str | None,
    thread: bool | None = None,
) -> Coroutine[Any, Any, Any]:
    """Take the step's site id now (call order) and return the coroutine that runs it.

    A function made with `@step` brings its own options; those given here win.
    """
    options: _StepOptions | None = getattr(fn, "__tiny_tasks_step__", None)
    if options is not None:
        fn = options.fn
        name = name if name is not None else options.name
        retry = retry if retry is not None else options.retry
        timeout = timeout if timeout is not None else options.timeout
        thread = thread if thread is not None else options.thread
    elif not callable(fn):
        raise _not_callable(fn)
    _check_timeout(timeout)
    label = str(name or getattr(fn, "__name__", None) or "step")
    label = label.replace("/", "_").replace("#", "_")
    site_id, _ = frame.allocate(label, "step")
    in_thread = thread is not False
    return _run_step(frame, site_id, fn, args, kwargs, retry or _NO_RETRY, timeout, in_thread)


def run_step_sync(
    frame: Frame,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    retry: RetryPolicy | None,
    timeout: float | None,
    name: str | None,
    thread: bool | None,
) -> Any:
    """Run a step from a synchronous task body's worker thread; return its result."""
    gate = body_thread()
    if gate is None:
        raise RuntimeError(
            "ctx.step_sync() waits for the step, so it works only in a synchronous task "
            "(a def function or generator, which runs in a worker thread); in an async "
            "task, use await ctx.step(...)"
        )
    coro = start_step(
        frame, fn, args, kwargs, retry=retry, timeout=timeout, name=name, thread=thread
    )
    return gate.call(lambda: coro)


def refuse_in_sync_body(what: str) -> None:
    """Raise if called from a synchronous task body, where an awaitable is of no use."""
    if body_thread() is not None:
        raise RuntimeError(
            f"{what} returns an awaitable, which a synchronous task cannot await; in a "
            "def task, call the step with ctx.step_sync(fn, *args) (take the TaskContext "
            "as the task's second parameter)"
        )


async def _run_step(
    frame: Frame,
    site_id: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
    thread: bool,
) -> Any:
    run = frame.run
    args_hash = _hash_arguments(run.serde, args, kwargs) if run.saving else None
    recorded = run.journal.steps.get(site_id)
    if recorded is not None:
        if recorded.args_hash is not None and args_hash not in (None, recorded.args_hash):
            run.refuse(
                ReplayMismatchError(
                    run.run_id,
                    site_id,
                    f"a call with arguments hash {recorded.args_hash}",
                    f"a call with arguments hash {args_hash} (other arguments)",
                )
            )
        return _replay(site_id, recorded)
    run.before_effect(f"step {site_id!r}")
    run.step_started(site_id)
    try:
        if run.deferred is not None:
            await run.claim()  # a resume's answers are written before its first new effect
        token = _current.set(IN_STEP)  # a step is opaque: no interrupts or nested runs in it
        # A run that is cancelled cancels its steps in flight through asyncio (`_cancel`).
        run.in_flight.add(site_id)
        began = current_clock().now()
        try:
            with _telemetry.step_span(run.run_id, run.task_name, site_id) as span:
                value, error = await _attempt_all(fn, args, kwargs, policy, timeout, thread)
                if error is not None:
                    _telemetry.set_outcome(span, "failed", error)
        except asyncio.CancelledError:
            if not step_cancelled(run, asyncio.current_task()):
                raise
            deliver_cancel(run, f"step {site_id!r}")
            raise
        except _CancelledInThread as stopped:
            # The function ran on in its thread and had its effect: record its outcome,
            # or a resume would run it a second time. Then stop as asked.
            value, error = await _outcome_of(stopped.future)
            cancelled = step_cancelled(run, asyncio.current_task())
            try:
                await run.record_step(site_id, _record_of(args_hash, value, error), began)
            except RunCancelled:
                raise  # the run was cancelled: it stops here, its step recorded
            except TinyTasksError:
                pass
            if cancelled:
                deliver_cancel(run, f"step {site_id!r}")
            raise asyncio.CancelledError() from None
        finally:
            _current.reset(token)
            run.in_flight.discard(site_id)
            if run.cancelling:  # it caught the cancellation: taken back
                step_cancelled(run, asyncio.current_task())
        # No await between the function's end and the record's write starting: once
        # started, the write completes even if this task is cancelled while it waits.
        await run.record_step(site_id, _record_of(args_hash, value, error), began)
        if error is not None:
            raise error
        return value
    finally:
        run.step_finished(site_id)


def _record_of(args_hash: str | None, value: Any, error: BaseException | None) -> StepRecord:
    if error is not None:
        return StepRecord(args_hash, error=_describe_error(error))
    return StepRecord(args_hash, value)


class _CancelledInThread(BaseException):
    """A step awaiting its function in a worker thread was cancelled; the thread runs on."""

    def __init__(self, future: asyncio.Future[Any]) -> None:
        super().__init__()
        self.future = future


async def _outcome_of(future: asyncio.Future[Any]) -> tuple[Any, BaseException | None]:
    """Wait for a worker thread's function to end, whatever cancellations arrive meanwhile."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(future)
    error = future.exception()
    if error is not None:
        return None, error
    result = future.result()
    if inspect.isawaitable(result):  # a plain function that returned an awaitable: not run
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return None, asyncio.CancelledError()
    return result, None


async def _attempt_all(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
    thread: bool,
) -> tuple[Any, BaseException | None]:
    call = _call_in_thread if thread and not inspect.iscoroutinefunction(fn) else _call
    for attempt in range(1, policy.attempts + 1):
        try:
            return await _attempt(call, fn, args, kwargs, timeout), None
        except _CancelledInThread:
            raise
        except policy.retry_on as exc:
            if isinstance(exc, SerializationError) or attempt == policy.attempts:
                return None, exc
            await asyncio.sleep(policy.delay(attempt))
        except Exception as exc:  # not retryable: recorded at once
            return None, exc
    raise AssertionError("unreachable")  # pragma: no cover


Caller = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


async def _attempt(
    call: Caller,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None,
) -> Any:
    if call is _call_in_thread:
        return await _call_in_thread(fn, args, kwargs, timeout)
    if timeout is None:
        return await call(fn, args, kwargs)
    async with asyncio.timeout(timeout):
        return await call(fn, args, kwargs)


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


async def _call_in_thread(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None = None,
) -> Any:
    """Run `fn` in a worker thread (seeing this context), within `timeout` seconds.

    A thread cannot be interrupted. On a timeout the function runs on to its end in the
    background and its result is dropped (the attempt failed with `TimeoutError`). On a
    cancellation `_CancelledInThread` hands the running call to the step, which waits for
    it and records its outcome, since its effect happened.
    """
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    future = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        done, _ = await asyncio.wait((future,), timeout=timeout)
    except asyncio.CancelledError:
        raise _CancelledInThread(future) from None
    if not done:
        future.add_done_callback(_drop_outcome)
        raise TimeoutError(f"the step's function did not finish within {timeout} s")
    result = future.result()
    if inspect.isawaitable(result):  # a plain function that returned an awaitable
        return await result
    return result


def _drop_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


def _hash_arguments(serde: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    if not args and not kwargs:
        return ""
    # Hash what the plaintext codec writes: an encrypting one uses a fresh nonce each time.
    while hasattr(serde, "inner"):
        serde = serde.inner
    try:
        encoded = serde.dumps([list(args), sorted(kwargs.items())])
    except Exception:
        return None  # arguments that cannot be stored are not compared on replay
    return hashlib.blake2b(encoded, digest_size=8).hexdigest()


def _describe_error(error: BaseException) -> tuple[str, str, str, Any]:
    cls = type(error)
    args: Any = None
    if all(isinstance(a, str | int | float | bool | None) for a in error.args):
        args = list(error.args)
    return (cls.__module__, cls.__qualname__, str(error), args)


def _replay(site_id: str, record: StepRecord) -> Any:
    if record.error is None:
        return record.value
    raise _rebuild_error(site_id, *record.error)


def _rebuild_error(site_id: str, module: str, qualname: str, message: str, args: Any) -> Exception:
    """The recorded exception again, as its own type when that type is already imported."""
    owner: Any = builtins if module == "builtins" else sys.modules.get(module)
    cls: Any = owner
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(*args) if args is not None else cls(message)
        except Exception:
            pass
    return StepFailedError(site_id, f"{module}.{qualname}", message)


class _StepDecorator:
    """What `step("name")` or `step(retry=...)` returns: applies to a function."""

    __slots__ = ("name", "retry", "thread", "timeout")

    def __init__(
        self, name: str | None, retry: RetryPolicy | None, timeout: float | None, thread: bool
    ) -> None:
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.thread = thread

    @overload
    def __call__(self, fn: Callable[Params, Awaitable[T]], /) -> Callable[Params, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[Params, T], /) -> Callable[Params, Awaitable[T]]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Callable[..., Awaitable[Any]]:
        return _make_step(fn, _StepOptions(fn, self.name, self.retry, self.timeout, self.thread))


@overload
def step(fn: Callable[Params, Awaitable[T]], /) -> Callable[Params, Awaitable[T]]: ...
@overload
def step(fn: Callable[Params, T], /) -> Callable[Params, Awaitable[T]]: ...
@overload
def step(
    name: str | None = None,
    /,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    thread: bool = True,
) -> _StepDecorator: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    thread: bool = True,
) -> _StepDecorator: ...


def step(
    fn_or_name: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    thread: bool = True,
) -> Any:
    """Make a function a recorded step: `@step`, `@step("name")` or `@step(retry=...)`.

    Calling the decorated function returns an awaitable. Inside a running task the call
    is recorded in the run's journal; outside a task the function simply runs. In a
    synchronous task, call it with `ctx.step_sync(fn, *args)`. A synchronous function
    runs in a worker thread, off the event loop; `thread=False` runs it on the loop.
    `timeout` (seconds, > 0) applies to each attempt.

    Raises `TaskDefinitionError` for something that is not callable, `ValueError` for a
    timeout that is not a finite number of seconds > 0.
    """
    _check_timeout(timeout)
    if isinstance(fn_or_name, str) or fn_or_name is None:
        if isinstance(fn_or_name, str) and name is not None:
            raise TypeError(f"step() got the name twice ({fn_or_name!r} and name={name!r})")
        return _StepDecorator(fn_or_name if name is None else name, retry, timeout, thread)
    if not callable(fn_or_name):
        raise _not_callable(fn_or_name)
    return _make_step(fn_or_name, _StepOptions(fn_or_name, name, retry, timeout, thread))


def _not_callable(fn: object) -> TaskDefinitionError:
    return TaskDefinitionError(
        f"step expects a function (async or not), or a step name as in @step('name'); "
        f"got {fn!r:.80} ({type(fn).__name__}), which is not callable"
    )


def _make_step(func: Callable[..., Any], options: _StepOptions) -> Callable[..., Awaitable[Any]]:
    if not callable(func):
        raise _not_callable(func)
    what = f"the step {options.name or getattr(func, '__name__', 'step')}(...)"

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
        frame = current_frame()
        if frame is None:
            return _attempt_all_unrecorded(
                func, args, kwargs, options.retry or _NO_RETRY, options.timeout, options.thread
            )
        refuse_in_sync_body(what)
        return start_step(frame, call, args, kwargs, retry=None, timeout=None, name=None)

    call.__tiny_tasks_step__ = options  # type: ignore[attr-defined]
    return call


async def _attempt_all_unrecorded(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
    thread: bool,
) -> Any:
    try:
        value, error = await _attempt_all(fn, args, kwargs, policy, timeout, thread)
    except _CancelledInThread:
        raise asyncio.CancelledError() from None  # nothing records it: let the thread be
    if error is not None:
        raise error
    return value
