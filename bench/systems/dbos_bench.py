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

import asyncio
import logging
import os
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

from _harness import CONCURRENT_STEPS, SHARED, System, run_system

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


CONCURRENT_TOTAL = sum(range(1, CONCURRENT_STEPS + 1)) + 1  # what each concurrent run returns


# ---- backends ----------------------------------------------------------------------

POLLING = {"default": None, "1ms": 0.001}
RESULT_POLLING = {"default": 1.0, "1ms": 0.001}  # 1.0: DBOS's DEFAULT_POLLING_INTERVAL
CRASHED_EXECUTOR = "bench-crashed"  # the executor id of the process that "dies"


def launch(url: str, polling: float | None, executor_id: str | None = None) -> None:
    config: DBOSConfig = {
        "name": "tiny-tasks-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    if executor_id is not None:
        config["executor_id"] = executor_id
    if polling is not None:
        config["notification_listener_polling_interval_sec"] = polling
        config["notification_coalesce_sec"] = polling
    dbos = DBOS(config=config)
    if polling is not None:
        # Recovery re-enqueues the workflow on DBOS's internal queue, polled every second
        # by default; its worker reads the interval when it starts, at launch.
        dbos._registry.get_internal_queue()._polling_interval_sec = polling
    DBOS.launch()


class Launched:
    """An open DBOS backend: its database URL and variant (for the recovery child)."""

    def __init__(self, url: str, variant: str) -> None:
        self.url, self.variant = url, variant


@asynccontextmanager
async def launched(url: str, variant: str) -> AsyncIterator[Launched]:
    launch(url, POLLING[variant])
    try:
        yield Launched(url, variant)
    finally:
        DBOS.destroy()


SQLITE_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


async def durability(backend_name: str, backend: Launched) -> tuple[str, str]:
    """What a commit promises, read through DBOS's own database engine."""
    import sqlalchemy as sa
    from dbos._dbos import _get_dbos_instance

    engine = _get_dbos_instance()._sys_db.engine
    with engine.connect() as connection:
        if backend_name == "sqlite":
            mode = connection.execute(sa.text("PRAGMA journal_mode")).scalar()
            level = connection.execute(sa.text("PRAGMA synchronous")).scalar()
            name = SQLITE_LEVELS.get(int(level), str(level))
            return f"{str(mode).upper()} journal, synchronous={name}", name
        value = str(connection.execute(sa.text("SHOW synchronous_commit")).scalar())
        return f"synchronous_commit={value}", value


def make_backends(variant: str) -> dict[str, Any]:
    @asynccontextmanager
    async def sqlite(pg_url: str | None, workdir: str) -> AsyncIterator[Launched]:
        path = Path(workdir) / f"dbos-{uuid.uuid4().hex}.sqlite"
        async with launched(SHARED["location"] or f"sqlite:///{path}", variant) as backend:
            yield backend

    @asynccontextmanager
    async def postgres(pg_url: str | None, workdir: str) -> AsyncIterator[Launched]:
        from _pg import create_database

        if SHARED["location"]:
            url = SHARED["location"]
        elif pg_url is None:
            raise RuntimeError("no PostgreSQL server (pass --postgres URL)")
        else:
            url = create_database(pg_url, f"bench_dbos_{variant}")
        async with launched(
            url.replace("postgresql://", "postgresql+psycopg://"), variant
        ) as backend:
            yield backend

    return {"sqlite": sqlite, "postgres": postgres}


def new_workflow_id() -> str:
    return uuid.uuid4().hex


# ---- scenarios ---------------------------------------------------------------------


async def stream(backend: Launched, n: int) -> float:
    received = 0
    started = time.perf_counter()
    handle = await DBOS.start_workflow_async(producer, n)
    async for _partial in DBOS.read_stream_async(handle.workflow_id, "partials"):
        received += 1
    await handle.get_result()
    elapsed = time.perf_counter() - started
    assert received == n, received
    return elapsed


async def pause_resume(backend: Launched, k: int) -> float:
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


async def steps(backend: Launched, n: int) -> float:
    started = time.perf_counter()
    total = await stepper(n)
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2, total
    return elapsed


async def concurrent(backend: Launched, n: int) -> float:
    ids = [new_workflow_id() for _ in range(n)]

    async def start(workflow_id: str) -> Any:
        with SetWorkflowID(workflow_id):
            handle = await DBOS.start_workflow_async(stepper_then_pause, CONCURRENT_STEPS)
        if await DBOS.get_event_async(workflow_id, "paused") is not True:
            raise RuntimeError(
                f"workflow {workflow_id} did not report its pause within "
                f"DBOS.get_event_async's 60 s timeout ({n} workflows at once)"
            )
        return handle

    started = time.perf_counter()
    handles = await asyncio.gather(*(start(workflow_id) for workflow_id in ids))
    await asyncio.gather(*(DBOS.send_async(workflow_id, 1, "resume") for workflow_id in ids))
    totals = await asyncio.gather(*(handle.get_result() for handle in handles))
    elapsed = time.perf_counter() - started
    assert totals == [CONCURRENT_TOTAL] * n, totals[:3]
    return elapsed


async def resume_after_steps(backend: Launched, n: int) -> float:
    """Recovery of a workflow with `n` completed steps whose process died at its pause."""
    workflow_id = new_workflow_id()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--paused-child",
        backend.url,
        workflow_id,
        str(n),
        backend.variant,
    )
    if await asyncio.wait_for(child.wait(), timeout=600) != 0:
        raise RuntimeError(f"the paused child exited with status {child.returncode}")
    status = await DBOS.get_workflow_status_async(workflow_id)
    if status is None or status.status != "PENDING" or status.executor_id != CRASHED_EXECUTOR:
        raise RuntimeError(f"the paused child left {workflow_id} as {status}, not PENDING")
    started = time.perf_counter()
    await DBOS.send_async(workflow_id, 1, "resume")
    recovered = DBOS._recover_pending_workflows([CRASHED_EXECUTOR])
    if [handle.workflow_id for handle in recovered] != [workflow_id]:
        raise RuntimeError(
            f"recovery found {[h.workflow_id for h in recovered]}, not "
            f"{workflow_id}: {await DBOS.get_workflow_status_async(workflow_id)}"
        )
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    total = await handle.get_result(polling_interval_sec=RESULT_POLLING[backend.variant])
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2 + 1, total
    return elapsed


async def paused_child(url: str, workflow_id: str, n: int, variant: str) -> None:
    """Run `stepper_then_pause` to its pause, then die as a crashed process would."""
    launch(url, POLLING[variant], executor_id=CRASHED_EXECUTOR)
    with SetWorkflowID(workflow_id):
        await DBOS.start_workflow_async(stepper_then_pause, n)
    assert await DBOS.get_event_async(workflow_id, "paused") is True
    os._exit(0)  # no DBOS.destroy(): the workflow stays PENDING, as after a crash


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
            "concurrent": concurrent,
        },
        versions={"dbos": version("dbos")},
        missing_backends={"memory": "DBOS has no in-memory backend"},
        durability=durability,
        polling=DEFAULT_POLLING_CELLS if variant == "default" else {},
        location=lambda backend_name, backend: backend.url,
        # Each worker its own executor id, so that none recovers another's workflows.
        worker_env=lambda index: {"DBOS__VMID": f"bench-worker-{index}"},
    )


_WAITS = "waits on DBOS's 1 s polling of"
DEFAULT_POLLING_CELLS = {
    ("pause_resume", "sqlite"): f"{_WAITS} new messages (SQLite has no NOTIFY)",
    ("concurrent", "sqlite"): f"{_WAITS} new messages (SQLite has no NOTIFY)",
    ("concurrent_4p", "sqlite"): f"{_WAITS} new messages (SQLite has no NOTIFY)",
    ("resume_after_steps", "sqlite"): f"{_WAITS} its internal queue and the result",
    ("resume_after_steps", "postgres"): f"{_WAITS} its internal queue and the result",
}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--paused-child"]:
        url, workflow_id, size, variant = sys.argv[2:6]
        logging.getLogger("dbos").setLevel(logging.WARNING)
        asyncio.run(paused_child(url, workflow_id, int(size), variant))
    else:
        run_system(make_system)
