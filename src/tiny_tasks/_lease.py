"""The lease a run's driver holds while it drives the run.

With a saver that has `renew_lease` (the runtime protocol), whoever drives a run holds
a lease on it: an owner id and an expiry, stored on the run's row. It costs no write of
its own: the run's first write in an attempt carries it (`lease_owner`,
`lease_expires`), every later write carries the same values (so the saver rewrites no
indexed column), and the attempt's last write (pause, finish, put back) clears it.

While the lease is held a timer renews it every `renew_seconds`: a timer handle, not an
asyncio task, so a run shorter than the renewal interval pays only for arming and
cancelling it. A renewal that finds the lease lost stops the run's writes; one that
finds a cancel request hands it to the run (see `_cancel`).

Opening a run whose stored lease is live and another's raises `RunBusyError` before
anything is replayed; an expired one is taken over (logged), and the version check
refuses any late write of the former owner.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ._clock import Clock, current_clock
from ._driver import current_driver, new_owner_id
from .errors import RunBusyError, RunConflictError
from .savers.base import Checkpoint

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["RunLease", "runtime_logger"]

runtime_logger = logging.getLogger("tiny_tasks.runtime")


class RunLease:
    """One run's lease in this attempt: who holds it, until when, and its renewal."""

    __slots__ = (
        "__weakref__",
        "_renew",
        "_renewing",
        "_run",
        "_timer",
        "clock",
        "expires",
        "held",
        "lost",
        "owner",
        "renew_seconds",
        "seconds",
    )

    def __init__(self, run: Run, renew: Callable[..., Any]) -> None:
        driver = current_driver()
        self._run = run
        self._renew = renew
        self.clock: Clock = current_clock()
        self.owner = driver.owner or new_owner_id()
        self.seconds = driver.lease_seconds
        self.renew_seconds = driver.renew_seconds
        self.expires: float | None = None
        # Whether the stored row carries this lease (a write with it has landed).
        self.held = False
        self.lost = False
        self._timer: Any = None
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
            self._arm()

    def stop(self) -> None:
        """No more renewals (the attempt is ending)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

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

    def _arm(self) -> None:
        call_later = getattr(self.clock, "call_later", None)
        if call_later is not None:
            # Through a weak reference: a stream its consumer dropped without closing
            # (the run then referenced by nothing) stops renewing, as a dead process would.
            self._timer = call_later(self.renew_seconds, partial(_fire, weakref.ref(self)))
        else:  # a custom clock without timers: a task that sleeps on it
            self._timer = asyncio.ensure_future(self._sleep_then_renew())

    async def _sleep_then_renew(self) -> None:
        await self.clock.sleep(self.renew_seconds)
        self._timer = None
        await self._renew_now()
        if self.held and not self.lost and self._timer is None:
            self._arm()

    def fire(self) -> None:
        """The renewal timer fired: renew now, in a task of its own."""
        self._timer = None
        if self.held and self._renewing is None:
            self._renewing = asyncio.ensure_future(self._renew_then_rearm())

    async def _renew_then_rearm(self) -> None:
        try:
            await self._renew_now()
        finally:
            self._renewing = None
        if self.held and not self.lost and self._timer is None:
            self._arm()

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
        if not self.held:
            return  # the attempt cleared the lease meanwhile
        if not result.held:
            self.lost = True
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


def _fire(lease: weakref.ref[RunLease]) -> None:
    alive = lease()
    if alive is not None:
        alive.fire()
