"""The lease a run's driver holds while it drives the run.

With a saver that has `renew_lease` (the runtime protocol), whoever drives a run holds
a lease on it: an owner id and an expiry, stored on the run's row. It costs no write of
its own: the run's first write in an attempt carries it (`lease_owner`,
`lease_expires`), every later write carries the same values (so the saver rewrites no
indexed column), and the attempt's last write (pause, finish, put back) clears it.

While the lease is held it is renewed about every `renew_seconds` (at most 1.5 times
that) by one renewer per event loop and clock: a lease joins its set at the run's first
write and leaves it at the last, so a run shorter than the renewal interval arms no
timer and starts no task. A renewal that finds the lease lost stops the run's writes;
one that finds a cancel request hands it to the run (see `_cancel`).

Opening a run whose stored lease is live and another's raises `RunBusyError` before
anything is replayed; an expired one is taken over (logged), and the version check
refuses any late write of the former owner.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._clock import Clock, current_clock
from ._driver import Driver, new_owner_id
from .errors import RunBusyError, RunConflictError
from .savers.base import Checkpoint

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["RunLease", "runtime_logger"]

runtime_logger = logging.getLogger("tiny_tasks.runtime")

# A direct call's owner id: this process's random prefix and a counter (a uuid4 per run
# costs more than the rest of the lease); a forked child draws a prefix of its own.
_prefix = new_owner_id("call")
_calls = itertools.count()


def _call_owner() -> str:
    return f"{_prefix}-{next(_calls)}"


def _new_prefix() -> None:
    global _prefix
    _prefix = new_owner_id("call")


os.register_at_fork(after_in_child=_new_prefix)


class RunLease:
    """One run's lease in this attempt: who holds it, until when, and its renewal."""

    __slots__ = (
        "__weakref__",
        "_renew",
        "_renewer",
        "_renewing",
        "_run",
        "clock",
        "expires",
        "held",
        "lost",
        "owner",
        "renew_at",
        "renew_seconds",
        "seconds",
    )

    def __init__(self, run: Run, renew: Callable[..., Any], driver: Driver) -> None:
        self._run = run
        self._renew = renew
        self.clock: Clock = current_clock()
        self.owner = driver.owner or _call_owner()
        self.seconds = driver.lease_seconds
        self.renew_seconds = driver.renew_seconds
        self.expires: float | None = None
        # Whether the stored row carries this lease (a write with it has landed).
        self.held = False
        self.lost = False
        self.renew_at = 0.0
        self._renewer: _Renewer | None = None
        self._renewing: asyncio.Task[None] | None = None

    def check_open(self, stored: Checkpoint) -> None:
        """Refuse a run another driver holds a live lease on (`RunBusyError`); log a
        takeover of an expired one."""
        owner = stored.lease_owner
        if owner is None or owner == self.owner or stored.lease_expires is None:
            return
        now = self.clock.now()
        if stored.lease_expires > now:
            raise RunBusyError(stored.run_id, owner, stored.lease_expires, now)
        if stored.status == "running":
            runtime_logger.info(
                "run %r: taking over from %r, whose lease expired %.1f s ago",
                stored.run_id,
                owner,
                now - stored.lease_expires,
                extra={"run_id": stored.run_id},
            )

    def fields(self) -> tuple[str, float]:
        """The lease a (non-final) write carries; its expiry is set by the first one."""
        if self.lost:
            raise RunConflictError(
                self._run.run_id,
                f"its lease (held by {self.owner!r}) was lost: it expired and another "
                "driver may have taken the run over",
            )
        expires = self.expires
        if expires is None:
            expires = self.expires = self.clock.now() + self.seconds
        return self.owner, expires

    def saved(self, final: bool) -> None:
        """A write landed: it carried the lease (start renewing) or cleared it (stop)."""
        if final:
            self.held = False
            self.stop()
        elif not self.held:
            self.held = True
            self.renew_at = self.expires - self.seconds + self.renew_seconds  # type: ignore[operator]
            self._renewer = _renewer_for(self.clock)
            self._renewer.add(self)

    def stop(self) -> None:
        """No more renewals (the attempt is ending)."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.leases.pop(id(self), None)

    async def release(self) -> None:
        """An attempt that ends without a write clearing the lease (an early close, a
        cancelled consumer, a storage error) gives it up, so the run is due at once."""
        self.stop()
        if not self.held:
            return
        self.held = False
        saver = self._run.saver
        release = getattr(saver, "release_lease", None)
        if release is None:
            return
        try:
            result = release(self._run.run_id, self.owner)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result
        except Exception:  # the lease then just expires
            runtime_logger.warning(
                "run %r: could not release its lease; it expires by itself",
                self._run.run_id,
                exc_info=True,
                extra={"run_id": self._run.run_id},
            )

    def due(self, now: float) -> None:
        """The renewer's tick: renew now, in a task of its own, if it is time."""
        if now >= self.renew_at and self.held and self._renewing is None:
            self.renew_at = now + self.renew_seconds
            self._renewing = asyncio.ensure_future(self._renew_now())

    async def _renew_now(self) -> None:
        run = self._run
        expires = self.clock.now() + self.seconds
        try:
            result = self._renew(run.run_id, self.owner, expires)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except Exception:
            runtime_logger.warning(
                "run %r: renewing its lease failed; trying again in %.1f s",
                run.run_id,
                self.renew_seconds,
                exc_info=True,
                extra={"run_id": run.run_id},
            )
            return
        finally:
            self._renewing = None
        if not self.held:
            return  # the attempt cleared the lease meanwhile
        if not result.held:
            self.lost = True
            self.stop()
            runtime_logger.warning(
                "run %r: lease of %r lost (it expired, or another driver took the run "
                "over); this driver writes nothing more to it",
                run.run_id,
                self.owner,
                extra={"run_id": run.run_id},
            )
            return
        self.expires = expires
        if result.cancel_requested:
            from ._cancel import cancel_from_renewal

            cancel_from_renewal(run)


class _Renewer:
    """Renews the leases held in one event loop on one clock, from one timer.

    A lease joins it at its run's first write and leaves at its last (a set insertion
    and removal: no timer per run). The timer ticks every half of the shortest renewal
    interval while leases are held, and stops when none is. Leases are held weakly: a
    stream its consumer dropped without closing stops renewing, as a dead process would.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # By id, through weak references (see the class).
        self.leases: dict[int, weakref.ref[RunLease]] = {}
        self.armed = False
        self.sleeper: asyncio.Future[None] | None = None

    def add(self, lease: RunLease) -> None:
        self.leases[id(lease)] = weakref.ref(lease)
        if not self.armed:
            self._arm(lease.renew_seconds / 2)

    def _arm(self, seconds: float) -> None:
        self.armed = True
        call_later = getattr(self.clock, "call_later", None)
        if call_later is not None:
            call_later(seconds, self._tick)
        else:  # a custom clock without timers: a task that sleeps on it
            self.sleeper = asyncio.ensure_future(self._sleep_then_tick(seconds))

    async def _sleep_then_tick(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        self._tick()

    def _tick(self) -> None:
        self.armed = False
        leases = []
        for key, ref in list(self.leases.items()):
            lease = ref()
            if lease is None:
                del self.leases[key]
            else:
                leases.append(lease)
        if not leases:
            return
        now = self.clock.now()
        for lease in leases:
            lease.due(now)
        self._arm(min(lease.renew_seconds for lease in leases) / 2)


_renewers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Renewer]] = (
    weakref.WeakKeyDictionary()
)


_last: tuple[asyncio.AbstractEventLoop, Clock, _Renewer] | None = None


def _renewer_for(clock: Clock) -> _Renewer:
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0] is loop and last[1] is clock:
        return last[2]
    by_clock = _renewers.get(loop)
    if by_clock is None:
        by_clock = _renewers[loop] = {}
    renewer = by_clock.get(id(clock))
    if renewer is None or renewer.clock is not clock:
        renewer = by_clock[id(clock)] = _Renewer(clock)
    _last = (loop, clock, renewer)
    return renewer
