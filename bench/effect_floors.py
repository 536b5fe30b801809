"""A durable effect's cost next to its storage floor, in one process and one run.

    .venv/bin/python bench/effect_floors.py                 # memory and SQLite
    .venv/bin/python bench/effect_floors.py --postgres      # also PostgreSQL (throwaway server)
    .venv/bin/python bench/effect_floors.py --rounds 7 --profile   # + a cProfile of K=100

Needs only the main dev environment. Every figure is µs per operation; each round
measures every column once, one after the other, so the machine's drift hits them alike;
the table shows the median and the min over the rounds.

* floor: one `INSERT` of a 200-byte row and its `COMMIT` through `sqlite3` (WAL, at
  the given `synchronous`) or through psycopg on an autocommit connection
  (`synchronous_commit` on or off), awaited one after another;
* step: a task making 200 sequential `@step` calls, per step; `over memory` is a step's
  cost minus a step's cost with `MemorySaver` (what storing it adds), and `/ floor` that
  over the floor (target: at most 1.5);
* pause/resume: a task pausing K=100 times, resumed each time, per round trip;
* PostgreSQL effects (start, partial mark, step, pause, resume), per effect, at both
  durability classes, with the number of statements the saver sends for each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from tiny_tasks import Command, MemorySaver, TaskInterrupted, interrupt, step, task
from tiny_tasks.savers import SqliteSaver

sys.path.insert(0, str(Path(__file__).resolve().parent))

STEPS = 200
K = 100
ROW = b"e" * 200


@step
async def add_one(i: int) -> int:
    return i + 1


@task("stepper")
async def stepper(n: int) -> int:
    total = 0
    for i in range(n):
        total += await add_one(i)
    return total


@task("pauser")
async def pauser(k: int) -> int:
    total = 0
    for i in range(k):
        total += interrupt(i)
    return total


async def steps_per_op(saver: Any, n: int = STEPS) -> float:
    started = time.perf_counter()
    assert await stepper.invoke(n, run_id=uuid.uuid4().hex, checkpointer=saver) == n * (n + 1) // 2
    return (time.perf_counter() - started) / n


async def pause_resume_per_op(saver: Any, k: int = K) -> float:
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    given: Any = k
    for i in range(k + 1):
        try:
            result = await pauser.invoke(given, run_id=run_id, checkpointer=saver)
        except TaskInterrupted as paused:
            if paused.interrupts[0].value != i:
                raise RuntimeError(f"paused at {paused.interrupts[0].value}, not {i}") from None
            given = Command(resume=i)
        else:
            if (i, result) != (k, k * (k - 1) // 2):
                raise RuntimeError(f"ended after {i} resumes with {result}")
    return (time.perf_counter() - started) / k


def sqlite_floor(path: str, synchronous: str, n: int = 500) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, data BLOB)")
    started = time.perf_counter()
    for _ in range(n):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO floor (data) VALUES (?)", (ROW,))
        connection.execute("COMMIT")
    elapsed = (time.perf_counter() - started) / n
    connection.close()
    return elapsed


class Columns:
    """Named measurements, each run once per round."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.order: list[tuple[str, Callable[[], Awaitable[float]]]] = []

    def add(self, name: str, measure: Callable[[], Awaitable[float]]) -> None:
        self.order.append((name, measure))
        self.samples[name] = []

    async def round(self) -> None:
        for name, measure in self.order:
            gc.collect()
            self.samples[name].append(await measure() * 1e6)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def low(self, name: str) -> float:
        return min(self.samples[name])


def _row(
    label: str, columns: Columns, name: str, base: str | None = None, floor: str | None = None
) -> str:
    med, low = columns.median(name), columns.low(name)
    text = f"| {label} | {med:8.1f} | {low:8.1f} |"
    if base is not None and floor is not None:
        over = med - columns.median(base)
        over_low = low - columns.low(base)
        ratio, ratio_low = over / columns.median(floor), over_low / columns.low(floor)
        text += f" {over:7.1f} | {ratio:5.2f} (min {ratio_low:4.2f}) |"
    else:
        text += " | |"
    return text


@contextlib.asynccontextmanager
async def postgres_savers() -> AsyncIterator[tuple[str, Any, Any]]:
    from _pg import create_database, throwaway_postgres
    from tiny_tasks.savers import PostgresSaver

    with throwaway_postgres() as base_url:
        url = create_database(base_url, "bench_floors")
        full = PostgresSaver(url)
        process = PostgresSaver(url, durability="process")
        async with full, process:
            await full.setup()
            yield url, full, process


async def pg_floor(url: str, synchronous_commit: str, n: int = 300) -> float:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(f"SET synchronous_commit = {synchronous_commit}")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS floor (id bigserial PRIMARY KEY, data bytea)"
        )
        started = time.perf_counter()
        for _ in range(n):
            await connection.execute("INSERT INTO floor (data) VALUES (%s)", (ROW,))
        return (time.perf_counter() - started) / n


@task("effects")
async def effects(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i
    total = await add_one(0)
    yield total + interrupt("go on?")


async def pg_effects(saver: Any, n: int = 60) -> dict[str, float]:
    """Per effect: start (the create), a partial's mark, a step, a pause, a resume."""
    timings: dict[str, list[float]] = {
        "start": [],
        "partial": [],
        "step": [],
        "pause": [],
        "resume": [],
    }
    for _ in range(n):
        run_id = uuid.uuid4().hex
        marks = time.perf_counter()
        stream = effects(3, run_id=run_id, checkpointer=saver)
        stamps = [marks]
        async for _event in stream:
            stamps.append(time.perf_counter())
            if len(stamps) == 4:
                break
        # stamps: before start, after partial 0 (start + mark), after 1, after 2
        timings["partial"].append((stamps[3] - stamps[1]) / 2)
        timings["start"].append(stamps[1] - stamps[0] - timings["partial"][-1])
        before_step = time.perf_counter()
        try:
            async for _event in stream:
                pass
        except TaskInterrupted:
            pass
        paused_at = time.perf_counter()
        timings["step"].append(0.0)
        timings["pause"].append(paused_at - before_step)
        started = time.perf_counter()
        async for _event in effects(Command(resume=1), run_id=run_id, checkpointer=saver):
            pass
        timings["resume"].append(time.perf_counter() - started)
    # A step alone, from a run of steps (the pause figure above holds a step too).
    step_time = await steps_per_op(saver, 100)
    result = {name: statistics.median(values) for name, values in timings.items()}
    result["step"] = step_time
    result["pause"] -= step_time
    return result


async def main(options: argparse.Namespace) -> None:
    if not options.postgres_only:
        await main_local(options)
    if options.postgres or options.postgres_only:
        await main_postgres(options)


async def main_local(options: argparse.Namespace) -> None:
    columns = Columns()
    with tempfile.TemporaryDirectory() as directory:
        memory = MemorySaver()
        savers = {
            level: SqliteSaver(Path(directory) / f"{level}.sqlite", synchronous=level)
            for level in ("NORMAL", "FULL")
        }
        for saver in savers.values():
            await saver.setup()
        columns.add(
            "floor NORMAL",
            lambda: asyncio.sleep(0, sqlite_floor(f"{directory}/floor-n.sqlite", "NORMAL")),
        )
        columns.add(
            "floor FULL",
            lambda: asyncio.sleep(0, sqlite_floor(f"{directory}/floor-f.sqlite", "FULL", 200)),
        )
        columns.add("step memory", lambda: steps_per_op(memory))
        columns.add("step NORMAL", lambda: steps_per_op(savers["NORMAL"]))
        columns.add("step FULL", lambda: steps_per_op(savers["FULL"]))
        columns.add("p/r memory", lambda: pause_resume_per_op(memory))
        columns.add("p/r NORMAL", lambda: pause_resume_per_op(savers["NORMAL"]))
        columns.add("p/r FULL", lambda: pause_resume_per_op(savers["FULL"]))
        await columns.round()  # warm-up
        for values in columns.samples.values():
            values.clear()
        for _ in range(options.rounds):
            await columns.round()
        print(f"{options.rounds} rounds, µs per operation: median | min")
        print("| what | median | min | over memory | / floor |")
        print("| --- | --- | --- | --- | --- |")
        print(_row("SQLite floor, NORMAL", columns, "floor NORMAL"))
        print(_row("SQLite floor, FULL", columns, "floor FULL"))
        print(_row("step, MemorySaver", columns, "step memory"))
        print(_row("step, SQLite NORMAL", columns, "step NORMAL", "step memory", "floor NORMAL"))
        print(_row("step, SQLite FULL", columns, "step FULL", "step memory", "floor FULL"))
        print(_row("pause/resume K=100, memory", columns, "p/r memory"))
        print(_row("pause/resume K=100, SQLite NORMAL", columns, "p/r NORMAL"))
        print(_row("pause/resume K=100, SQLite FULL", columns, "p/r FULL"))
        if options.profile:
            for name, saver in (("memory", memory), ("SQLite NORMAL", savers["NORMAL"])):
                profiler = cProfile.Profile()
                profiler.enable()
                await pause_resume_per_op(saver)
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
                print(f"\n## cProfile, pause/resume K=100, {name} (by own time)\n")
                print(out.getvalue())
        for saver in savers.values():
            await saver.close()


async def main_postgres(options: argparse.Namespace) -> None:
    if True:
        async with postgres_savers() as (url, full, process):
            rows: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
            floors: dict[str, list[float]] = {"on": [], "off": []}
            await pg_effects(full, 10)
            await pg_effects(process, 10)
            for _ in range(options.rounds):
                for setting, saver in (("on", full), ("off", process)):
                    floors[setting].append(await pg_floor(url, setting) * 1e6)
                    rows[setting].append(
                        {k: v * 1e6 for k, v in (await pg_effects(saver, 30)).items()}
                    )
            print("\nPostgreSQL, µs per effect (median of rounds), and / floor of its class")
            print("| effect | durability full | / floor | durability process | / floor |")
            print("| --- | --- | --- | --- | --- |")
            floor_on, floor_off = statistics.median(floors["on"]), statistics.median(floors["off"])
            print(f"| floor: INSERT; COMMIT | {floor_on:.0f} | 1.00 | {floor_off:.0f} | 1.00 |")
            for effect in ("start", "partial", "step", "pause", "resume"):
                on = statistics.median(r[effect] for r in rows["on"])
                off = statistics.median(r[effect] for r in rows["off"])
                print(
                    f"| {effect} | {on:.0f} | {on / floor_on:.2f} | {off:.0f} |"
                    f" {off / floor_off:.2f} |"
                )


async def one_pass(kind: str, n: int) -> None:
    """One measured pass, after a warm-up one (what `--instructions` counts)."""
    with tempfile.TemporaryDirectory() as directory:
        saver: Any = MemorySaver()
        if kind.endswith("sqlite"):
            saver = SqliteSaver(Path(directory) / "pass.sqlite")
            await saver.setup()
        measure = pause_resume_per_op if kind.startswith("pause") else steps_per_op
        await measure(saver, 3)
        if n:
            await measure(saver, n)
        if kind.endswith("sqlite"):
            await saver.close()


def instructions(kind: str, n: int) -> int:
    """Instructions a fresh interpreter executes for `one_pass(kind, n)` (callgrind)."""
    finished = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--one-pass",
            kind,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", finished.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{finished.stderr[-500:]}")
    return int(found.group(1))


def count_instructions() -> None:
    """Instructions per operation: a pass of K or N operations minus a pass of none.

    The same on a loaded machine as on an idle one; a thread round trip's cost is mostly
    waiting, which instructions do not show (time it with the table instead)."""
    print("instructions per operation (callgrind; one pass minus an empty pass)")
    for kind, n in (
        ("pause-memory", K),
        ("steps-memory", STEPS),
        ("pause-sqlite", K),
        ("steps-sqlite", STEPS),
    ):
        per_op = (instructions(kind, n) - instructions(kind, 0)) / n
        print(f"| {kind} | {per_op:,.0f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per operation with valgrind instead of timing",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one-pass", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one_pass:
        asyncio.run(one_pass(options.one_pass[0], int(options.one_pass[1])))
    elif options.instructions:
        count_instructions()
    else:
        asyncio.run(main(options))
