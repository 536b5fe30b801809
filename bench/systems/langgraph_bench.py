"""LangGraph's functional API (`@entrypoint`, `@task`, `interrupt`, `Command`).

Backends: no checkpointer (stream only), `InMemorySaver`, `AsyncSqliteSaver` (a file in a
temporary directory), `AsyncPostgresSaver` (its own database on the throwaway server).
LangGraph's default durability mode ("async") is left as it is. Variant ``normal``: the
SQLite saver's connection set to `synchronous=NORMAL` (tiny-tasks' default) instead of
SQLite's default FULL, so that the two can be compared at the same durability.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_stream_writer
from langgraph.func import entrypoint, task
from langgraph.types import Command, interrupt

from _harness import CONCURRENT_STEPS, SHARED, System, run_system

# ---- the workload: the same shapes as in every other system module -----------------


async def producer(n: int) -> None:
    write = get_stream_writer()
    for i in range(n):
        write(i)


async def pauser(k: int) -> int:
    total = 0
    for i in range(k):
        total += interrupt(i)
    return total


@task
async def add_one(i: int) -> int:
    return i + 1


async def stepper(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    return total


async def stepper_then_pause(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    return total + interrupt("continue?")


CONCURRENT_TOTAL = sum(range(1, CONCURRENT_STEPS + 1)) + 1  # what each concurrent run returns


# ---- backends ----------------------------------------------------------------------


class Backend:
    """The entrypoints compiled against one checkpointer (LangGraph binds it at build time)."""

    def __init__(self, checkpointer: Any, location: str = "") -> None:
        self.location = location  # the store's file or URL, for worker processes
        build = entrypoint(checkpointer=checkpointer)
        self.producer = build(producer)
        self.pauser = build(pauser)
        self.stepper = build(stepper)
        self.stepper_then_pause = build(stepper_then_pause)
        self.checkpointer = checkpointer


@asynccontextmanager
async def no_checkpointer(pg_url: str | None, workdir: str) -> AsyncIterator[Backend]:
    yield Backend(None)


@asynccontextmanager
async def memory(pg_url: str | None, workdir: str) -> AsyncIterator[Backend]:
    yield Backend(InMemorySaver())


@asynccontextmanager
async def sqlite(pg_url: str | None, workdir: str) -> AsyncIterator[Backend]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = SHARED["location"] or str(Path(workdir) / f"langgraph-{uuid.uuid4().hex}.sqlite")
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        await saver.setup()
        if SYNCHRONOUS["level"] is not None:
            await saver.conn.execute(f"PRAGMA synchronous={SYNCHRONOUS['level']}")
        yield Backend(saver, path)


SYNCHRONOUS: dict[str, str | None] = {"level": None}  # None: SQLite's default (FULL)
SQLITE_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


async def durability(backend_name: str, backend: Backend) -> tuple[str, str]:
    """What a commit promises on this backend, read from the saver's own connection."""
    if backend_name == "memory":
        return "in memory", "memory"
    if backend_name == "sqlite":
        conn = backend.checkpointer.conn
        async with conn.execute("PRAGMA journal_mode") as cursor:
            (mode,) = await cursor.fetchone()
        async with conn.execute("PRAGMA synchronous") as cursor:
            (level,) = await cursor.fetchone()
        name = SQLITE_LEVELS.get(level, str(level))
        return f"{mode.upper()}, synchronous={name}", name
    if backend_name == "postgres":
        async with backend.checkpointer.conn.cursor() as cursor:
            await cursor.execute("SHOW synchronous_commit")
            row = await cursor.fetchone()
        level = str(row["synchronous_commit"] if isinstance(row, dict) else row[0])
        return f"synchronous_commit={level}", level
    return "no checkpointer", "none"


@asynccontextmanager
async def postgres(pg_url: str | None, workdir: str) -> AsyncIterator[Backend]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from _pg import create_database

    if SHARED["location"]:
        url = SHARED["location"]
    elif pg_url is None:
        raise RuntimeError("no PostgreSQL server (pass --postgres URL)")
    else:
        url = create_database(pg_url, "bench_langgraph")
    async with AsyncPostgresSaver.from_conn_string(url) as saver:
        await saver.setup()
        yield Backend(saver, url)


def new_thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


# ---- scenarios ---------------------------------------------------------------------


async def stream(backend: Backend, n: int) -> float:
    received = 0
    started = time.perf_counter()
    async for _partial in backend.producer.astream(n, new_thread(), stream_mode="custom"):
        received += 1
    elapsed = time.perf_counter() - started
    assert received == n, received
    return elapsed


async def pause_resume(backend: Backend, k: int) -> float:
    config = new_thread()
    request: Any = k
    pauses = 0
    started = time.perf_counter()
    while True:
        pending = None
        async for update in backend.pauser.astream(request, config, stream_mode="updates"):
            if "__interrupt__" in update:
                pending = update["__interrupt__"][0].value
        if pending is None:
            break
        pauses += 1
        request = Command(resume=pending)
    elapsed = time.perf_counter() - started
    assert pauses == k, pauses
    return elapsed


async def steps(backend: Backend, n: int) -> float:
    started = time.perf_counter()
    total = await backend.stepper.ainvoke(n, new_thread())
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2, total
    return elapsed


async def concurrent(backend: Backend, n: int) -> float:
    configs = [new_thread() for _ in range(n)]

    async def start(config: dict[str, Any]) -> None:
        first = await backend.stepper_then_pause.ainvoke(CONCURRENT_STEPS, config)
        assert "__interrupt__" in first, first

    started = time.perf_counter()
    await asyncio.gather(*(start(config) for config in configs))
    totals = await asyncio.gather(
        *(backend.stepper_then_pause.ainvoke(Command(resume=1), config) for config in configs)
    )
    elapsed = time.perf_counter() - started
    assert totals == [CONCURRENT_TOTAL] * n, totals[:3]
    return elapsed


async def resume_after_steps(backend: Backend, n: int) -> float:
    config = new_thread()
    first = await backend.stepper_then_pause.ainvoke(n, config)
    assert "__interrupt__" in first, first
    started = time.perf_counter()
    total = await backend.stepper_then_pause.ainvoke(Command(resume=1), config)
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2 + 1, total
    return elapsed


def make_system(variant: str) -> System:
    """`""`: LangGraph's defaults; `"normal"`: every scenario on SQLite at NORMAL."""
    with_checkpointer = ("memory", "sqlite", "postgres")
    scenarios = {
        "stream": stream,
        "pause_resume": pause_resume,
        "steps": steps,
        "resume_after_steps": resume_after_steps,
        "concurrent": concurrent,
    }
    versions = {
        name: version(name)
        for name in (
            "langgraph",
            "langgraph-checkpoint",
            "langgraph-checkpoint-sqlite",
            "langgraph-checkpoint-postgres",
        )
    }
    # The custom stream is not persisted: a partial is delivered at most once.
    not_stored = {"stream": ("stream not stored", "not stored")}
    if variant == "normal":
        SYNCHRONOUS["level"] = "NORMAL"
        return System(
            name="LangGraph (NORMAL)",
            backends={"sqlite": sqlite},
            scenarios=scenarios,
            versions=versions,
            durability=durability,
            durability_override=not_stored,
            location=location,
        )
    return System(
        name="LangGraph",
        backends={
            "none": no_checkpointer,
            "memory": memory,
            "sqlite": sqlite,
            "postgres": postgres,
        },
        scenarios=scenarios,
        versions=versions,
        backends_for={
            "pause_resume": with_checkpointer,
            "steps": with_checkpointer,
            "resume_after_steps": with_checkpointer,
            "concurrent": with_checkpointer,
        },
        durability=durability,
        durability_override=not_stored,
        location=location,
    )


def location(backend_name: str, backend: Backend) -> str:
    return backend.location


if __name__ == "__main__":
    run_system(make_system)
