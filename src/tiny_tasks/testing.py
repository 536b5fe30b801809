"""Helpers for testing workflows: a clock you move by hand.

from tiny_tasks.testing import ManualClock
from tiny_tasks import use_clock

with use_clock(ManualClock()) as clock:
    ...                      # start a run that sleeps for a day
    await clock.advance(86_400)   # the day passes at once; due timers fire
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that moves only when told to (`advance`, `set`).

    `now()` starts at `start` (default: the real time when it is created, so stored
    times look plausible). `sleep(seconds)` waits until the clock has been advanced past
    the sleeper's wake time; `sleepers` counts those waiting, and `wait_for_sleepers(n)`
    waits until at least `n` are (so a test advances the clock only once the code under
    test is really waiting, with no real sleep).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._changed: asyncio.Event | None = None
        self._timers: list[tuple[float, int, _Timer]] = []

    def now(self) -> float:
        """The clock's current time, in seconds since the epoch."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock reaches now + `seconds`."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self._now + seconds, next(self._counter), future))
        self._notify()
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            self._notify()

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _Timer:
        """Call `callback` once the clock has been moved `seconds` on (a timer, such as
        a lease renewal: not counted in `sleepers`). Returns a handle with `cancel()`."""
        timer = _Timer(callback)
        heapq.heappush(self._timers, (self._now + max(0.0, seconds), next(self._counter), timer))
        return timer

    @property
    def sleepers(self) -> int:
        """How many `sleep` calls are waiting now."""
        return sum(1 for _, _, future in self._heap if not future.done())

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Wait until at least `count` `sleep` calls are waiting."""
        while self.sleepers < count:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
            self._changed = None

    async def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` and let the sleepers that are due run."""
        if seconds < 0:
            raise ValueError(f"a clock moves forward only; got advance({seconds})")
        await self.set(self._now + seconds)

    async def set(self, when: float) -> None:
        """Move the clock to `when` (not backwards) and let the due sleepers run."""
        if when < self._now:
            raise ValueError(f"a clock moves forward only: {when} is before {self._now}")
        self._now = when
        woken = 0
        while self._heap and self._heap[0][0] <= when:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)
                woken += 1
        while self._timers and self._timers[0][0] <= when:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                woken += 1
        for _ in range(woken + 1):
            await asyncio.sleep(0)  # let the woken sleepers run up to their next wait

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:.3f}, sleepers={self.sleepers})"


class _Timer:
    """A `ManualClock.call_later` timer: fires once, unless cancelled first."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not fire."""
        self.cancelled = True
