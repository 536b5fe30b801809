"""Tasks served by `bench/serving.py`'s server process (`tiny-tasks serve --app`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from tiny_tasks import task


@task
async def ticks(count: int) -> AsyncIterator[float]:
    """`count` partials, 10 ms apart, each the time it was made (after a 1 s wait in
    which the watchers connect)."""
    await asyncio.sleep(1.0)
    for _ in range(count):
        yield time.time()
        await asyncio.sleep(0.01)


@task
async def burst(count: int) -> AsyncIterator[int]:
    """`count` small partials, as fast as they can be made."""
    for number in range(count):
        yield number
