"""tiny-tasks (`@task`, `interrupt`, `@step`, `Command`), the system the others are compared to.

Backends: no checkpointer (stream only), `MemorySaver`, `SqliteSaver` (a file in a
temporary directory), `PostgresSaver` (its own database on the throwaway server).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import CONCURRENT_STEPS, SHARED, NotApplicable, System, run_system
from tiny_tasks import Command, MemorySaver, TaskInterrupted, interrupt, step, task

# ---- the workload: the same shapes as in every other system module -----------------


@task("producer")
async def producer(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i


@task("pauser")
async def pauser(k: int) -> int:
    total = 0
    for i in range(k):
        total += interrupt(i)
    return total


@step
async def add_one(i: int) -> int:
    return i + 1


@task("stepper")
async def stepper(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    return total


@task("stepper_then_pause")
async def stepper_then_pause(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    return total + interrupt("continue?")


CONCURRENT_TOTAL = sum(range(1, CONCURRENT_STEPS + 1)) + 1  # what each concurrent run returns


# ---- backends ----------------------------------------------------------------------


@asynccontextmanager
async def opened(saver: Any) -> AsyncIterator[Any]:
    """Set `saver` up, use it, close it (as an async context manager if it is one)."""
    if hasattr(saver, "__aenter__"):
        async with saver as entered:
            if hasattr(saver, "setup"):
                await saver.setup()
            yield entered if entered is not None else saver
        return
    try:
        if hasattr(saver, "setup"):
            await saver.setup()
        yield saver
    finally:
        for name in ("aclose", "close"):
            close = getattr(saver, name, None)
            if close is not None:
                outcome = close()
                if inspect.isawaitable(outcome):
                    await outcome
                break


def saver_class(name: str) -> Any:
    import tiny_tasks.savers

    try:
        return getattr(tiny_tasks.savers, name)
    except ModuleNotFoundError as missing:
        if missing.name and missing.name.startswith("tiny_tasks."):
            raise NotApplicable(f"{name} is not in this tiny-tasks build") from None
        raise


@asynccontextmanager
async def no_checkpointer(pg_url: str | None, workdir: str) -> AsyncIterator[None]:
    yield None


@asynccontextmanager
async def memory(pg_url: str | None, workdir: str) -> AsyncIterator[Any]:
    yield MemorySaver()


@asynccontextmanager
async def sqlite(pg_url: str | None, workdir: str) -> AsyncIterator[Any]:
    SqliteSaver = saver_class("SqliteSaver")
    path = SHARED["location"] or Path(workdir) / f"tiny-tasks-{uuid.uuid4().hex}.sqlite"
    async with opened(SqliteSaver(str(path), synchronous=SYNCHRONOUS["level"])) as saver:
        yield saver


SYNCHRONOUS = {"level": "NORMAL"}  # our default; "FULL" in the "full" variant


async def durability(backend_name: str, backend: Any) -> tuple[str, str]:
    """What a commit promises on this backend, read from the opened saver."""
    if backend_name == "memory":
        return "in memory", "memory"
    if backend_name == "sqlite":
        import sqlite3

        with sqlite3.connect(backend.path) as probe:  # journal_mode is stored in the file
            (mode,) = probe.execute("PRAGMA journal_mode").fetchone()
        return f"{mode.upper()}, synchronous={backend.synchronous}", backend.synchronous
    if backend_name == "postgres":
        return await postgres_durability(backend)
    return "no checkpointer", "not stored"


async def postgres_durability(backend: Any) -> tuple[str, str]:
    """`synchronous_commit` as the saver's own connections see it (a fresh connection to
    the same database if the saver's pool is out of reach)."""
    import psycopg

    try:
        pool_connection = backend._connection()
    except AttributeError:
        pool_connection = await psycopg.AsyncConnection.connect(POSTGRES_URL["url"])
    async with pool_connection as connection:
        cursor = await connection.execute("SHOW synchronous_commit")
        row = await cursor.fetchone()
    level = str(row[0]) if row else "?"
    return f"synchronous_commit={level}", level


POSTGRES_URL = {"url": ""}


def location(backend_name: str, backend: Any) -> str:
    """Where the opened backend's store lives, for the worker processes to share it."""
    return str(backend.path) if backend_name == "sqlite" else POSTGRES_URL["url"]


@asynccontextmanager
async def postgres(pg_url: str | None, workdir: str) -> AsyncIterator[Any]:
    PostgresSaver = saver_class("PostgresSaver")
    from _pg import create_database

    database = "bench_tiny_tasks" + ("_alo" if DELIVERY["delivery"] == "at_least_once" else "")
    if SHARED["location"]:
        POSTGRES_URL["url"] = SHARED["location"]
    elif pg_url is None:
        raise RuntimeError("no PostgreSQL server (pass --postgres URL)")
    else:
        POSTGRES_URL["url"] = create_database(pg_url, database)
    async with opened(PostgresSaver(POSTGRES_URL["url"])) as saver:
        yield saver


DELIVERY = {"delivery": "exactly_once"}  # set once per process by make_system


def new_run(checkpointer: Any) -> dict[str, Any]:
    return {"run_id": uuid.uuid4().hex, "checkpointer": checkpointer, **DELIVERY}


# ---- scenarios ---------------------------------------------------------------------


async def stream(backend: Any, n: int) -> float:
    received = 0
    started = time.perf_counter()
    async for _partial, _snapshot, _interrupt in producer(n, **new_run(backend)):
        received += 1
    elapsed = time.perf_counter() - started
    assert received == n, received
    return elapsed


async def pause_resume(backend: Any, k: int) -> float:
    run = new_run(backend)
    pauses = 0
    started = time.perf_counter()
    events = pauser(k, **run)
    while True:
        pending = None
        async for _partial, _snapshot, paused in events:
            if paused is not None:
                pending = paused.value
        if pending is None:
            break
        pauses += 1
        events = pauser.resume(pending, **run)
    total = events.result
    elapsed = time.perf_counter() - started
    assert pauses == k, pauses
    assert total == k * (k - 1) // 2, total
    return elapsed


async def steps(backend: Any, n: int) -> float:
    started = time.perf_counter()
    total = await stepper.invoke(n, **new_run(backend))
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2, total
    return elapsed


async def concurrent(backend: Any, n: int) -> float:
    runs = [new_run(backend) for _ in range(n)]

    async def start(run: dict[str, Any]) -> None:
        try:
            await stepper_then_pause.invoke(CONCURRENT_STEPS, **run)
            raise AssertionError("the run did not pause")
        except TaskInterrupted:
            pass

    started = time.perf_counter()
    await asyncio.gather(*(start(run) for run in runs))
    totals = await asyncio.gather(
        *(stepper_then_pause.invoke(Command(resume=1), **run) for run in runs)
    )
    elapsed = time.perf_counter() - started
    assert totals == [CONCURRENT_TOTAL] * n, totals[:3]
    return elapsed


async def resume_after_steps(backend: Any, n: int) -> float:
    run = new_run(backend)
    try:
        await stepper_then_pause.invoke(n, **run)
        raise AssertionError("the run did not pause")
    except TaskInterrupted:
        pass
    started = time.perf_counter()
    total = await stepper_then_pause.invoke(Command(resume=1), **run)
    elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2 + 1, total
    return elapsed


ALL_SCENARIOS = {
    "stream": stream,
    "pause_resume": pause_resume,
    "steps": steps,
    "resume_after_steps": resume_after_steps,
    "concurrent": concurrent,
}


def make_system(variant: str) -> System:
    """`""`: the defaults (exactly-once delivery, SQLite at NORMAL); `"at-least-once"`: the
    stream scenario with `delivery="at_least_once"` (no write per partial), for the
    durable backends; `"full"`: every scenario on SQLite at `synchronous="FULL"`, the
    durability LangGraph's and DBOS's SQLite stores have by default."""
    with_checkpointer = ("memory", "sqlite", "postgres")
    if variant == "at-least-once":
        DELIVERY["delivery"] = "at_least_once"
        return System(
            name="tiny-tasks (at-least-once)",
            backends={"memory": memory, "sqlite": sqlite, "postgres": postgres},
            scenarios={"stream": stream},
            versions={"tiny-tasks": version("tiny-tasks")},
            backends_for={},
            durability=durability,
            # Partials are not recorded one by one: after a crash they are sent again.
            durability_override={"stream": ("partials not stored", "not stored")},
        )
    if variant == "full":
        SYNCHRONOUS["level"] = "FULL"
        return System(
            name="tiny-tasks (FULL)",
            backends={"sqlite": sqlite},
            scenarios=ALL_SCENARIOS,
            versions={"tiny-tasks": version("tiny-tasks")},
            durability=durability,
            location=location,
        )
    return System(
        name="tiny-tasks",
        backends={
            "none": no_checkpointer,
            "memory": memory,
            "sqlite": sqlite,
            "postgres": postgres,
        },
        scenarios=ALL_SCENARIOS,
        versions={"tiny-tasks": version("tiny-tasks")},
        backends_for={
            "pause_resume": with_checkpointer,
            "steps": with_checkpointer,
            "resume_after_steps": with_checkpointer,
            "concurrent": with_checkpointer,
        },
        durability=durability,
        location=location,
    )


if __name__ == "__main__":
    run_system(make_system)
