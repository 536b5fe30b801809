"""Thin synchronous shells over the async core, for scripts and notebooks.

With no event loop running in this thread, the coroutine runs on a private loop here.
With one running (a notebook cell, an async framework), it runs on a private loop in a
helper thread, so the caller never deadlocks its own loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["iterate_sync", "run_sync"]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` to completion from synchronous code."""
    if not _loop_running():
        return asyncio.run(make())
    with _LoopThread() as loop:
        return loop.run(make)


def iterate_sync(make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """Iterate the async iterator `make()` from synchronous code; closes it at the end."""
    if _loop_running():
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
