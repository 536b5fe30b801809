"""Steps: calls whose result is recorded once per run and replayed afterwards.

`await ctx.step(fn, *args)` or a function decorated with `@step`, called inside a task.
The first execution's result (or the error that survived its retries) is stored in
the journal under the step's site id before it is handed back; every replay returns
the recorded result, or raises the recorded error again, without calling `fn`.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import inspect
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from ._context import IN_STEP, Frame, _current, current_frame
from ._journal import StepRecord
from .errors import ReplayMismatchError, SerializationError, StepFailedError

T = TypeVar("T")
Params = ParamSpec("Params")

__all__ = ["RetryPolicy", "start_step", "step"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step retries: `attempts` in all, exponential backoff with full jitter.

    The delay before retry n (1-based) is a random time up to
    `min(max_delay, initial_delay * multiplier ** (n - 1))`. Only exceptions that are
    instances of `retry_on` are retried; others are recorded at once.
    """

    attempts: int = 3
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        return random.uniform(0, ceiling) if self.jitter else ceiling


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
) -> Awaitable[Any]:
    """Take the step's site id now (call order) and return the awaitable that runs it."""
    label = str(name or getattr(fn, "__name__", None) or "step")
    label = label.replace("/", "_").replace("#", "_")
    site_id, _ = frame.allocate(label, "step")
    return _run_step(frame, site_id, fn, args, kwargs, retry or _NO_RETRY, timeout)


async def _run_step(
    frame: Frame,
    site_id: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
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
    if run.deferred is not None:
        await run.claim()  # a resume's answers are written before its first new effect
    token = _current.set(IN_STEP)  # a step is opaque: no interrupts or nested runs in it
    try:
        value, error = await _attempt_all(fn, args, kwargs, policy, timeout)
    finally:
        _current.reset(token)
    if error is not None:
        record = StepRecord(args_hash, error=_describe_error(error))
        await run.record_step(site_id, record)
        raise error
    await run.record_step(site_id, StepRecord(args_hash, value))
    return value


async def _attempt_all(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
) -> tuple[Any, BaseException | None]:
    for attempt in range(1, policy.attempts + 1):
        try:
            return await _attempt(fn, args, kwargs, timeout), None
        except policy.retry_on as exc:
            if isinstance(exc, SerializationError) or attempt == policy.attempts:
                return None, exc
            await asyncio.sleep(policy.delay(attempt))
        except Exception as exc:  # not retryable: recorded at once
            return None, exc
    raise AssertionError("unreachable")  # pragma: no cover


async def _attempt(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
) -> Any:
    if timeout is None:
        return await _call(fn, args, kwargs)
    async with asyncio.timeout(timeout):
        return await _call(fn, args, kwargs)


async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


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


@overload
def step(fn: Callable[Params, Awaitable[T]], /) -> Callable[Params, Awaitable[T]]: ...
@overload
def step(fn: Callable[Params, T], /) -> Callable[Params, Awaitable[T]]: ...
@overload
def step(
    *, name: str | None = None, retry: RetryPolicy | None = None, timeout: float | None = None
) -> Callable[[Callable[Params, Awaitable[T] | T]], Callable[Params, Awaitable[T]]]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Any:
    """Make a function a recorded step: `@step` or `@step(retry=..., timeout=...)`.

    Calling the decorated function returns an awaitable. Inside a running task the call
    is recorded in the run's journal; outside a task the function simply runs.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            frame = current_frame()
            if frame is None:
                return _attempt_all_unrecorded(func, args, kwargs, retry or _NO_RETRY, timeout)
            return start_step(frame, func, args, kwargs, retry=retry, timeout=timeout, name=name)

        return call

    if fn is not None:
        return decorate(fn)
    return decorate


async def _attempt_all_unrecorded(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    timeout: float | None,
) -> Any:
    value, error = await _attempt_all(fn, args, kwargs, policy, timeout)
    if error is not None:
        raise error
    return value
