"""Who drives a run, and how: the lease owner id, the lease's length, keeping outcomes.

A run's driver holds a lease on it (owner id and expiry) while it runs and renews it.
A direct call drives its own run with a fresh owner id and the defaults below; a
`Worker` sets its own `Driver` (its owner id, its lease settings, `keep=True`) around
the runs it drives, through `driving(...)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_RENEW_SECONDS",
    "Driver",
    "current_driver",
    "driving",
    "new_owner_id",
]

DEFAULT_LEASE_SECONDS = 30.0
"""How long a lease lasts unless renewed."""

DEFAULT_RENEW_SECONDS = 10.0
"""How often a driver renews the leases it holds."""


def new_owner_id(kind: str = "call") -> str:
    """A fresh, unique lease owner id (`kind` says who: "call", "worker", ...)."""
    return f"{kind}-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True, slots=True)
class Driver:
    """How the runs started or driven in a block are driven.

    `owner`: the lease owner id written on the runs (a `Worker`'s id); `None` gives each
    run a fresh one. `keep`: finished runs keep their outcome (`None`: the call's own
    `keep=` decides). `lease_seconds` / `renew_seconds`: the lease's length and how often
    it is renewed while the run is driven.
    """

    owner: str | None = None
    keep: bool | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    renew_seconds: float = DEFAULT_RENEW_SECONDS


_DEFAULT = Driver()
_current: ContextVar[Driver] = ContextVar("tiny_tasks_driver", default=_DEFAULT)


def current_driver() -> Driver:
    """The driver settings in effect here."""
    return _current.get()


@contextmanager
def driving(driver: Driver) -> Iterator[Driver]:
    """Drive the runs started in this block (and its asyncio tasks) with `driver`."""
    token = _current.set(driver)
    try:
        yield driver
    finally:
        _current.reset(token)
