"""Where a pause/resume round trip's time goes: cProfile over one K = 100 run.

    .venv/bin/python bench/profile_resume.py [--k 100] [--backend memory|sqlite] [--top 25]

Runs the pause/resume workload of `bench/run` (one task pausing K times, each pause
answered with `resume`) once to warm up, then once under cProfile, and prints the
functions with the most own time and the most cumulative time. The K = 100 profile in
bench/README.md comes from here; rerun it before and after a change to the resume path.
Needs only the main dev environment.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tiny_tasks import MemorySaver

sys.path.insert(0, str(Path(__file__).resolve().parent / "systems"))

from tiny_tasks_bench import pauser  # the pause/resume workload of bench/run


async def round_trips(saver: Any, k: int) -> float:
    run = {"run_id": uuid.uuid4().hex, "checkpointer": saver}
    started = time.perf_counter()
    events = pauser(k, **run)
    while True:
        pending = None
        async for _partial, _snapshot, paused in events:
            if paused is not None:
                pending = paused.value
        if pending is None:
            break
        events = pauser.resume(pending, **run)
    assert events.result == k * (k - 1) // 2
    return time.perf_counter() - started


async def profile(backend: str, k: int) -> tuple[cProfile.Profile, float]:
    with tempfile.TemporaryDirectory() as folder:
        if backend == "sqlite":
            from tiny_tasks.savers import SqliteSaver

            saver: Any = SqliteSaver(Path(folder) / "profile.sqlite")
            await saver.setup()
        else:
            saver = MemorySaver()
        try:
            await round_trips(saver, k)  # warm-up
            profiler = cProfile.Profile()
            profiler.enable()
            seconds = await round_trips(saver, k)
            profiler.disable()
        finally:
            if backend == "sqlite":
                await saver.close()
    return profiler, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--backend", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    profiler, seconds = asyncio.run(profile(options.backend, options.k))
    print(
        f"{options.backend}, K = {options.k}: {seconds * 1e3:.1f} ms under the profiler, "
        f"{seconds / options.k * 1e3:.3f} ms per round trip"
    )
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(options.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
