"""The runtime's figures: worker throughput, recovery after SIGKILL, the claim query at
scale and timer lateness (issue 10's Speed section).

    .venv/bin/python bench/runtime.py                  # full sizes, SQLite and PostgreSQL
    .venv/bin/python bench/runtime.py --quick          # tiny sizes, for CI
    .venv/bin/python bench/runtime.py --only throughput --workers 1,2,4

Needs only the main dev environment (PostgreSQL: the server binaries, for a throwaway
server from bench/_pg.py, or BENCH_POSTGRES_URL). DBOS queues are measured beside
tiny-tasks when the `dbos` package is importable (bench/.env, see bench/README.md):
`bench/run` runs this file there.

1. **throughput**: runs completed per second by N worker processes (1, 2, 4) on one
   store. A run makes 5 recorded steps and then waits for a message (`ctx.recv`), which
   this process sends once the run waits (a pause answered by another process); a worker
   then finishes it. DBOS: the same workflow (5 `@DBOS.step`s, `DBOS.recv_async`) on a
   `Queue`, its workers in N processes, the message sent with `DBOSClient.send` once the
   workflow announced (an event) that it waits.
2. **recovery**: a worker process drives runs of many short steps; it is SIGKILLed and
   the time until a second, idle worker process has made a step of one of its runs is
   measured (bounded by the lease plus one poll interval).
3. **claim at scale**: the claim query over a store holding 1,000,000 paused runs whose
   wake time has not come (plus 100 due ones), timed, with its query plan (which must use
   the partial index of due runs).
4. **timer lateness**: runs sleeping until staggered times, fired by a worker while the
   throughput workload runs beside it: lateness = time the run continued - wake time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_tasks import TaskContext, Worker, list_runs, send, step, task

HERE = Path(__file__).resolve()
LEASE = 5.0
POLL = 0.25


# --- the workloads -------------------------------------------------------------------


@step
async def add_one(value: int) -> int:
    return value + 1


@task
async def job(number: int, ctx: TaskContext) -> int:
    total = number
    for _ in range(5):
        total = await add_one(total)
    answer = await ctx.recv("go")
    return total + int(answer)


@step
async def tick(run_id: str, index: int) -> int:
    _append(os.environ["BENCH_RUNTIME_LOG"], f"{time.time():.6f} {os.getpid()} {run_id} {index}")
    await asyncio.sleep(0.01)
    return index


@task
async def long_run(steps: int, ctx: TaskContext) -> int:
    for index in range(steps):
        await tick(ctx.run_id, index)
    return steps


@step
async def woke(wake_at: float) -> float:
    return time.time() - wake_at


@task
async def timer(wake_at: float, ctx: TaskContext) -> float:
    from datetime import UTC, datetime

    await ctx.sleep_until(datetime.fromtimestamp(wake_at, UTC))
    return await woke(wake_at)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


# --- stores --------------------------------------------------------------------------


async def open_store(store: str, pool: int = 10) -> Any:
    if store.startswith("postgres"):
        from tiny_tasks.savers import PostgresSaver

        saver: Any = PostgresSaver(store, max_size=pool)
    else:
        from tiny_tasks.savers import SqliteSaver

        saver = SqliteSaver(store)
    await saver.setup()
    return saver


@contextlib.contextmanager
def stores(backends: list[str], workdir: Path) -> Iterator[dict[str, Any]]:
    """A factory of fresh stores per backend: `make(name) -> str` (path or URL)."""
    with contextlib.ExitStack() as stack:
        pg_base = None
        if "postgres" in backends:
            from _pg import throwaway_postgres

            pg_base = os.environ.get("BENCH_POSTGRES_URL") or stack.enter_context(
                throwaway_postgres()
            )
        counter = iter(range(1_000_000))

        def make(backend: str) -> str:
            name = f"rt{next(counter)}"
            if backend == "sqlite":
                return str(workdir / f"{name}.db")
            from _pg import create_database

            assert pg_base is not None
            return create_database(pg_base, name)

        yield {"make": make, "pg": pg_base}


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_ready(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"worker {proc.pid} did not start: {line!r}")


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- roles run in worker processes -----------------------------------------------------


async def worker_role(store: str, concurrency: int, poll: float, lease: float) -> None:
    saver = await open_store(store, pool=concurrency + 2)
    try:
        worker = Worker(
            saver,
            [job, long_run, timer],
            concurrency=concurrency,
            poll_interval=poll,
            lease=lease,
            renew_every=lease / 3,
            shutdown_grace=1,
            listen=os.environ.get("BENCH_LISTEN", "1") == "1",
        )
        print("ready", flush=True)
        await worker.run()
    finally:
        await saver.close()


# --- 1. throughput ---------------------------------------------------------------------


async def throughput(store: str, workers: int, runs: int, concurrency: int) -> dict[str, Any]:
    saver = await open_store(store)
    procs = [
        spawn("worker", store, str(concurrency), str(POLL / 5), str(LEASE)) for _ in range(workers)
    ]
    try:
        wait_ready(procs)
        started = time.perf_counter()
        answered: set[str] = set()
        for number in range(runs):
            await job.submit(number, run_id=f"job-{number}", checkpointer=saver)
        while True:
            # Small pages: the measuring process must not take the workers' CPU.
            for info in await list_runs(saver, status="sleeping", limit=200):
                if info.run_id not in answered:
                    await send(saver, info.run_id, "go", 1)
                    answered.add(info.run_id)
            if await list_runs(saver, status="done", limit=1, offset=runs - 1):
                break  # the runs-th run is done
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        stop(procs)
        await saver.close()
    return {"runs": runs, "workers": workers, "seconds": elapsed, "per_second": runs / elapsed}


def dbos_throughput(python: str, store: str, workers: int, runs: int, concurrency: int) -> Any:
    """DBOS queues on the same database (bench/systems/dbos_queue.py, in `python`)."""
    if store.startswith("postgres"):
        url = store.replace("postgresql://", "postgresql+psycopg://", 1)
    else:
        url = f"sqlite:///{store}"
    script = HERE.parent / "systems" / "dbos_queue.py"
    command = [python, str(script), "measure", url, str(workers), str(runs), str(concurrency)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"DBOS queue bench failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


# --- 2. recovery -----------------------------------------------------------------------


async def recovery(store: str, runs: int, lease: float, poll: float) -> dict[str, Any]:
    log = Path(tempfile.mkdtemp(prefix="tt-recovery-")) / "ticks.log"
    env = {"BENCH_RUNTIME_LOG": str(log)}
    saver = await open_store(store)
    first = spawn("worker", store, "50", str(poll), str(lease), env=env)
    second: subprocess.Popen[str] | None = None
    try:
        wait_ready([first])
        for number in range(runs):
            await long_run.submit(10_000, run_id=f"long-{number}", checkpointer=saver)
        await _until(lambda: log.exists() and len(log.read_text().splitlines()) >= runs * 3)
        second = spawn("worker", store, "50", str(poll), str(lease), env=env)
        wait_ready([second])
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.time()
        while True:
            lines = [line.split() for line in log.read_text().splitlines()]
            taken = [float(f[0]) for f in lines if int(f[1]) == second.pid]
            if taken:
                return {
                    "lease": lease,
                    "poll": poll,
                    "recovery_seconds": min(taken) - killed,
                    "bound": lease + poll,
                }
            await asyncio.sleep(0.01)
    finally:
        stop([first] + ([second] if second else []))
        await saver.close()


async def _until(condition: Any) -> None:
    """Poll `condition()` every 10 ms (another process makes it true)."""
    while not condition():  # noqa: ASYNC110 - the change happens in another process
        await asyncio.sleep(0.01)


# --- 3. the claim query at scale -------------------------------------------------------


async def claim_at_scale(store: str, paused: int) -> dict[str, Any]:
    """Fill the store with `paused` paused runs not yet due (copies of one template run,
    made in SQL so the fill is fast) and 100 due ones; time the saver's claim_runs."""
    saver = await open_store(store)
    try:
        from tiny_tasks.savers.base import CheckpointWrite

        far = time.time() + 86_400 * 365
        for run_id, wake in (("template-far", far), ("template-due", time.time() - 1)):
            write = CheckpointWrite(
                run_id, "job", "paused", 0, ("job/interrupt#0",), b"{}", (b"{}",), wake_at=wake
            )
            await saver.save(write, None)
        started = time.perf_counter()
        await _copy_rows(store, "template-far", paused)
        await _copy_rows(store, "template-due", 100)
        filled = time.perf_counter() - started
        timings = []
        claimed_total = 0
        for _ in range(20):
            now = time.time()
            begin = time.perf_counter()
            claimed = await saver.claim_runs("bench", ["job"], now, now + 30, 10)
            timings.append(time.perf_counter() - begin)
            claimed_total += len(claimed)
        return {
            "paused": paused,
            "fill_seconds": filled,
            "claim_ms_median": statistics.median(timings) * 1000,
            "claim_ms_max": max(timings) * 1000,
            "claimed": claimed_total,
            "plan": await _plan(store),
        }
    finally:
        await saver.close()


async def _copy_rows(store: str, template: str, count: int) -> None:
    """`count` copies of run `template` under new run ids, in one SQL statement."""
    if store.startswith("postgres"):
        import psycopg

        async with await psycopg.AsyncConnection.connect(store, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'tiny_tasks_runs' ORDER BY ordinal_position"
            )
            columns = [row[0] for row in await cursor.fetchall()]
            values = [f"{template!r} || '-' || n" if c == "run_id" else c for c in columns]
            await conn.execute(
                f"INSERT INTO tiny_tasks_runs ({', '.join(columns)})"
                f" SELECT {', '.join(values)} FROM tiny_tasks_runs,"
                f" generate_series(1, {count}) AS n WHERE run_id = %s",
                (template,),
            )
            await conn.execute("ANALYZE tiny_tasks_runs")
        return
    import sqlite3

    with contextlib.closing(sqlite3.connect(store)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tiny_tasks_runs)")]
        values = [f"'{template}-' || n" if c == "run_id" else c for c in columns]
        with conn:
            conn.execute(
                f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq"
                f" WHERE n < {count}) INSERT INTO tiny_tasks_runs ({', '.join(columns)})"
                f" SELECT {', '.join(values)} FROM tiny_tasks_runs, seq WHERE run_id = ?",
                (template,),
            )
        conn.execute("ANALYZE")


async def _plan(store: str) -> str:
    """The query plan of the saver's claim query (it must use the partial index)."""
    now = time.time()
    if store.startswith("postgres"):
        import psycopg

        from tiny_tasks.savers import postgres as module

        query = _claim_query(module)
        async with await psycopg.AsyncConnection.connect(store, autocommit=True) as conn:
            params = {
                "owner": "bench",
                "names": ["job"],
                "now": now,
                "expires": now + 30,
                "limit": 10,
            }
            cursor = await conn.execute(f"EXPLAIN {query}", params)  # type: ignore[arg-type]
            return " / ".join(row[0] for row in await cursor.fetchall())
    import sqlite3

    from tiny_tasks.savers import _sqlite_queries as queries

    query = _claim_query(queries)
    with contextlib.closing(sqlite3.connect(store)) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {query}", (now, '["job"]', 10)).fetchall()
        return " / ".join(str(row[-1]) for row in rows)


def _claim_query(module: Any) -> str:
    for name in dir(module):
        value = getattr(module, name)
        if (
            isinstance(value, str)
            and "claim" in name.lower()
            and "due_at" in value
            and value.lstrip().upper().startswith(("SELECT", "WITH"))
        ):
            return value
    raise RuntimeError(f"no claim query found in {module.__name__}")


# --- 4. timer lateness -----------------------------------------------------------------


async def lateness(store: str, timers: int, spread: float, poll: float) -> dict[str, Any]:
    saver = await open_store(store)
    procs = [spawn("worker", store, "50", str(poll), str(LEASE)) for _ in range(2)]
    try:
        wait_ready(procs)
        base = time.time() + 2
        for number in range(timers):
            wake = base + spread * number / timers
            await timer.submit(wake, run_id=f"timer-{number}", checkpointer=saver)
        load = asyncio.ensure_future(throughput_load(saver, spread + 2))
        late: list[float] = []
        while len(late) < timers:
            done = await list_runs(saver, status="done", task_name="timer", limit=timers)
            if len(done) == timers:
                from tiny_tasks import get_run

                for info in done:
                    state = await get_run(saver, info.run_id)
                    late.append(float(state.result))  # type: ignore[union-attr, arg-type]
            await asyncio.sleep(0.1)
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
        late.sort()
        return {
            "timers": timers,
            "poll": poll,
            "p50_ms": late[len(late) // 2] * 1000,
            "p99_ms": late[int(len(late) * 0.99) - 1 if len(late) > 1 else 0] * 1000,
            "max_ms": late[-1] * 1000,
            "bound_ms": (poll + 0.05) * 1000,
        }
    finally:
        stop(procs)
        await saver.close()


async def throughput_load(saver: Any, seconds: float) -> None:
    """Background runs (submitted and answered) while the timers fire."""
    ends = time.monotonic() + seconds
    number = 0
    answered: set[str] = set()
    while time.monotonic() < ends:
        for _ in range(5):  # 50 runs a second: a third of what two workers can do
            await job.submit(number, run_id=f"load-{number}", checkpointer=saver)
            number += 1
        for info in await list_runs(saver, status="sleeping", task_name="job", limit=1000):
            if info.run_id not in answered:
                await send(saver, info.run_id, "go", 1)
                answered.add(info.run_id)
        await asyncio.sleep(0.1)


# --- the command -------------------------------------------------------------------------


SIZES = {
    "full": {
        "runs": 2000,
        "dbos_runs": 200,
        "recovery_runs": 20,
        "paused": 1_000_000,
        "timers": 500,
    },
    "quick": {"runs": 40, "dbos_runs": 10, "recovery_runs": 2, "paused": 2_000, "timers": 20},
}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = SIZES["quick" if args.quick else "full"]
    backends = args.backends.split(",")
    workers = [int(n) for n in args.workers.split(",")]
    only = set(args.only.split(",")) if args.only else None
    results: dict[str, Any] = {"size": "quick" if args.quick else "full", "cells": []}
    workdir = Path(tempfile.mkdtemp(prefix="tt-runtime-bench-"))
    with stores(backends, workdir) as made:
        for backend in backends:

            def cell(kind: str, backend: str = backend, **figures: Any) -> None:
                row = {"scenario": kind, "backend": backend, **figures}
                print(json.dumps(row), file=sys.stderr, flush=True)
                results["cells"].append(row)

            if only is None or "throughput" in only:
                for count in workers:
                    cell(
                        "throughput",
                        system="tiny-tasks",
                        **await throughput(made["make"](backend), count, size["runs"], 50),
                    )
                    if args.dbos:
                        cell(
                            "throughput",
                            system="DBOS queue",
                            **dbos_throughput(
                                args.dbos, made["make"](backend), count, args.dbos_runs, 50
                            ),
                        )
            if only is None or "recovery" in only:
                cell(
                    "recovery",
                    **await recovery(
                        made["make"](backend),
                        size["recovery_runs"],
                        2.0 if args.quick else LEASE,
                        POLL,
                    ),
                )
            if only is None or "claim" in only:
                cell("claim", **await claim_at_scale(made["make"](backend), size["paused"]))
            if only is None or "lateness" in only:
                cell("lateness", **await lateness(made["make"](backend), size["timers"], 5.0, POLL))
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        store, concurrency, poll, lease = sys.argv[2:6]
        asyncio.run(worker_role(store, int(concurrency), float(poll), float(lease)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--only", default=None, help="throughput,recovery,claim,lateness")
    parser.add_argument(
        "--dbos",
        default=os.environ.get("BENCH_DBOS_PYTHON", str(HERE.parent / ".env" / "bin" / "python")),
        help="a python with dbos installed (bench/.env's); '' to leave DBOS out",
    )
    parser.add_argument("--dbos-runs", type=int, default=None, help="runs per DBOS cell")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    if args.dbos and not Path(args.dbos).exists():
        print(f"no DBOS environment at {args.dbos}: DBOS left out", file=sys.stderr)
        args.dbos = ""
    if args.dbos_runs is None:
        args.dbos_runs = SIZES["quick" if args.quick else "full"]["dbos_runs"]
    results = asyncio.run(measure(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.markdown:
        print(markdown(results["cells"]))
        return
    for row in results["cells"]:
        print(" ".join(f"{key}={_fmt(value)}" for key, value in row.items() if key != "plan"))
        if "plan" in row:
            print("  plan:", row["plan"])


def markdown(cells: list[dict[str, Any]]) -> str:
    """The figures as Markdown tables (for RESULTS.md)."""
    out = [
        "| backend | system | workers | runs | runs/s | × DBOS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by_key = {
        (c["backend"], c["system"], c["workers"]): c for c in cells if c["scenario"] == "throughput"
    }
    for (backend, system, workers), cell in by_key.items():
        dbos = by_key.get((backend, "DBOS queue", workers))
        ratio = (
            f"{cell['per_second'] / dbos['per_second']:.0f}x"
            if dbos and system != "DBOS queue"
            else ""
        )
        out.append(
            f"| {backend} | {system} | {workers} | {cell['runs']} |"
            f" {cell['per_second']:.1f} | {ratio} |"
        )
    out += [
        "",
        "| backend | recovery after SIGKILL | bound (lease + poll) |",
        "| --- | --- | --- |",
    ]
    for c in cells:
        if c["scenario"] == "recovery":
            out.append(f"| {c['backend']} | {c['recovery_seconds']:.2f} s | {c['bound']:.2f} s |")
    out += [
        "",
        "| backend | paused runs | claim median | claim max | plan |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in cells:
        if c["scenario"] == "claim":
            out.append(
                f"| {c['backend']} | {c['paused']:,} | {c['claim_ms_median']:.2f} ms |"
                f" {c['claim_ms_max']:.2f} ms | `{c['plan']}` |"
            )
    out += [
        "",
        "| backend | timers | poll | lateness p50 | p99 | max | bound (poll + 50 ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cells:
        if c["scenario"] == "lateness":
            out.append(
                f"| {c['backend']} | {c['timers']} | {c['poll'] * 1000:.0f} ms |"
                f" {c['p50_ms']:.0f} ms | {c['p99_ms']:.0f} ms | {c['max_ms']:.0f} ms |"
                f" {c['bound_ms']:.0f} ms |"
            )
    return "\n".join(out)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
