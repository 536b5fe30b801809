"""Synchronous code and the async core: `*_sync` shells, and sync task bodies in threads.

`run_sync` / `iterate_sync` serve scripts and notebooks. With no event loop running in
this thread, the coroutine runs on a private loop here. With one running (a notebook
cell, an async framework), it runs on a private loop in a helper thread, so the caller
never deadlocks its own loop. Called from the body of a synchronous task (which runs in
a worker thread, see below), they run on that task's own loop instead, so a nested
`child.invoke_sync(x)` is part of the enclosing run.

A synchronous task body (a `def` function or generator) runs in a worker thread, one
piece at a time (`run_body_piece`): the loop stays free for other runs while it works,
and what the body asks of the loop (a step through `ctx.step_sync`, a nested task)
is sent to the loop with `BodyThread.call`, which blocks the worker until it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._stream import TaskStream
    from ._values import Event, Interrupt
    from .savers.base import RunStatus

T = TypeVar("T")
Out = TypeVar("Out")
P = TypeVar("P")

__all__ = [
    "BodyThread",
    "SyncTaskStream",
    "body_thread",
    "iterate_sync",
    "run_body_piece",
    "run_sync",
]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` to completion from synchronous code."""
    gate = body_thread()
    if gate is not None:
        return gate.call(make)
    if not _loop_running():
        return asyncio.run(make())
    with _LoopThread() as loop:
        return loop.run(make)


def iterate_sync(make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Iterate the async iterator `make()` from synchronous code; closes it at the end."""
    gate = body_thread()
    if gate is not None:
        yield from _drive(make, gate.call)
    elif _loop_running():
        with _LoopThread() as thread:
            yield from _drive(make, thread.run)
    else:
        with asyncio.Runner() as runner:
            yield from _drive(make, lambda factory: runner.run(factory()))


def _drive(
    make: Callable[[], AsyncIterator[T]],
    run: Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any],
) -> Iterator[T]:
    iterator: AsyncIterator[T] = run(lambda: _make_async(make))
    try:
        while True:
            try:
                item = run(lambda: _next(iterator))
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            run(close)


async def _make_async(make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
    return make()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class SyncTaskStream(Generic[Out, P]):
    """What `Task.stream_sync` returns: an iterator of events, then the run's outcome.

    Iterate it like the async `TaskStream`; once it is exhausted, `result` holds the
    task's return value (`None` when it paused) and `interrupts` the interrupts it
    paused on. `close()` (or leaving a `with` block) stops the task early.
    """

    __slots__ = ("_events", "_stream", "run_id")

    def __init__(self, make: Callable[[], TaskStream[Out, P]], run_id: str) -> None:
        self.run_id = run_id
        """The run id the stream runs under."""
        self._stream: TaskStream[Out, P] | None = None

        def made() -> TaskStream[Out, P]:
            self._stream = make()
            return self._stream

        self._events: Iterator[Event[P]] = iterate_sync(made)

    def __iter__(self) -> SyncTaskStream[Out, P]:
        return self

    def __next__(self) -> Event[P]:
        return next(self._events)

    @property
    def result(self) -> Out | None:
        """The task's return value once the stream is exhausted (else `None`)."""
        return None if self._stream is None else self._stream.result

    @property
    def interrupts(self) -> list[Interrupt]:
        """The interrupts the run paused on (empty unless it paused)."""
        return [] if self._stream is None else list(self._stream.interrupts)

    @property
    def status(self) -> RunStatus | None:
        """How the run ended ("done", "paused", "sleeping", ...); `None` before the end."""
        return None if self._stream is None else self._stream.status

    @property
    def wake_at(self) -> float | None:
        """When a sleeping (or deadline-bound paused) run is due, in epoch seconds."""
        return None if self._stream is None else self._stream.wake_at

    def close(self) -> None:
        """Stop the task early; its `finally` blocks run. Closing twice does nothing."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> SyncTaskStream[Out, P]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncTaskStream run_id={self.run_id!r}>"


class _LoopThread:
    """An event loop running in a daemon thread, for the life of a `with` block."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> _LoopThread:
        self._thread.start()
        return self

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(), self._loop)
        return future.result()

    def __exit__(self, *exc_info: object) -> None:
        async def shutdown() -> None:
            await self._loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


# -- synchronous task bodies ------------------------------------------------------------


class BodyThread:
    """The way back from a synchronous task body, running in a worker thread, to its loop.

    `call` runs a coroutine on the loop and blocks the worker until it is done. When
    the piece of body is cancelled on the loop side (a sibling paused, the consumer
    closed the stream), `stop` cancels what the worker waits on, and the worker's
    next `call` raises `CancelledError` at once.
    """

    __slots__ = ("_stopped", "_tasks", "loop", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = 0
        self._stopped = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `make()` (made here, in call order) on the loop; return or raise its outcome."""
        coro = make()
        if self._stopped:
            coro.close()
            raise asyncio.CancelledError
        # The task gets a copy of this thread's context: the current frame goes with it.
        future = asyncio.run_coroutine_threadsafe(self._tracked(coro), self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # A BaseException, as on the loop: `except Exception` must not swallow it.
            raise asyncio.CancelledError from None

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._stopped:
            coro.close()
            raise asyncio.CancelledError
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await coro
        finally:
            self._tasks.discard(task)

    async def stop(self) -> None:
        """Cancel and await what the worker waits on; refuse what it asks for next."""
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


_BODY_THREAD: contextvars.ContextVar[BodyThread | None] = contextvars.ContextVar(
    "tiny_tasks_body_thread", default=None
)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()

# Effectively unbounded: a worker waits while its body's steps and nested tasks run on
# the loop, and those may need workers of their own (a sync child of a sync task), so a
# small pool could deadlock. Idle workers are reused; new ones start only when none is.
_MAX_BODY_THREADS = 100_000


def _body_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_MAX_BODY_THREADS, "tiny-tasks-body")
        return _executor


def body_thread() -> BodyThread | None:
    """The link to the loop when the caller is a synchronous task body's worker thread."""
    gate = _BODY_THREAD.get()
    if gate is not None and gate.thread_id == threading.get_ident():
        return gate
    return None


def _enter(gate: BodyThread, context: contextvars.Context, fn: Callable[[], T]) -> T:
    gate.thread_id = threading.get_ident()
    return context.run(_with_gate, gate, fn)


def _with_gate(gate: BodyThread, fn: Callable[[], T]) -> T:
    _BODY_THREAD.set(gate)
    return fn()


async def run_body_piece(fn: Callable[[], T]) -> T:
    """Run `fn()` (part of a synchronous task body) in a worker thread; await its outcome.

    The worker sees this task's context (the current frame). If this coroutine is
    cancelled, the worker is stopped at its next request to the loop and awaited, so
    nothing of the body runs on after it; then the cancellation goes on.
    """
    loop = asyncio.get_running_loop()
    gate = BodyThread(loop)
    context = contextvars.copy_context()
    future = loop.run_in_executor(_body_executor(), _enter, gate, context, fn)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if not future.done():
            await gate.stop()
            await _wait_through_cancellation(future)
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what goes on
        raise


async def _wait_through_cancellation(future: asyncio.Future[Any]) -> None:
    while not future.done():
        try:
            await asyncio.wait((future,))
        except asyncio.CancelledError:
            continue  # the worker cannot be interrupted: wait until it has stopped
