"""The measuring loop every system module shares.

A system module (``bench/systems/*_bench.py``) defines the same scenario coroutines,
each taking an open backend and a size and returning the seconds its measured part took:

* ``stream(backend, n)``: one run yields `n` small partials to its consumer;
* ``pause_resume(backend, k)``: one run pauses `k` times and is resumed `k` times;
* ``steps(backend, n)``: one run records `n` sequential steps;
* ``resume_after_steps(backend, n)``: a run records `n` steps and pauses (not timed),
  then one resume to the end is timed;
* ``concurrent(backend, n)``: `n` runs at once in this process, each making
  `CONCURRENT_STEPS` steps and pausing once; then all are resumed to the end (timed
  from the first start to the last result; peak RSS sampled).

``concurrent_4p`` needs no code of its own: the harness starts `PROCESSES` copies of the
system module (``--worker``) that open the same store (``System.location`` says where the
opened backend lives; the backend factories open that location instead of a new store
while ``SHARED["location"]`` is set) and run ``concurrent`` on `n / PROCESSES` runs each,
all released at once.

It also defines ``BACKENDS``: backend name -> async context manager factory
``open(pg_url, workdir)`` yielding whatever its scenarios need. `run_system` runs every
scenario on every backend, a warm-up then the repetitions, and writes one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any

SCENARIOS = ("stream", "pause_resume", "steps", "resume_after_steps", "concurrent", "concurrent_4p")
PROCESSES = 4  # worker processes sharing one store in "concurrent_4p"

FULL_SIZES: dict[str, tuple[int, ...]] = {
    "stream": (20_000,),
    "pause_resume": (10, 100, 300),
    "steps": (1_000,),
    "resume_after_steps": (1_000,),
    "concurrent": (100, 1_000, 10_000),
    "concurrent_4p": (1_000,),
}
QUICK_SIZES: dict[str, tuple[int, ...]] = {
    "stream": (50,),
    "pause_resume": (1, 3),
    "steps": (10,),
    "resume_after_steps": (10,),
    "concurrent": (10,),
    "concurrent_4p": (8,),
}

# What one "operation" is, so every figure is time per operation.
UNITS: dict[str, tuple[str, float]] = {
    "stream": ("µs/partial", 1e6),
    "pause_resume": ("ms/round trip", 1e3),
    "steps": ("ms/step", 1e3),
    "resume_after_steps": ("ms/resume", 1e3),
    "concurrent": ("ms/run", 1e3),  # shown as runs/s
    "concurrent_4p": ("ms/run", 1e3),
}
# Concurrent runs: steps each run makes before its one pause (then it is resumed).
CONCURRENT_STEPS = 5


def operations(scenario: str, size: int) -> int:
    """How many operations one measured run of `scenario` at `size` performs."""
    return 1 if scenario == "resume_after_steps" else size


class NotApplicable(Exception):
    """A scenario that this system cannot express on this backend (reported as n/a)."""


@dataclass
class Result:
    system: str
    backend: str
    scenario: str
    size: int
    unit: str
    status: str = "ok"  # "ok", "n/a", "skipped" or "error"
    note: str = ""
    seconds_per_op: list[float] = field(default_factory=list)
    requested_size: int = 0  # the workload's size; `size` is smaller when the cell shrank
    # The machine's speed around this cell: seconds per item of a bare async generator,
    # measured just before and just after the measured runs (their mean).
    bare_seconds: float = 0.0
    # What a commit promises on this backend, as the system reports it ("WAL,
    # synchronous=NORMAL", "synchronous_commit=on", "not stored"...) and its level, the
    # key rows are matched on ("NORMAL", "FULL", "on", "memory", "not stored").
    durability: str = ""
    level: str = ""
    # Set when the figure measures a polling interval rather than the work: such a cell
    # is shown but never counted as meeting a target.
    polling: str = ""
    # Peak resident memory above the process's before the run, MiB, per measured run
    # (the concurrent scenario only).
    peak_rss_mib: list[float] = field(default_factory=list)
    # The process's whole resident set at that peak, MiB (imports and earlier cells
    # included): growth alone under-counts memory the allocator kept from the warm-up.
    peak_rss_total_mib: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.requested_size = self.requested_size or self.size

    @property
    def median(self) -> float:
        return statistics.median(self.seconds_per_op)


BackendFactory = Callable[[str | None, str], AbstractAsyncContextManager[Any]]
Scenario = Callable[[Any, int], Awaitable[float]]


@dataclass
class System:
    """One measured configuration: a label, its backends, its scenario functions."""

    name: str
    backends: Mapping[str, BackendFactory]
    scenarios: Mapping[str, Scenario]
    versions: dict[str, str] = field(default_factory=dict)
    # Scenarios that only make sense on some backends (e.g. resume needs a checkpointer).
    backends_for: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Backend -> reason, for backends the system does not have at all.
    missing_backends: Mapping[str, str] = field(default_factory=dict)
    # (backend name, opened backend) -> (durability text, level): what a commit promises,
    # read from the opened store where it can be (see Result.durability).
    durability: Callable[[str, Any], Awaitable[tuple[str, str]]] | None = None
    # (scenario, backend) -> why that cell measures a polling interval.
    polling: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # Scenario -> (backend -> durability): overrides, e.g. a stream that is not stored.
    durability_override: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # (backend name, opened backend) -> where its store lives (a file path or a URL), for
    # worker processes to open the same store; None: no multi-process scenario.
    location: Callable[[str, Any], str] | None = None
    # Environment variables a worker process needs (by worker index).
    worker_env: Callable[[int], dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if self.location is not None and "concurrent" in self.scenarios:
            shared = tuple(b for b in ("sqlite", "postgres") if b in self.backends)
            self.scenarios = {**self.scenarios, "concurrent_4p": self._processes}
            self.backends_for = {**self.backends_for, "concurrent_4p": shared}

    async def _processes(self, backend: Any, n: int) -> float:
        return await concurrent_processes(self, backend, n)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one system's scenarios; write JSON.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measured runs after a warm-up (default 3, quick 1)",
    )
    parser.add_argument("--postgres", default=None, help="base URL of a throwaway server")
    parser.add_argument("--out", default="-", help="JSON output file ('-': stdout)")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run")
    parser.add_argument("--backends", default="", help="comma-separated backends to run")
    parser.add_argument("--variant", default="", help="system-specific configuration")
    parser.add_argument(
        "--worker",
        nargs=3,
        metavar=("BACKEND", "LOCATION", "RUNS"),
        help="internal: be one process of the concurrent_4p scenario",
    )
    parser.add_argument(
        "--cell-budget",
        type=float,
        default=None,
        help="seconds the measured runs of one cell may take (default 120, quick 10; 0: no limit)",
    )
    return parser.parse_args(argv)


# Set in a worker process: the store its backend factory opens instead of a new one.
SHARED: dict[str, str | None] = {"location": None, "backend": None}


async def concurrent_processes(system: System, backend: Any, n: int) -> float:
    """`n` runs split over `PROCESSES` worker processes sharing `backend`'s store.

    Each worker opens the store, warms up, reports ready and waits; all are released at
    once, and the time is from the release to the last worker's report. The peak RSS
    recorded is the sum of the workers' peaks (`WORKER_RSS`).
    """
    assert system.location is not None
    backend_name = SHARED["backend"]
    assert backend_name is not None
    location = system.location(backend_name, backend)
    per_worker = max(1, n // PROCESSES)
    workers = []
    for index in range(PROCESSES):
        env = {**os.environ, **(system.worker_env(index) if system.worker_env else {})}
        workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                sys.argv[0],
                "--variant",
                ARGS["variant"],
                "--worker",
                backend_name,
                location,
                str(per_worker),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        )
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=600)
            if line.strip() != b"ready":
                raise RuntimeError(f"a worker failed to start: {line!r}")
        started = time.perf_counter()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        reports = []
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=3600)
            if not line:
                raise RuntimeError(f"a worker died (status {await worker.wait()})")
            reports.append(json.loads(line))
        elapsed = time.perf_counter() - started
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
            await worker.wait()
    WORKER_RSS.append(sum(report["rss_mib"] for report in reports))
    return elapsed * n / (per_worker * PROCESSES)


WORKER_RSS: list[float] = []
ARGS: dict[str, str] = {"variant": ""}


async def _worker(system: System, backend_name: str, location: str, runs: int) -> None:
    """A worker of `concurrent_processes`: open the shared store, wait for "go", run."""
    SHARED["location"] = location
    concurrent = system.scenarios["concurrent"]
    async with system.backends[backend_name](None, tempfile.gettempdir()) as backend:
        await concurrent(backend, 2)  # warm-up
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        with PeakRss() as peak:
            seconds = await concurrent(backend, runs)
        print(json.dumps({"seconds": seconds, "rss_mib": peak.mib}), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _measure(
    system: System,
    backend_name: str,
    scenario: str,
    size: int,
    args: argparse.Namespace,
    workdir: str,
) -> Result:
    """Warm up, project the cell's duration, then time `args.repeat` runs.

    The warm-up is one run at a tenth of the size; its wall time projects how long the
    measured runs will take. A cell projected over `args.cell_budget` seconds is shrunk
    (stream, steps: their cost per operation does not depend on the size) or skipped
    (pause/resume, resume after steps, concurrent: there the size is what is being
    varied) unless one measured run fits, which is then all it gets. A cell whose
    full-size run is cheap gets a second, full-size warm-up, and one under a second is
    measured `CHEAP_REPEAT` times instead. In quick mode every cell runs once, with no
    warm-up: there the point is that every cell still works.
    """
    unit = UNITS[scenario][0]
    result = Result(system.name, backend_name, scenario, size, unit)
    function = system.scenarios[scenario]
    factory = system.backends[backend_name]
    result.polling = system.polling.get((scenario, backend_name), "")
    SHARED["backend"] = backend_name
    try:
        async with factory(args.postgres, workdir) as backend:
            if scenario in system.durability_override:
                result.durability, result.level = system.durability_override[scenario]
            elif system.durability is not None:
                result.durability, result.level = await system.durability(backend_name, backend)
            probe_size = max(1, size // 10)
            projected_run = 0.0
            if not args.quick:  # quick: no warm-up, no projection, the one run is the test
                started = time.perf_counter()
                await function(backend, probe_size)
                projected_run = (time.perf_counter() - started) * size / probe_size
            repeat = args.repeat
            budget = 0.0 if args.quick else args.cell_budget  # quick: every cell runs once
            if (
                projected_run * repeat > budget > 0
                and scenario not in SHRINKABLE
                and projected_run <= budget
            ):
                repeat = 1  # one measured run fits where `args.repeat` would not
                result.note = (
                    f"1 measured run: {args.repeat} at size {size:,} projected at "
                    f"{projected_run * args.repeat:,.0f} s, over the "
                    f"{args.cell_budget:g} s cell budget"
                )
            if projected_run * repeat > budget > 0:
                over = (
                    f"{repeat} run(s) at size {size:,} projected at "
                    f"{projected_run * repeat:,.0f} s, over the {args.cell_budget:g} s "
                    f"cell budget"
                )
                if scenario not in SHRINKABLE:
                    result.status, result.note = "skipped", over
                    return result
                size = _shrunk(size, args.cell_budget / repeat / projected_run)
                result.size, result.note = size, f"size reduced: {over}"
            elif projected_run < FULL_WARM_UP_LIMIT and probe_size < size and not args.quick:
                await function(backend, size)
            if projected_run < CHEAP_RUN and not args.quick:
                repeat = max(repeat, CHEAP_REPEAT)  # more runs: a steadier median, ~free
            before = await bare_speed()
            for _ in range(repeat):
                gc.collect()
                if scenario == "concurrent_4p":
                    seconds = await function(backend, size)
                    result.peak_rss_mib.append(WORKER_RSS[-1])
                elif scenario in RSS_SCENARIOS:
                    with PeakRss() as peak:
                        seconds = await function(backend, size)
                    result.peak_rss_mib.append(peak.mib)
                    result.peak_rss_total_mib.append(peak.total_mib)
                else:
                    seconds = await function(backend, size)
                result.seconds_per_op.append(seconds / operations(scenario, size))
            result.bare_seconds = (before + await bare_speed()) / 2
    except NotApplicable as reason:
        result.status, result.note = "n/a", str(reason)
    except Exception as error:  # report and go on: one broken cell must not hide the rest
        log(traceback.format_exc())
        result.status, result.note = "error", f"{type(error).__name__}: {error}"[:300]
    return result


async def _bare_items(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def bare_speed(items: int = 20_000, runs: int = 5) -> float:
    """Seconds per item of a bare async generator consumed with `async for`, right now.

    The machines we measure on are shared: their speed drifts by up to 2x over minutes,
    and each system runs in its own process, minutes apart. Ratios between systems are
    therefore taken on times divided by this figure, measured around each cell.
    """
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        async for _item in _bare_items(items):
            pass
        samples.append((time.perf_counter() - started) / items)
    return statistics.median(samples)


SHRINKABLE = ("stream", "steps")
RSS_SCENARIOS = ("concurrent",)


class PeakRss:
    """The peak resident set size above the one on entry, sampled every 2 ms by a thread.

    `ru_maxrss` is the peak of the whole process's life, so it cannot tell one cell from
    the next; sampling /proc/self/statm can (at the cost of missing a peak shorter than
    the sampling period, irrelevant for runs that take seconds).
    """

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._base = self._peak = 0

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._rss())

    def __enter__(self) -> PeakRss:
        self._base = self._peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())

    @property
    def mib(self) -> float:
        return (self._peak - self._base) / 2**20

    @property
    def total_mib(self) -> float:
        return self._peak / 2**20


FULL_WARM_UP_LIMIT = 20.0  # seconds
CHEAP_RUN, CHEAP_REPEAT = 1.0, 7  # runs projected under CHEAP_RUN seconds are repeated more


def _shrunk(size: int, factor: float) -> int:
    """`size * factor` rounded down to two significant digits (at least 1)."""
    target = max(1, int(size * factor))
    digits = len(str(target))
    step = 10 ** max(0, digits - 2)
    return max(1, target // step * step)


async def _run(system: System, args: argparse.Namespace) -> list[Result]:
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    chosen_backends = [b for b in args.backends.split(",") if b]
    results: list[Result] = []
    workdir = tempfile.mkdtemp(prefix="tiny-tasks-bench-")
    try:
        for scenario in only:
            if scenario not in system.scenarios:
                continue
            allowed = system.backends_for.get(scenario)
            names = list(system.backends) + list(system.missing_backends)
            for backend_name in names:
                if chosen_backends and backend_name not in chosen_backends:
                    continue
                if allowed is not None and backend_name not in allowed:
                    continue
                for size in sizes[scenario]:
                    missing = system.missing_backends.get(backend_name)
                    if backend_name == "postgres" and args.postgres is None:
                        missing = "no PostgreSQL server for this run"
                    if missing:
                        results.append(
                            Result(
                                system.name,
                                backend_name,
                                scenario,
                                size,
                                UNITS[scenario][0],
                                "n/a",
                                missing,
                            )
                        )
                        continue
                    started = time.perf_counter()
                    result = await _measure(system, backend_name, scenario, size, args, workdir)
                    results.append(result)
                    log(_progress_line(result, time.perf_counter() - started))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _progress_line(result: Result, wall: float) -> str:
    where = f"{result.system:<26} {result.backend:<9} {result.scenario:<19} {result.size:>6}"
    if result.status != "ok":
        return f"  {where}  {result.status}: {result.note}"
    scale = UNITS[result.scenario][1]
    rss = f", {max(result.peak_rss_mib):.0f} MiB" if result.peak_rss_mib else ""
    return f"  {where}  {result.median * scale:10.3f} {result.unit}  ({wall:.1f} s{rss})"


def run_system(make_system: Callable[[str], System], argv: list[str] | None = None) -> None:
    """Entry point of a system module: measure everything and write the JSON report.

    `make_system(variant)` builds the configuration named by ``--variant``.
    """
    args = parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.cell_budget is None:
        args.cell_budget = 10.0 if args.quick else 120.0
    system = make_system(args.variant)
    ARGS["variant"] = args.variant
    if args.worker:
        backend_name, location, runs = args.worker
        asyncio.run(_worker(system, backend_name, location, int(runs)))
        return
    results = asyncio.run(_run(system, args))
    document = {
        "system": system.name,
        "versions": {"python": platform.python_version(), **system.versions},
        "pid": os.getpid(),
        "results": [asdict(r) for r in results],
    }
    text = json.dumps(document, indent=1, ensure_ascii=False)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
