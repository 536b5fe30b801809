"""The clock the runtime reads: wall time for timers, deadlines and leases.

Every time the runtime stores (a sleep's wake time, an interrupt's deadline, a lease's
expiry) comes from `current_clock().now()`, seconds since the epoch, and every wait it
makes in-process goes through `current_clock().sleep(...)`. Tests (and users testing
their own workflows) swap in `tiny_tasks.testing.ManualClock` with `use_clock`, so
timers fire without real waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "current_clock", "use_clock"]


@runtime_checkable
class Clock(Protocol):
    """Where the runtime reads the time and waits."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (in this clock's time)."""
        ...


class SystemClock:
    """The real clock: `time.time()` and `asyncio.sleep`."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of real time."""
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, seconds: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """Call `callback` on the running loop after `seconds` (a timer, not a task: it
        costs nothing if cancelled before it fires). Returns a handle with `cancel()`."""
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)

    def __repr__(self) -> str:
        return "SystemClock()"


_SYSTEM = SystemClock()
_current: ContextVar[Clock] = ContextVar("tiny_tasks_clock", default=_SYSTEM)


def current_clock() -> Clock:
    """The clock in effect here (the system clock unless `use_clock` chose another)."""
    return _current.get()


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Use `clock` for every run started or driven inside this block (and the asyncio
    tasks created in it): `with use_clock(ManualClock()) as clock: ...`."""
    if not isinstance(clock, Clock):
        raise TypeError(f"use_clock needs an object with now() and async sleep(), not {clock!r}")
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)
