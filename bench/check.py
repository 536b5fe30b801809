"""How long `check_runs` takes over a store of 10,000 paused runs (SQLite).

    .venv/bin/python bench/check.py            # 10,000 runs, prints a Markdown table
    .venv/bin/python bench/check.py --quick    # 200 runs

Every run is a paused run of one workflow that fetched, priced (two children under
`gather`) and audited an order, and waits for approval: five recorded sites, one pending
interrupt. One such run is made by the engine; the store is then filled with copies of
its checkpoint under other run ids (so filling is fast). `check_runs` dry-replays every
one of them, `jobs` at a time: against the same code (all compatible), and against a
version with a step inserted (all incompatible at once). Needs only the main dev
environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from tiny_tasks import TaskContext, TaskInterrupted, check_runs, task
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite


async def fetch(item: str) -> dict[str, Any]:
    return {"item": item, "price": 10}


async def price_of(item: str) -> int:
    return len(item)


async def audit(order: dict[str, Any]) -> str:
    return "clean"


async def _price(item: str, ctx: TaskContext) -> int:
    return await ctx.step(price_of, item)


price = task("price", _price)


def workflow(inserted: bool) -> Any:
    async def order(item: str, ctx: TaskContext) -> str:
        placed = await ctx.step(fetch, item)
        if inserted:
            await ctx.step(audit, placed)
        low, high = await asyncio.gather(price.invoke(item), price.invoke(item + "!"))
        await ctx.step(audit, placed)
        return str(ctx.interrupt({"approve": placed, "range": [low, high]}))

    return task("order", order)


async def fill(saver: SqliteSaver, runs: int) -> None:
    """One paused run made by the engine, copied to `runs` run ids."""
    code = workflow(False)
    with contextlib.suppress(TaskInterrupted):
        await code.invoke("book", run_id="run-0", checkpointer=saver)
    stored = await saver.load("run-0")
    assert stored is not None
    assert stored.status == "paused"
    for number in range(1, runs):
        write = CheckpointWrite(
            f"run-{number}", "order", "paused", 0, stored.pending, stored.state, stored.entries
        )
        await saver.save(write, None)


async def measure(runs: int, jobs: int) -> list[tuple[str, int, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        async with SqliteSaver(Path(folder) / "check.db") as saver:
            await fill(saver, runs)
            for label, code in (("same code", workflow(False)), ("step inserted", workflow(True))):
                started = time.perf_counter()
                report = await check_runs(saver, [code, price], jobs=jobs)
                elapsed = time.perf_counter() - started
                assert report.checked == runs
                assert len(report.incompatible) == (0 if label == "same code" else runs)
                rows.append((label, runs, elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 runs")
    parser.add_argument("--jobs", type=int, default=8)
    options = parser.parse_args()
    runs = 200 if options.quick else 10_000
    rows = asyncio.run(measure(runs, options.jobs))
    print(f"| check_runs, SQLite, jobs={options.jobs} | runs | total, s | per run, µs |")
    print("|---|---:|---:|---:|")
    for label, count, elapsed in rows:
        print(f"| {label} | {count:,} | {elapsed:.2f} | {elapsed / count * 1e6:.0f} |")


if __name__ == "__main__":
    main()
