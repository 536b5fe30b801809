"""What one more partial, step and resume cost against the size of a run's journal.

    bench/.env/bin/python bench/journal_cost.py [--postgres URL] [--quick]

A run records `entries` steps, pauses, and is resumed (not timed up to here); then:

* per resume: from the resume call until the task's code runs again after its
  `interrupt()` (the replay of `entries` recorded steps and the answer);
* per step: `STEPS` more steps after that, each recorded (mean);
* per partial: the same with a generator task that yields `PARTIALS` partials after its
  pause, delivered exactly once (mean time between the first and the last).

`entries` = 10, 100, 1,000, 10,000 (quick: 10, 100), on MemorySaver, SqliteSaver (its
default durability) and PostgresSaver (with --postgres). Prints a Markdown table and,
per backend and figure, a least-squares line: the cost at no entries and the slope, what
1,000 more entries add. A flat slope means the cost does not grow with the journal.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tiny_tasks import MemorySaver, interrupt, step, task

sys.path.insert(0, str(Path(__file__).resolve().parent))

ENTRIES = (10, 100, 1_000, 10_000)
QUICK_ENTRIES = (10, 100)
STEPS, PARTIALS = 200, 1_000
MARK: dict[str, float] = {}


@step
async def add_one(i: int) -> int:
    return i + 1


@task("journal_steps")
async def journal_steps(sizes: list[int]) -> int:
    entries, more = sizes
    total = 0
    for i in range(entries):
        total += await add_one(i)
    total += interrupt("more?")
    MARK["first"] = time.perf_counter()  # reached only once the resume has replayed
    for i in range(more):
        total += await add_one(i)
    MARK["last"] = time.perf_counter()
    return total


@task("journal_partials")
async def journal_partials(sizes: list[int]):  # type: ignore[no-untyped-def]
    entries, more = sizes
    for i in range(entries):
        await add_one(i)
    interrupt("more?")
    for i in range(more):
        yield i


async def paused(function: Any, entries: int, more: int, run: dict[str, Any]) -> None:
    """Start a run and drive it to its pause."""
    async for _partial, _snapshot, pause in function([entries, more], **run):
        if pause is not None:
            return
    raise AssertionError("the run did not pause")


async def resume_and_steps(saver: Any, entries: int) -> tuple[float, float]:
    """(seconds for the resume, seconds per step after it)."""
    run = {"run_id": uuid.uuid4().hex, "checkpointer": saver}
    await paused(journal_steps, entries, STEPS, run)
    started = time.perf_counter()
    async for _event in journal_steps.resume(1, **run):
        pass
    return MARK["first"] - started, (MARK["last"] - MARK["first"]) / STEPS


async def per_partial(saver: Any, entries: int) -> float:
    run = {"run_id": uuid.uuid4().hex, "checkpointer": saver}
    await paused(journal_partials, entries, PARTIALS, run)
    first = last = 0.0
    received = 0
    async for _partial, _snapshot, _pause in journal_partials.resume(1, **run):
        last = time.perf_counter()
        first = first or last
        received += 1
    assert received == PARTIALS, received
    return (last - first) / (PARTIALS - 1)


@asynccontextmanager
async def memory(folder: Path, pg_url: str | None) -> AsyncIterator[Any]:
    yield MemorySaver()


@asynccontextmanager
async def sqlite(folder: Path, pg_url: str | None) -> AsyncIterator[Any]:
    from tiny_tasks.savers import SqliteSaver

    async with SqliteSaver(folder / f"{uuid.uuid4().hex}.sqlite") as saver:
        await saver.setup()
        yield saver


@asynccontextmanager
async def postgres(folder: Path, pg_url: str | None) -> AsyncIterator[Any]:
    from _pg import create_database
    from tiny_tasks.savers import PostgresSaver

    assert pg_url is not None
    async with PostgresSaver(create_database(pg_url, "bench_journal_cost")) as saver:
        await saver.setup()
        yield saver


def fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of ys against xs."""
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


async def measure(entries: tuple[int, ...], pg_url: str | None) -> list[str]:
    backends: dict[str, Callable[[Path, str | None], Any]] = {"memory": memory, "sqlite": sqlite}
    if pg_url:
        backends["postgres"] = postgres
    table = [
        "| backend | entries | µs/partial | µs/step | ms/resume |",
        "|---|---:|---:|---:|---:|",
    ]
    fits: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tiny-tasks-journal-cost-") as tmp:
        for name, factory in backends.items():
            figures: dict[str, list[float]] = {"partial": [], "step": [], "resume": []}
            async with factory(Path(tmp), pg_url) as saver:
                await resume_and_steps(saver, 10)  # warm-up
                for size in entries:
                    repeat = 3 if size <= 1_000 else 1
                    runs = [await resume_and_steps(saver, size) for _ in range(repeat)]
                    partials = [await per_partial(saver, size) for _ in range(repeat)]
                    resume = statistics.median(r for r, _ in runs)
                    step_cost = statistics.median(s for _, s in runs)
                    partial = statistics.median(partials)
                    figures["resume"].append(resume * 1e3)
                    figures["step"].append(step_cost * 1e6)
                    figures["partial"].append(partial * 1e6)
                    table.append(
                        f"| {name} | {size:,} | {partial * 1e6:.1f} | "
                        f"{step_cost * 1e6:.1f} | {resume * 1e3:.2f} |"
                    )
                    print(table[-1], file=sys.stderr, flush=True)
            xs = list(entries)
            parts = []
            for what, unit in (("partial", "µs"), ("step", "µs"), ("resume", "ms")):
                intercept, slope = fit(xs, figures[what])
                parts.append(
                    f"per {what} {intercept:.3g} {unit} + {slope * 1000:.3g} {unit} "
                    f"per 1,000 entries"
                )
            fits.append(f"* {name}: " + "; ".join(parts))
    return [*table, "", *fits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=None, help="base URL of a throwaway server")
    parser.add_argument("--quick", action="store_true", help="entries 10 and 100 only")
    options = parser.parse_args()
    lines = asyncio.run(measure(QUICK_ENTRIES if options.quick else ENTRIES, options.postgres))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
