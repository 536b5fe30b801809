"""The runtime's proof under real damage: worker processes SIGKILLed at random.

N submitted runs of `proof`, each with steps, a durable sleep, an interrupt with a
deadline (answered by another process for even-numbered runs, left to its default for
odd ones) and a message, are driven by W worker processes (`tiny-tasks worker`) on one
SQLite file or one PostgreSQL database while this process SIGKILLs a random worker every
so often and restarts it. Every step appends `begin` / `end` lines to a log kept outside
the store (one `os.write` on an `O_APPEND` file per line), and the harness appends `kill`
lines; `verify` then checks from that log and the kept outcomes that

* every run finished with the expected outcome (answer, default, message);
* no step whose record committed ran again (its committed execution is its last);
* no run was driven by two processes at once (no two step executions of one run
  overlap, a killed process's execution ending at its kill);
* each message was received exactly once, by its run.

Used by tests/test_runtime_proof.py (small N) and as a script for the README figure:

    python tests/runtime_proof.py --store sqlite --runs 2000 --workers 4
    python tests/runtime_proof.py --store postgresql://... --runs 2000 --workers 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tiny_tasks import (
    AlreadyAnsweredError,
    InterruptTimeoutError,
    RunBusyError,
    RunConflictError,
    TaskContext,
    get_run,
    list_runs,
    send,
    step,
    task,
)

LOG_ENV = "TINY_TASKS_PROOF_LOG"
SLEEP = timedelta(seconds=1.5)  # longer than the engine's in-process sleep: stored, woken
DEADLINE_ENV = "TINY_TASKS_PROOF_DEADLINE"
DEADLINE = timedelta(seconds=float(os.environ.get(DEADLINE_ENV, "4")))
TOPIC = "note"


def _log(*fields: str) -> None:
    path = os.environ[LOG_ENV]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(fields) + "\n").encode())
    finally:
        os.close(fd)


@step
async def mark(run_id: str, site: str) -> str:
    """A step with an effect outside the store: its begin and end in the log."""
    nonce = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _log("begin", run_id, site, nonce)
    await asyncio.sleep(random.uniform(0, 0.02))
    _log("end", run_id, site, nonce)
    return nonce


@task
async def proof(number: int, ctx: TaskContext) -> dict[str, Any]:
    run_id = ctx.run_id
    first = await mark(run_id, "a")
    await ctx.sleep(SLEEP)
    second = await mark(run_id, "b")
    answer = ctx.interrupt({"run": run_id}, timeout=DEADLINE, default="default")
    message = await ctx.recv(TOPIC, timeout=timedelta(minutes=30))
    third = await mark(run_id, "c")
    return {"number": number, "steps": [first, second, third], "answer": answer, "msg": message}


# --- the harness ---------------------------------------------------------------------


def as_url(store: str) -> str:
    """A libpq `key=value` connection string as a `postgresql://` URL (what the CLI
    takes); a path or a URL as it is."""
    if "=" not in store or store.startswith("postgres"):
        return store
    from urllib.parse import quote, urlencode

    params = dict(part.split("=", 1) for part in store.split())
    user = params.pop("user", "")
    dbname = params.pop("dbname", "")
    return f"postgresql://{quote(user)}@/{quote(dbname)}?{urlencode(params)}"


async def open_store(store: str, pool: int = 4) -> Any:
    if store.startswith("postgres"):
        from tiny_tasks.savers import PostgresSaver

        saver: Any = PostgresSaver(store, max_size=pool)
    else:
        from tiny_tasks.savers import SqliteSaver

        saver = SqliteSaver(store)
    await saver.setup()
    return saver


async def answerer(store: str, runs: int) -> None:
    """Another process: answers the interrupts of even runs as soon as it sees them
    paused, and sends each run its message: an even run's with the answer, before the
    run waits for it (so it is buffered); any other once the run waits for it."""
    saver = await open_store(store)
    answered: set[str] = set()
    sent: set[str] = set()
    try:
        while len(sent) < runs:
            listed = await list_runs(saver, limit=runs + 10)
            for info in listed:
                run_id = info.run_id
                number = int(run_id.rpartition("-")[2])
                if number % 2 == 0 and info.status == "paused" and run_id not in answered:
                    if run_id not in sent:
                        await send(saver, run_id, TOPIC, f"note-{number}")
                        sent.add(run_id)
                        _log("sent", run_id)
                    try:
                        stream = proof.resume("yes", run_id=run_id, checkpointer=saver, keep=True)
                        async for _ in stream:
                            pass
                    except RunBusyError:
                        continue  # a worker holds it right now: try again
                    except (InterruptTimeoutError, AlreadyAnsweredError):
                        # The deadline won: its deadline passed (InterruptTimeoutError),
                        # or a worker answered with the default first (AlreadyAnsweredError,
                        # however far the run got since).
                        _log("late", run_id)
                    except RunConflictError:
                        continue
                    else:
                        _log("answered", run_id)
                    answered.add(run_id)
                elif info.status == "sleeping" and run_id not in sent:
                    stored = await saver.load(run_id)
                    if stored is not None and TOPIC in stored.waits:  # it waits for it now
                        await send(saver, run_id, TOPIC, f"note-{number}")
                        sent.add(run_id)
                        _log("sent", run_id)
            await asyncio.sleep(0.05)
    finally:
        await saver.close()


@dataclass
class Report:
    runs: int
    workers: int
    kills: int = 0
    seconds: float = 0.0
    answered: int = 0
    defaulted: int = 0
    late_answers: int = 0
    steps_run: int = 0
    steps_rerun_before_commit: int = 0
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"{self.runs} runs, {self.workers} worker processes, {self.kills} SIGKILLs, "
            f"{self.seconds:.1f} s",
            f"answered by another process: {self.answered}, deadline defaults: "
            f"{self.defaulted} (answers that lost to the deadline: {self.late_answers})",
            f"step executions: {self.steps_run} ({self.steps_rerun_before_commit} re-run "
            "because their process died before the record committed)",
            f"problems: {len(self.problems)}",
            *self.problems[:20],
        ]


def _worker_command(store: str, app_dir: Path, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tiny_tasks",
        "worker",
        store,
        "--app",
        "runtime_proof",
        "--concurrency",
        str(concurrency),
        "--lease",
        "2s",
        "--poll",
        "0.2s",
        "--grace",
        "1s",
        "--quiet",
    ]


async def prove(
    store: str,
    log: Path,
    *,
    runs: int,
    workers: int,
    concurrency: int = 20,
    kill_every: tuple[float, float] = (0.5, 2.0),
    timeout: float = 600.0,
    seed: int = 0,
    deadline: float = 4.0,
) -> Report:
    """Submit `runs` runs, drive them with `workers` worker processes SIGKILLed at
    random, and verify the outcome; returns the report (its `problems` empty if sound)."""
    rng = random.Random(seed)
    store = as_url(store)
    env = {
        **os.environ,
        LOG_ENV: str(log),
        DEADLINE_ENV: str(deadline),
        "PYTHONPATH": _pythonpath(),
    }
    os.environ[LOG_ENV] = str(log)
    saver = await open_store(store)
    started = time.monotonic()
    try:
        for number in range(runs):
            await proof.submit(number, run_id=f"proof-{number}", checkpointer=saver)
        command = _worker_command(store, Path(__file__).parent, concurrency)
        procs = [_spawn(command, env) for _ in range(workers)]
        helper = _spawn([sys.executable, __file__, "answer", store, str(runs)], env)
        kills = 0
        next_kill = time.monotonic() + rng.uniform(*kill_every)
        try:
            while True:
                done = len(await list_runs(saver, status="done", limit=runs + 1))
                if done >= runs:
                    break
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"only {done} of {runs} runs done after {timeout} s")
                if time.monotonic() >= next_kill:
                    index = rng.randrange(len(procs))
                    victim = procs[index]
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    _log("kill", str(victim.pid))
                    kills += 1
                    procs[index] = _spawn(command, env)
                    next_kill = time.monotonic() + rng.uniform(*kill_every)
                for proc in [*procs, helper]:  # one that exited by itself is a failure
                    if proc.poll() is not None and (proc is not helper or proc.returncode):
                        raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
                await asyncio.sleep(0.1)
        finally:
            for proc in [*procs, helper]:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in [*procs, helper]:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        report = Report(runs, workers, kills, time.monotonic() - started)
        outcomes = {}
        for number in range(runs):
            state = await get_run(saver, f"proof-{number}")
            outcomes[f"proof-{number}"] = state
        verify(report, log, outcomes)
        return report
    finally:
        await saver.close()


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def _pythonpath() -> str:
    here = str(Path(__file__).parent)
    rest = os.environ.get("PYTHONPATH")
    return here if not rest else f"{here}{os.pathsep}{rest}"


def verify(report: Report, log: Path, outcomes: dict[str, Any]) -> None:
    """Check the outcomes and the external log; append what is wrong to `report.problems`."""
    lines = [line.split() for line in log.read_text().splitlines()]
    answered = {f[1] for f in lines if f[0] == "answered"}
    late = {f[1] for f in lines if f[0] == "late"}
    sent = defaultdict(int)
    for f in lines:
        if f[0] == "sent":
            sent[f[1]] += 1
    report.answered, report.late_answers = len(answered), len(late)
    problems = report.problems
    for run_id, state in outcomes.items():
        number = int(run_id.rpartition("-")[2])
        if state is None or state.status != "done":
            problems.append(f"{run_id}: {None if state is None else state.status}, not done")
            continue
        result = state.result
        expected_answer = "yes" if run_id in answered else "default"
        if number % 2 == 1 and run_id in answered:
            problems.append(f"{run_id}: an odd run was answered")
        if result["answer"] != expected_answer:
            problems.append(f"{run_id}: answer {result['answer']!r}, expected {expected_answer!r}")
        if result["answer"] == "default":
            report.defaulted += 1
        if result["msg"] != f"note-{number}" or sent[run_id] != 1:
            problems.append(f"{run_id}: message {result['msg']!r}, sent {sent[run_id]} times")
    # Steps: the committed execution (its nonce is in the outcome) is the last one.
    executions: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in lines:
        if f[0] == "begin":
            executions[(f[1], f[2])].append(f[3])
    report.steps_run = sum(len(nonces) for nonces in executions.values())
    for (run_id, site), nonces in executions.items():
        state = outcomes.get(run_id)
        if state is None or state.status != "done":
            continue
        committed = state.result["steps"]["abc".index(site)]
        if committed not in nonces:
            problems.append(f"{run_id} step {site}: its committed execution is not in the log")
        elif nonces[-1] != committed:
            after = nonces[nonces.index(committed) + 1 :]
            problems.append(f"{run_id} step {site}: ran again after its record committed: {after}")
        report.steps_rerun_before_commit += len(nonces) - 1
    # Exclusivity: no two executions of one run overlap (a killed process's ends at its kill).
    killed_at: dict[str, int] = {}
    for index, f in enumerate(lines):
        if f[0] == "kill":
            killed_at[f[1]] = index
    open_by_run: dict[str, dict[str, int]] = defaultdict(dict)
    for index, f in enumerate(lines):
        if f[0] == "begin":
            run_id, nonce = f[1], f[3]
            live = open_by_run[run_id]
            for other, began in list(live.items()):
                pid = other.partition(":")[0]
                if killed_at.get(pid, len(lines)) < index and killed_at[pid] > began:
                    del live[other]  # its process was killed before this began
            if live:
                problems.append(f"{run_id}: {nonce} began while {sorted(live)} was running")
            live[nonce] = index
        elif f[0] == "end":
            open_by_run[f[1]].pop(f[3], None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    answer = commands.add_parser("answer")
    answer.add_argument("store")
    answer.add_argument("runs", type=int)
    parser.add_argument("--store", default="sqlite", help="'sqlite' or a postgresql:// URL")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--dir", default=None, help="where the SQLite file and log go")
    parser.add_argument(
        "--deadline", type=float, default=15.0, help="the interrupts' timeout, seconds"
    )
    args = parser.parse_args()
    if args.command == "answer":
        asyncio.run(answerer(args.store, args.runs))
        return
    import tempfile

    folder = Path(args.dir or tempfile.mkdtemp(prefix="tiny-tasks-proof-"))
    store = str(folder / "proof.db") if args.store == "sqlite" else args.store
    report = asyncio.run(
        prove(
            store,
            folder / "steps.log",
            runs=args.runs,
            workers=args.workers,
            concurrency=args.concurrency,
            timeout=3600,
            deadline=args.deadline,
        )
    )
    print("\n".join(report.lines()))
    raise SystemExit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
