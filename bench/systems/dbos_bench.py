"""DBOS Transact (`@DBOS.workflow`, `@DBOS.step`, `recv`/`send`, streams).

Backends: SQLite (a file in a temporary directory) and Postgres (its own database on the
throwaway server). DBOS has no in-memory backend. Variants (``--variant``):

* ``default``: DBOS's own settings (1 s notification polling, 10 ms NOTIFY coalescing);
* ``1ms``: `notification_listener_polling_interval_sec` and `notification_coalesce_sec`
  tuned to 1 ms, the smallest values DBOS accepts.

A DBOS workflow that waits in `recv` stays in its process: a resume is a `send` that wakes
it, with no replay of its history (DBOS replays only when it recovers a workflow after
its process died).
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbos import DBOS, DBOSConfig, SetWorkflowID

from _harness import System, run_system

# ---- the workload: the same shapes as in every other system module -----------------


@DBOS.workflow()
async def producer(n: int) -> None:
    for i in range(n):
        await DBOS.write_stream_async("partials", i)
    await DBOS.close_stream_async("partials")


@DBOS.workflow()
async def pauser(k: int) -> int:
    total = 0
    for i in range(k):
        await DBOS.write_stream_async("interrupts", i)  # tell the consumer it waits
        total += await DBOS.recv_async("resume")
    await DBOS.close_stream_async("interrupts")
    return total


@DBOS.step()
async def add_one(i: int) -> int:
    return i + 1


@DBOS.workflow()
async def stepper(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    return total


@DBOS.workflow()
async def stepper_then_pause(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    await DBOS.set_event_async("paused", True)
    return total + await DBOS.recv_async("resume")


# ---- backends ----------------------------------------------------------------------

POLLING = {"default": None, "1ms": 0.001}


@asynccontextmanager
async def launched(url: str, polling: float | None) -> AsyncIterator[None]:
    config: DBOSConfig = {
        "name": "tiny-tasks-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    if polling is not None:
        config["notification_listener_polling_interval_sec"] = polling
        config["notification_coalesce_sec"] = polling
    DBOS(config=config)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()


def make_backends(variant: str) -> dict[str, Any]:
    polling = POLLING[variant]

    @asynccontextmanager
    async def sqlite(pg_url: str | None, workdir: str) -> AsyncIterator[None]:
        path = Path(workdir) / f"dbos-{uuid.uuid4().hex}.sqlite"
        async with launched(f"sqlite:///{path}", polling):
            yield

    @asynccontextmanager
    async def postgres(pg_url: str | None, workdir: str) -> AsyncIterator[None]:
        from _pg import create_database

        if pg_url is None:
            raise RuntimeError("no PostgreSQL server (pass --postgres URL)")
        url = create_database(pg_url, f"bench_dbos_{variant}")
        async with launched(url.replace("postgresql://", "postgresql+psycopg://"), polling):
            yield

    return {"sqlite": sqlite, "postgres": postgres}


def new_workflow_id() -> str:
    return uuid.uuid4().hex


# ---- scenarios ---------------------------------------------------------------------


async def stream(backend: None, n: int) -> float:
    received = 0
    started = time.perf_counter()
    handle = await DBOS.start_workflow_async(producer, n)
    async for _partial in DBOS.read_stream_async(handle.workflow_id, "partials"):
        received += 1
    await handle.get_result()
    elapsed = time.perf_counter() - started
    assert received == n, received
    return elapsed


async def pause_resume(backend: None, k: int) -> float:
    pauses = 0
    started = time.perf_counter()
    handle = await DBOS.start_workflow_async(pauser, k)
    async for pending in DBOS.read_stream_async(handle.workflow_id, "interrupts"):
        pauses += 1
        await DBOS.send_async(handle.workflow_id, pending, "resume")
    total = await handle.get_result()
    elapsed = time.perf_counter() - started
    assert pauses == k, pauses
    assert total == k * (k - 1) // 2, total
    return elapsed


async def steps(backend: None, n: int) -> float:
    started = time.perf_counter()
    total = await stepper(n)
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2, total
    return elapsed


async def resume_after_steps(backend: None, n: int) -> float:
    workflow_id = new_workflow_id()
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(stepper_then_pause, n)
    assert await DBOS.get_event_async(workflow_id, "paused") is True
    started = time.perf_counter()
    await DBOS.send_async(workflow_id, 1, "resume")
    total = await handle.get_result()
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2 + 1, total
    return elapsed


def make_system(variant: str) -> System:
    variant = variant or "default"
    label = {"default": "DBOS (default poll)", "1ms": "DBOS (1 ms poll)"}[variant]
    logging.getLogger("dbos").setLevel(logging.WARNING)
    return System(
        name=label,
        backends=make_backends(variant),
        scenarios={
            "stream": stream,
            "pause_resume": pause_resume,
            "steps": steps,
            "resume_after_steps": resume_after_steps,
        },
        versions={"dbos": version("dbos")},
        missing_backends={"memory": "DBOS has no in-memory backend"},
    )


if __name__ == "__main__":
    run_system(make_system)
