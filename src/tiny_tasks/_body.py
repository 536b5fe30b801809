"""Adapters that make every kind of task function look alike to the run driver.

A body is pulled one partial at a time: `await body.pull()` returns the next partial
(yielded or emitted, in the order they were produced) or raises `StopAsyncIteration`
once the function has finished, its return value then being `body.result`. Partials
emitted before an exception are delivered before the exception is raised.

A synchronous body (a generator function or a plain function) runs in a worker thread,
one piece per pull (`run_body_piece`), so it never blocks the event loop and can wait
for steps and nested tasks that run there (`ctx.step_sync`, `child.invoke_sync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import types
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any

from ._context import Frame, _current
from ._sync import run_body_piece
from .errors import TaskDefinitionError

__all__ = ["Body", "async_generator_of", "body_result", "check_task_function", "make_body"]

_NOTHING: Any = object()


class Body:
    """Common state: the emitted-partials queue and an outcome held back behind it."""

    __slots__ = ("_held_error", "emitted", "finished", "result")

    def __init__(self, emitted: deque[Any]) -> None:
        self.emitted = emitted
        self.result: Any = None
        self.finished = False
        self._held_error: BaseException | None = None

    async def pull(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the function early, running its `finally` blocks."""

    def hold(self, error: BaseException) -> None:
        """Keep `error` until the emitted partials queued before it are handed out."""
        self._held_error = None if isinstance(error, StopAsyncIteration) else error

    def _flush_or_raise(self, error: BaseException | None) -> Any:
        """Return the next queued partial, holding `error` back; or raise `error`."""
        if self.emitted:
            self._held_error = error
            return self.emitted.popleft()
        if error is not None:
            raise error
        raise StopAsyncIteration

    def _pending_outcome(self) -> Any:
        error, self._held_error = self._held_error, None
        if error is not None:
            raise error
        raise StopAsyncIteration


class _Returned(Exception):
    """A sync generator's `return value`, carried out of its worker thread.

    `StopIteration` cannot be: asyncio refuses to set it on a future.
    """

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def _next_of(gen: Generator[Any, Any, Any]) -> Any:
    try:
        return next(gen)
    except StopIteration as stop:
        raise _Returned(stop.value) from None


class _GeneratorBody(Body):
    """An async or sync generator: one value per pull; a sync one's `return` is the result.

    A sync generator is advanced in a worker thread.
    """

    __slots__ = ("_agen", "_gen")

    def __init__(
        self,
        emitted: deque[Any],
        agen: AsyncGenerator[Any, Any] | None = None,
        gen: Generator[Any, Any, Any] | None = None,
    ) -> None:
        super().__init__(emitted)
        self._agen = agen
        self._gen = gen

    async def pull(self) -> Any:
        if self.emitted:
            return self.emitted.popleft()
        if self.finished:
            return self._pending_outcome()
        try:
            if self._agen is not None:
                value = await self._agen.__anext__()
            else:
                gen = self._gen
                assert gen is not None
                value = await run_body_piece(lambda: _next_of(gen))
        except (StopAsyncIteration, _Returned) as stop:
            self.finished = True
            self.result = getattr(stop, "value", None)
            return self._flush_or_raise(None)
        except BaseException as error:
            self.finished = True
            return self._flush_or_raise(error)
        if self.emitted:
            self.emitted.append(value)
            return self.emitted.popleft()
        return value

    async def aclose(self) -> None:
        self.finished = True
        if self._agen is not None:
            await self._agen.aclose()
        elif self._gen is not None:
            await run_body_piece(self._gen.close)


class _CallBody(Body):
    """A plain callable: called once on the first pull, in a worker thread.

    If it returns a coroutine or a (async) generator (a callable object with an async
    `__call__`, say), the body continues as that kind.
    """

    __slots__ = ("_call", "_inner")

    def __init__(self, call: Callable[[], Any], emitted: deque[Any]) -> None:
        super().__init__(emitted)
        self._call = call
        self._inner: Body | None = None

    async def pull(self) -> Any:
        if self._inner is not None:
            return await self._inner.pull()
        if self.emitted:
            return self.emitted.popleft()
        if self.finished:
            return self._pending_outcome()
        self.finished = True
        try:
            result = await run_body_piece(self._call)
        except BaseException as error:
            return self._flush_or_raise(error)
        inner = _wrap_result(result, self.emitted)
        if inner is None:
            self.result = result
            return self._flush_or_raise(None)
        self._inner = inner
        return await inner.pull()

    @property
    def inner_result(self) -> Any:
        return self._inner.result if self._inner is not None else self.result

    async def aclose(self) -> None:
        self.finished = True
        if self._inner is not None:
            await self._inner.aclose()


class _CoroutineBody(Body):
    """Drives a coroutine by hand so that values it emits stream out between awaits.

    The coroutine runs inside the consumer's asyncio task: whatever it awaits is passed
    up to the event loop unchanged. When it suspends after emitting, the awaited object
    is held, the emitted values are handed out, and the next pull waits on it first.
    The current frame at the hold is kept too: what suspended may be a nested task's
    body, and the pulls in between set other frames.
    """

    __slots__ = ("_coro", "_held_await", "_held_frame")

    def __init__(self, coro: Coroutine[Any, Any, Any], emitted: deque[Any]) -> None:
        super().__init__(emitted)
        self._coro = coro
        self._held_await: Any = _NOTHING
        self._held_frame: Any = None

    def throw_on_next_pull(self, error: BaseException) -> None:
        """Resume the held coroutine with `error` instead of its await's result."""
        self._held_await = _Throw(error)

    def _unhold(self) -> None:
        frame = self._held_frame
        _current.set(frame)
        if isinstance(frame, Frame):
            frame.run.held.discard(self)

    async def pull(self) -> Any:
        if self.emitted:
            return self.emitted.popleft()
        if self.finished:
            return self._pending_outcome()
        try:
            await self._run_until_output()
        except BaseException as error:
            self.finished = True
            return self._flush_or_raise(error)
        if self.emitted:
            return self.emitted.popleft()
        return self._flush_or_raise(None)

    @types.coroutine
    def _run_until_output(self, error: BaseException | None = None) -> Generator[Any, Any, None]:
        coro, emitted = self._coro, self.emitted
        sent: Any = None
        if self._held_await is not _NOTHING:
            held, self._held_await = self._held_await, _NOTHING
            self._unhold()
            if isinstance(held, _Throw):
                error = held.error
            else:
                try:
                    sent = yield held
                except BaseException as exc:
                    error = exc
        while True:
            try:
                awaited = coro.throw(error) if error is not None else coro.send(sent)
            except StopIteration as stop:
                self.finished = True
                self.result = stop.value
                return
            error = sent = None
            if emitted:
                self._held_await = awaited
                frame = self._held_frame = _current.get()
                if isinstance(frame, Frame):
                    frame.run.held.add(self)
                return
            try:
                sent = yield awaited
            except BaseException as exc:
                error = exc

    async def aclose(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self._held_await is _NOTHING and inspect.getcoroutinestate(self._coro) == "CORO_CREATED":
            self._coro.close()
            return
        if self._held_await is not _NOTHING:
            self._unhold()
        self._held_await = _NOTHING
        with contextlib.suppress(asyncio.CancelledError):
            await self._run_until_output(asyncio.CancelledError())


class _Throw:
    """Held in place of an await: resume the coroutine by raising `error` in it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def make_body(fn: Callable[..., Any], args: tuple[Any, ...], emitted: deque[Any]) -> Body:
    """Wrap the call `fn(*args)`; the call itself happens on the first pull."""
    if inspect.isasyncgenfunction(fn):
        return _GeneratorBody(emitted, agen=fn(*args))
    if inspect.iscoroutinefunction(fn):
        return _CoroutineBody(fn(*args), emitted)
    if inspect.isgeneratorfunction(fn):
        return _GeneratorBody(emitted, gen=fn(*args))
    return _CallBody(lambda: fn(*args), emitted)


def async_generator_of(body: Body) -> AsyncGenerator[Any, Any] | None:
    """The async generator behind `body`, for the driver's fast path (else `None`)."""
    return body._agen if isinstance(body, _GeneratorBody) else None


def body_result(body: Body) -> Any:
    """The function's return value once the body has finished."""
    if isinstance(body, _CallBody):
        return body.inner_result
    return body.result


def _wrap_result(result: Any, emitted: deque[Any]) -> Body | None:
    if inspect.iscoroutine(result):
        return _CoroutineBody(result, emitted)
    if inspect.isasyncgen(result):
        return _GeneratorBody(emitted, agen=result)
    if inspect.isgenerator(result):
        return _GeneratorBody(emitted, gen=result)
    return None


def check_task_function(fn: Any, what: str = "task") -> None:
    """Raise `TaskDefinitionError` unless `fn` is something a task can wrap."""
    if not callable(fn):
        raise TaskDefinitionError(
            f"{what} expects an async generator function, a coroutine function, a "
            f"generator function or a plain function; got {fn!r} "
            f"({type(fn).__name__}), which is not callable"
        )
