"""What streaming through tiny-tasks costs, next to a bare async generator.

    .venv/bin/python bench/stream.py              # no checkpointer, MemorySaver, SqliteSaver
    .venv/bin/python bench/stream.py --postgres   # also PostgresSaver (throwaway server)
    .venv/bin/python bench/stream.py --instructions   # instruction counts (valgrind)

One task yields 20,000 small partials (the ints 0..19,999) to a consumer's `async for`;
a bare async generator does the same in the same process. Each column is the median of
5 runs after a warm-up, in µs per partial, and its ratio to the bare generator. Needs
only the main dev environment (no peers). A saver missing from this build is reported
as n/a. Targets: ≤10x bare without a checkpointer, ≤15x with MemorySaver.

Timings on a shared machine move with its load, and the ratios with them (bare and
tiny-tasks do not slow down alike). `--instructions` counts the instructions each pass
executes under valgrind's callgrind instead: the same figure whatever the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tiny_tasks import MemorySaver, task

sys.path.insert(0, str(Path(__file__).resolve().parent))

PARTIALS = 20_000
RUNS = 5


async def bare(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@task("partials")
async def partials(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i


@contextlib.asynccontextmanager
async def no_checkpointer() -> AsyncIterator[None]:
    yield None


@contextlib.asynccontextmanager
async def memory_saver() -> AsyncIterator[Any]:
    yield MemorySaver()


@contextlib.asynccontextmanager
async def sqlite_saver() -> AsyncIterator[Any]:
    from tiny_tasks.savers import SqliteSaver

    with tempfile.TemporaryDirectory() as directory:
        async with SqliteSaver(Path(directory) / "stream.sqlite") as saver:
            await saver.setup()
            yield saver


@contextlib.asynccontextmanager
async def postgres_saver() -> AsyncIterator[Any]:
    from _pg import create_database, throwaway_postgres
    from tiny_tasks.savers import PostgresSaver

    with throwaway_postgres() as base_url:
        async with PostgresSaver(create_database(base_url, "bench_stream")) as saver:
            await saver.setup()
            yield saver


# One line per column: label, how to open its checkpointer, target (x bare) or None.
Opener = Callable[[], contextlib.AbstractAsyncContextManager[Any]]
COLUMNS: list[tuple[str, Opener, float | None]] = [
    ("no checkpointer", no_checkpointer, 10),
    ("MemorySaver", memory_saver, 15),
    ("SqliteSaver", sqlite_saver, None),
]
POSTGRES_COLUMN: tuple[str, Opener, float | None] = ("PostgresSaver", postgres_saver, None)


async def time_bare(n: int) -> float:
    started = time.perf_counter()
    async for _partial in bare(n):
        pass
    return time.perf_counter() - started


async def time_task(n: int, checkpointer: Any) -> float:
    started = time.perf_counter()
    async for _partial, _snapshot, _interrupt in partials(
        n, run_id=uuid.uuid4().hex, checkpointer=checkpointer
    ):
        pass
    return time.perf_counter() - started


async def per_partial(measure: Callable[[int], Any], n: int) -> list[float]:
    await measure(n)  # warm-up
    samples = []
    for _ in range(RUNS):
        gc.collect()
        samples.append(await measure(n) / n * 1e6)
    return samples


async def main(with_postgres: bool) -> None:
    columns = COLUMNS + ([POSTGRES_COLUMN] if with_postgres else [])
    floor = await per_partial(time_bare, PARTIALS)
    bare_median = statistics.median(floor)
    print(
        f"{PARTIALS:,} partials, median of {RUNS} runs after a warm-up, Python "
        f"{sys.version.split()[0]}\n"
    )
    print(f"{'':<18}{'µs/partial':>11}{'min–max':>16}{'x bare':>9}  target")
    print(f"{'bare async gen':<18}{bare_median:>11.3f}{_spread(floor):>16}{1:>8.1f}x")
    for label, open_saver, target in columns:
        try:
            async with open_saver() as saver:
                samples = await per_partial(lambda n, s=saver: time_task(n, s), PARTIALS)
        except (ImportError, AttributeError) as missing:
            print(f"{label:<18}{'n/a':>11}  ({type(missing).__name__}: {missing})")
            continue
        median = statistics.median(samples)
        times = median / bare_median
        verdict = ""
        if target is not None:
            verdict = f"≤{target:g}x: " + ("met" if times <= target else "NOT met")
        print(f"{label:<18}{median:>11.3f}{_spread(samples):>16}{times:>8.1f}x  {verdict}")


def _spread(samples: list[float]) -> str:
    return f"{min(samples):.3f}–{max(samples):.3f}"


# -- instruction counts (load-independent) ------------------------------------------------

ONE_PASS: dict[str, Opener | None] = {
    "bare": None,
    "no checkpointer": no_checkpointer,
    "MemorySaver": memory_saver,
}


async def one_pass(kind: str, n: int) -> None:
    """Stream `n` partials once the way `kind` does (what `--instructions` counts)."""
    opener = ONE_PASS[kind]
    if opener is None:
        await time_bare(n)
        return
    async with opener() as saver:
        await time_task(n, saver)


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
    """Instructions per partial: the same passes with and without the 20,000 partials."""
    print(f"instructions per partial (callgrind, {PARTIALS:,} partials minus none)\n")
    per_partial = {}
    for kind in ONE_PASS:
        per_partial[kind] = (instructions(kind, PARTIALS) - instructions(kind, 0)) / PARTIALS
        times = per_partial[kind] / per_partial["bare"]
        print(f"{kind:<18}{per_partial[kind]:>9,.0f}{times:>8.1f}x", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="add a PostgresSaver column (starts a throwaway server, or uses BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per partial with valgrind instead of timing: "
        "the same on a loaded machine as on an idle one",
    )
    parser.add_argument("--one-pass", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one_pass:
        asyncio.run(one_pass(options.one_pass[0], int(options.one_pass[1])))
    elif options.instructions:
        count_instructions()
    else:
        asyncio.run(main(options.postgres))
