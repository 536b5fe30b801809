"""Bounded, jittered exponential backoff for a saver's transient database errors.

A database saver retries what another moment may cure (a locked SQLite file, a
dropped PostgreSQL connection, a serialization failure) a few times before its error
reaches the engine, which then stops the run with `StorageError` and leaves it stored.
Each retry is logged as a warning on the `tiny_tasks.savers` logger.
"""

from __future__ import annotations

import asyncio
import logging
import random

logger = logging.getLogger("tiny_tasks.savers")

FIRST_DELAY = 0.05
"""Seconds: the ceiling of the first retry's random delay; it doubles with each retry."""


class Backoff:
    """`attempts` retries after the first try, full jitter, delays capped at `max_delay`.

    Raises `ValueError` for a negative or non-integer `attempts` or a negative `max_delay`.
    """

    __slots__ = ("attempts", "max_delay")

    def __init__(self, attempts: int, max_delay: float) -> None:
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise ValueError(f"retry_attempts must be an int >= 0, not {attempts!r}")
        if not max_delay >= 0:
            raise ValueError(f"retry_max_delay must be >= 0 seconds, not {max_delay!r}")
        self.attempts = attempts
        self.max_delay = max_delay

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): random, up to the cap."""
        return random.uniform(0, min(self.max_delay, FIRST_DELAY * 2 ** (retry - 1)))

    async def wait(self, retry: int, saver: object, operation: str, error: BaseException) -> None:
        """Log retry `retry` of `operation` after `error`, then sleep before it."""
        delay = self.delay(retry)
        logger.warning(
            "%r: %s failed with %s: %s; retry %d of %d in %.3f s",
            saver,
            operation,
            type(error).__name__,
            error,
            retry,
            self.attempts,
            delay,
        )
        await asyncio.sleep(delay)
