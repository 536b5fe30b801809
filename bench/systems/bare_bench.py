"""The floor: a bare async generator consumed with `async for` (stream scenario only)."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import System, run_system


async def producer(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@asynccontextmanager
async def no_checkpointer(pg_url: str | None, workdir: str) -> AsyncIterator[None]:
    yield None


async def stream(backend: None, n: int) -> float:
    received = 0
    started = time.perf_counter()
    async for _partial in producer(n):
        received += 1
    elapsed = time.perf_counter() - started
    assert received == n, received
    return elapsed


def make_system(variant: str) -> System:
    return System(
        name="bare async generator",
        backends={"none": no_checkpointer},
        scenarios={"stream": stream},
    )


if __name__ == "__main__":
    run_system(make_system)
