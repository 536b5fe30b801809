"""How much a run's journal grows per answered interrupt, in bytes.

    .venv/bin/python bench/journal_size.py            # prints a Markdown table
    .venv/bin/python bench/journal_size.py --quick    # K = 10 only

The pause/resume workload of `bench/run` (one task pausing K times, its answers small
ints) is run to its last pause, K = 10, 100, 300. Reported per interrupt:

* journal: the bytes the engine hands its saver (every entry plus the state blob), the
  same for every saver;
* SQLite file: what such runs (3,000 interrupts in all) add to a `SqliteSaver` file once
  the WAL is checkpointed and truncated (rows, keys and page slack included), over an
  empty database.

`bench/run` appends this table to RESULTS.md. Needs only the main dev environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from tiny_tasks import MemorySaver
from tiny_tasks.savers import SqliteSaver

sys.path.insert(0, str(Path(__file__).resolve().parent / "systems"))

from tiny_tasks_bench import pauser  # the pause/resume workload of bench/run

SIZES = (10, 100, 300)
RUN_ID = "journal-size"
INTERRUPTS_ON_DISK = 3000  # per size: enough runs that page slack averages out


async def run_to_last_pause(saver: Any, k: int, run_id: str = RUN_ID) -> None:
    """Start the run and answer all but its last interrupt."""
    options = {"run_id": run_id, "checkpointer": saver}
    stream = pauser(k, **options)
    for _ in range(k):
        async for _partial, _snapshot, paused in stream:
            if paused is not None:
                stream = pauser.resume(paused.value, **options)


def file_size(path: Path) -> int:
    """The database's size with its WAL folded in and truncated."""
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


async def measure(k: int, folder: Path) -> tuple[float, float]:
    """(journal bytes, SQLite file bytes) per interrupt for a run paused k times."""
    memory = MemorySaver()
    await run_to_last_pause(memory, k)
    stored = memory.load(RUN_ID)
    assert stored is not None
    assert len(stored.entries) == k  # the input and k - 1 answers
    journal = len(stored.state) + sum(len(entry) for entry in stored.entries)

    path = folder / f"k{k}.db"
    runs = max(1, INTERRUPTS_ON_DISK // k)
    async with SqliteSaver(path) as saver:
        await saver.setup()
        empty = file_size(path)
        for number in range(runs):
            await run_to_last_pause(saver, k, f"{RUN_ID}-{number}")
    on_disk = file_size(path) - empty
    return journal / k, on_disk / (k * runs)


async def main(sizes: tuple[int, ...]) -> None:
    rows = ["| K | journal, bytes/interrupt | SQLite file, bytes/interrupt |", "|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as folder:
        for k in sizes:
            journal, on_disk = await measure(k, Path(folder))
            rows.append(f"| {k} | {journal:.0f} | {on_disk:.0f} |")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 10 only")
    options = parser.parse_args()
    asyncio.run(main(SIZES[:1] if options.quick else SIZES))
