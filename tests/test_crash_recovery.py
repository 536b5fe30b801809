"""Crash recovery with real processes: SIGKILL a worker anywhere, start it again, lose nothing.

`crash_worker.py` runs a 20-step workflow that streams 10 partials per step and logs,
outside the run, every step execution and every partial its consumer receives. Each
attempt calls the task with the same run id, so it continues the run from the journal.
The tests kill attempts with SIGKILL, at random moments (during interpreter start-up,
opening the saver, inside a step, while streaming, between steps) and at exact points
(the worker stops and says so on stdout), and then check the log:

1. completed steps never run again: only the step in flight when a process died (the
   last `exec` line of its attempt) may run a second time, and every partial of a step
   carries the result of that step's last execution;
2. the consumer never gets a partial twice, gets them in order, and misses at most one
   per kill (the engine counts a partial as delivered before handing it over);
3. the run ends, and its checkpoint is gone afterwards.

Set TINY_TASKS_CRASH_SEED to replay a random schedule (the seed is in every failure).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for the helper below, whoever imports us

from crash_worker import PARTIALS_PER_STEP, STEPS
from postgres_server import PostgresServer

from tiny_tasks import RunState, get_run
from tiny_tasks.savers import PostgresSaver, SqliteSaver

WORKER = Path(__file__).with_name("crash_worker.py")
SOURCE = Path(__file__).parents[1] / "src"
TOTAL_PARTIALS = STEPS * PARTIALS_PER_STEP

KILLS_PER_BACKEND = 80  # kills that cut a run short (before it completed)
KILLS_PER_RUN = (3, 9)  # planned kills per run, drawn uniformly; the run then finishes
EARLY_KILLS = 0.15  # share of kills aimed at interpreter start-up (before `attempt`)
OPENING_KILLS = 0.1  # share aimed at opening the saver and loading the run
SEEDS = {"sqlite": 1_500_001, "postgres": 2_500_002}
CALIBRATION_RUNS = 3
WORKER_TIMEOUT = 60.0  # seconds for an attempt that is left to finish


# -- stores --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """Where the worker keeps its checkpoints: a SQLite file or a PostgreSQL database."""

    backend: str
    target: str

    def open(self) -> Any:
        if self.backend == "sqlite":
            return SqliteSaver(self.target)
        return PostgresSaver(self.target, max_size=1)

    def beside(self, file_name: str) -> Store:
        """Another SQLite file in the same folder (the same PostgreSQL database)."""
        if self.backend != "sqlite":
            return self
        return Store(self.backend, str(Path(self.target).with_name(file_name)))

    def get_run(self, run_id: str) -> RunState | None:
        """The stored state of `run_id` as an operator sees it (None: no checkpoint)."""

        async def read() -> RunState | None:
            async with self.open() as saver:
                return await get_run(saver, run_id)

        return asyncio.run(read())


@pytest.fixture(scope="module")
def crash_postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for this module; it fails (never skips) if it can't start."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store per test: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield Store("sqlite", str(tmp_path / "checkpoints.db"))
        return
    server: PostgresServer = request.getfixturevalue("crash_postgres_server")
    name = f"crash_{uuid.uuid4().hex[:16]}"
    dsn = server.create_database(name)

    async def setup() -> None:
        async with PostgresSaver(dsn, max_size=1) as saver:
            await saver.setup()

    asyncio.run(setup())
    yield Store("postgres", dsn)
    server.drop_database(name)


# -- workers -------------------------------------------------------------------------------


def start_worker(
    store: Store,
    run_id: str,
    log: Path,
    attempt: int,
    seed: int,
    stop_at: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start one attempt (use it as a context manager); stderr goes to `<log>.stderr`."""
    command = [
        sys.executable,
        "-W",
        "error",
        str(WORKER),
        store.backend,
        store.target,
        run_id,
        str(log),
        f"--attempt={attempt}",
        f"--seed={seed}",
    ]
    if stop_at is not None:
        command.append(f"--stop-at={stop_at}")
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    with open(f"{log}.stderr", "ab") as stderr:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE if stop_at else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


def stderr_of(log: Path) -> str:
    path = Path(f"{log}.stderr")
    return path.read_text() if path.exists() else ""


def finish(worker: subprocess.Popen[bytes], log: Path, context: str) -> None:
    """Let an attempt run to its end; it must succeed."""
    try:
        code = worker.wait(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill(worker)
        raise AssertionError(f"{context}: worker still running after {WORKER_TIMEOUT}s") from None
    assert code == 0, f"{context}: worker exited with {code}\n{stderr_of(log)}"


def kill(worker: subprocess.Popen[bytes]) -> int:
    """SIGKILL `worker` (unless it has already ended); return its exit status."""
    worker.kill()
    return worker.wait()


def read_line(worker: subprocess.Popen[bytes]) -> bytes:
    """The worker's next stdout line (b"" if it exited): reading it is the synchronisation."""
    assert worker.stdout is not None
    return worker.stdout.readline()


# -- the log -------------------------------------------------------------------------------


@dataclass
class Attempt:
    """What one worker process wrote after it had started up."""

    number: int
    started: float
    lines: list[str] = field(default_factory=list)
    execs: list[tuple[int, str]] = field(default_factory=list)  # (step, token)
    first_exec: float | None = None
    gots: list[tuple[int, str]] = field(default_factory=list)  # (partial index, token)
    done: float | None = None


def read_log(log: Path) -> list[Attempt]:
    attempts: list[Attempt] = []
    text = log.read_text() if log.exists() else ""
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "attempt":
            number, started = rest.split()
            attempts.append(Attempt(int(number), float(started)))
            continue
        assert attempts, f"{line!r} before any attempt line"
        current = attempts[-1]
        assert current.done is None, f"{line!r} after done"
        current.lines.append(line)
        if kind == "exec":
            index, number, token, when = rest.split()
            assert int(number) == current.number, f"{line!r} logged in attempt {current.number}"
            current.execs.append((int(index), token))
            if current.first_exec is None:
                current.first_exec = float(when)
        elif kind == "got":
            name, token = rest.split(":")
            index, part = (int(x) for x in name.split("."))
            assert 0 <= part < PARTIALS_PER_STEP, line
            current.gots.append((index * PARTIALS_PER_STEP + part, token))
        elif kind == "done":
            current.done = float(rest)
        else:
            raise AssertionError(f"unknown log line {line!r}")
    return attempts


@dataclass
class Outcome:
    """What a checked run shows: steps that ran again, partials the consumer never got."""

    reran: list[int]
    lost: list[int]


def check_run(attempts: list[Attempt], kills: int, completed_silently: bool, where: str) -> Outcome:
    """Check the three promises on one run's log (see the module docstring)."""
    assert attempts, f"{where}: no attempt got past start-up"
    if completed_silently:
        assert attempts[-1].done is None, where
    else:
        assert attempts[-1].done is not None, f"{where}: the last attempt did not finish"
        assert all(a.done is None for a in attempts[:-1]), f"{where}: a killed attempt was done"

    # 1. Steps: 0, 1, 2, ... in order; a step appears twice in a row only across attempts,
    # i.e. only the last step an attempt executed can be executed again by the next one.
    reran: list[int] = []
    final_token: dict[int, str] = {}
    previous: tuple[int, int] | None = None  # (attempt position, step)
    for position, attempt in enumerate(attempts):
        for index, token in attempt.execs:
            if previous is None:
                assert index == 0, f"{where}: the first step executed was {index}"
            elif previous[0] == position:
                assert index == previous[1] + 1, (
                    f"{where}: attempt {attempt.number} executed step {index} after step "
                    f"{previous[1]} (a step ran twice, or one was skipped)"
                )
            else:
                assert index in (previous[1], previous[1] + 1), (
                    f"{where}: attempt {attempt.number} started executing at step {index}; the "
                    f"last step executed before was {previous[1]}, so only {previous[1]} (if "
                    f"its record was not committed) or {previous[1] + 1} may come next"
                )
                if index == previous[1]:
                    reran.append(index)
            final_token[index] = token
            previous = (position, index)
    assert sorted(final_token) == list(range(STEPS)), f"{where}: steps never executed"

    # 2. Partials: strictly increasing (no duplicates, original order), and a gap only
    # where processes died: at most one partial lost per attempt boundary crossed.
    lost: list[int] = []
    last_index, last_position = -1, 0
    for position, attempt in enumerate(attempts):
        for index, token in attempt.gots:
            gap = index - last_index - 1
            assert gap >= 0, (
                f"{where}: attempt {attempt.number} received partial {index} after "
                f"partial {last_index} (a duplicate or out of order)"
            )
            assert gap <= position - last_position, (
                f"{where}: attempt {attempt.number} received partial {index} after partial "
                f"{last_index}; {gap} missing but only {position - last_position} kills between"
            )
            step_index = index // PARTIALS_PER_STEP
            assert token == final_token[step_index], (
                f"{where}: partial {index} carries step {step_index}'s result {token!r}, but "
                f"the step's last execution returned {final_token[step_index]!r}: a result "
                "was used before it was recorded"
            )
            lost.extend(range(last_index + 1, index))
            last_index, last_position = index, position
    end_position = len(attempts) if completed_silently else len(attempts) - 1
    gap = TOTAL_PARTIALS - last_index - 1
    assert gap <= end_position - last_position, (
        f"{where}: the run finished after partial {last_index}; {gap} partials missing"
    )
    lost.extend(range(last_index + 1, TOTAL_PARTIALS))
    assert len(lost) <= kills, f"{where}: {len(lost)} partials lost in {kills} kills"
    return Outcome(reran, lost)


def kill_point(attempts: list[Attempt], number: int) -> str:
    """Where attempt `number` was when it was killed, from its last log line."""
    if not attempts or attempts[-1].number != number:
        return "start-up"  # interpreter start and imports: nothing logged yet
    attempt = attempts[-1]
    if attempt.done is not None:
        return "after done"  # the run is complete; the process was exiting
    if not attempt.lines:
        return "opening"  # opening the saver, loading the journal, replaying
    last = attempt.lines[-1]
    if last.startswith("exec"):
        return "in a step"  # the step runs, or its record is being committed
    partial = int(last.split(":")[0].split(".")[1])
    return "between steps" if partial == PARTIALS_PER_STEP - 1 else "mid-stream"


MID_RUN = ("opening", "in a step", "mid-stream", "between steps")

# -- random kills --------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """An uncrashed attempt's phases, in seconds."""

    startup: float  # from Popen to `ready`: interpreter, imports
    opening: float  # from there to the first step: opening the saver and the run
    body: float  # from there to `done`: steps and partials

    def kill_time(self, rng: random.Random, progress: float) -> tuple[bool, float]:
        """When to kill the next attempt of a run that has streamed `progress` (0..1):
        `(after_ready, delay)`, the delay counted from the start or from `ready`."""
        draw = rng.random()
        if draw < EARLY_KILLS:
            return False, rng.uniform(0.0, self.startup)
        if draw < EARLY_KILLS + OPENING_KILLS:
            return True, rng.uniform(0.0, self.opening)
        # Somewhere in the next third of the work (or what is left of it).
        remaining = (1.0 - progress) * self.body
        return True, self.opening + rng.uniform(0.0, min(remaining, self.body / 3))


def calibrate(store: Store, tmp_path: Path, seed: int) -> Timing:
    """Measure uncrashed runs (checking each: every step once, every partial once); the
    median of each phase, so one slow run does not skew where the kills land."""
    measured: list[Timing] = []
    for number in range(CALIBRATION_RUNS):
        run_id = f"calibration-{number}"
        log = tmp_path / f"{run_id}.log"
        launched = time.monotonic()
        with start_worker(store, run_id, log, 1, seed) as worker:
            assert read_line(worker) == b"ready\n", stderr_of(log)
            startup = time.monotonic() - launched
            finish(worker, log, run_id)
        attempts = read_log(log)
        outcome = check_run(attempts, 0, False, f"{run_id} (seed {seed})")
        assert outcome == Outcome([], [])
        (attempt,) = attempts
        assert attempt.first_exec is not None
        assert attempt.done is not None
        opening = attempt.first_exec - attempt.started
        measured.append(Timing(startup, opening, attempt.done - attempt.first_exec))
    return Timing(
        statistics.median(t.startup for t in measured),
        statistics.median(t.opening for t in measured),
        statistics.median(t.body for t in measured),
    )


@dataclass
class Tally:
    runs: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    reran: int = 0
    lost: int = 0
    completed_silently: int = 0
    finished_before_kill: int = 0

    @property
    def total(self) -> int:
        return sum(self.kills.values())

    @property
    def before_completion(self) -> int:
        """Kills that cut a run short (not those of a process exiting after `done`)."""
        return self.total - self.kills["after done"]


def crash_one_run(
    store: Store,
    run_id: str,
    log: Path,
    rng: random.Random,
    seed: int,
    timing: Timing,
    tally: Tally,
) -> None:
    """Start, kill and restart the worker on one run until it finishes; check its log."""
    where = f"run {run_id!r} (seed {seed})"
    planned = rng.randint(*KILLS_PER_RUN)
    kills = 0
    completed_silently = False
    progress = 0.0
    attempt = 0
    while True:
        attempt += 1
        with start_worker(store, run_id, log, attempt, seed) as worker:
            if kills == planned:
                finish(worker, log, f"{where}, attempt {attempt}")
                break
            after_ready, delay = timing.kill_time(rng, progress)
            try:
                if after_ready:
                    read_line(worker)  # b"ready\n", or b"" if it died first
                code = worker.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                code = kill(worker)
            finally:
                kill(worker)  # never leave a worker behind, even on KeyboardInterrupt
        if code != -signal.SIGKILL:
            assert code == 0, f"{where}: attempt {attempt} exited with {code}\n{stderr_of(log)}"
            tally.finished_before_kill += 1
            break
        kills += 1
        attempts = read_log(log)
        streamed = [index for a in attempts for index, _ in a.gots]
        progress = (streamed[-1] + 1) / TOTAL_PARTIALS if streamed else 0.0
        point = kill_point(attempts, attempt)
        tally.kills[point] += 1
        if point == "after done":
            break
        # Killed after the run had completed (checkpoint deleted) but before the worker
        # logged `done`: the run is over; calling the task again would start a new one.
        last_step_ran = any(i == STEPS - 1 for a in attempts for i, _ in a.execs)
        if last_step_ran and store.get_run(run_id) is None:
            completed_silently = True
            tally.completed_silently += 1
            break
    outcome = check_run(read_log(log), kills, completed_silently, where)
    assert store.get_run(run_id) is None, f"{where}: the checkpoint outlived the finished run"
    tally.runs += 1
    tally.reran += len(outcome.reran)
    tally.lost += len(outcome.lost)


@pytest.mark.timeout(300)
def test_random_kills_lose_nothing(store: Store, tmp_path: Path) -> None:
    seed = int(os.environ.get("TINY_TASKS_CRASH_SEED", SEEDS[store.backend]))
    rng = random.Random(seed)
    started = time.monotonic()
    # Calibrate on a file of its own, so that kills can land in the SQLite schema's creation.
    timing = calibrate(store.beside("calibration.db"), tmp_path, seed)
    tally = Tally()
    while tally.before_completion < KILLS_PER_BACKEND:
        run_id = f"run-{tally.runs}"
        crash_one_run(store, run_id, tmp_path / f"{run_id}.log", rng, seed, timing, tally)

    summary = (
        f"{store.backend} (seed {seed}): {tally.total} kills in {tally.runs} runs "
        f"{dict(tally.kills)}; {tally.reran} in-flight steps ran again; {tally.lost} partials "
        f"lost; {tally.completed_silently} runs completed just before a kill; "
        f"{tally.finished_before_kill} attempts finished before their kill; calibration "
        f"start-up {timing.startup:.3f}s, opening {timing.opening:.3f}s, body "
        f"{timing.body:.3f}s; "
        f"{time.monotonic() - started:.1f}s"
    )
    print(summary)
    mid_run = sum(tally.kills[point] for point in MID_RUN)
    assert mid_run >= tally.total // 2, f"too few kills landed mid-run: {summary}"
    for point in ("start-up", *MID_RUN):
        assert tally.kills[point] >= 1, f"no kill landed at {point}: {summary}"


# -- kills at exact points -----------------------------------------------------------------

# stop point -> (steps recorded, partials delivered, steps that must run twice)
STOP_POINTS = {
    "step-running:7": (7, 70, [7]),  # inside step 7: not recorded, so it runs again
    "step-returned:7": (8, 70, []),  # the body has step 7's result: it is recorded
    "partial:7.4": (8, 75, []),  # the consumer has partial 7.4: it is counted
    "partial:7.9": (8, 80, []),  # between steps 7 and 8
}


@pytest.mark.parametrize("stop_at", list(STOP_POINTS))
def test_kill_at_an_exact_point(store: Store, tmp_path: Path, stop_at: str) -> None:
    steps, delivered, reran = STOP_POINTS[stop_at]
    log = tmp_path / "run.log"
    worker = start_worker(store, "exact", log, 1, 0, stop_at=stop_at)
    with worker:
        try:
            assert read_line(worker) == b"ready\n", stderr_of(log)
            # The worker is now blocked at the point, until killed.
            line = read_line(worker)
            assert line == f"stopped {stop_at}\n".encode(), f"{line!r}\n{stderr_of(log)}"
        finally:
            code = kill(worker)
    assert code == -signal.SIGKILL

    state = store.get_run("exact")
    assert state is not None
    assert (state.status, state.steps, state.delivered) == ("running", steps, delivered)

    with start_worker(store, "exact", log, 2, 0) as worker:
        finish(worker, log, f"after a kill at {stop_at}")
    attempts = read_log(log)
    outcome = check_run(attempts, 1, False, f"killed at {stop_at}")
    assert outcome == Outcome(reran, [])  # exact points lose no partial
    first, second = attempts
    assert first.execs[-1][0] == 7
    assert second.execs[0][0] == (7 if reran else 8)
    assert [index for index, _ in first.gots + second.gots] == list(range(TOTAL_PARTIALS))
    assert store.get_run("exact") is None


# -- a re-run that answers otherwise, killed at every position -----------------------------

STREAM_LOG_WORKER = Path(__file__).with_name("stream_log_worker.py")


def start_stream_log_worker(
    store: Store, run_id: str, log: Path, attempt: int, stop_at: int | None = None
) -> subprocess.Popen[bytes]:
    """One attempt of `stream_log_worker.py` (see its docstring)."""
    command = [
        sys.executable,
        "-W",
        "error",
        str(STREAM_LOG_WORKER),
        store.backend,
        store.target,
        run_id,
        str(log),
        f"--attempt={attempt}",
    ]
    if stop_at is not None:
        command.append(f"--stop-at={stop_at}")
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    with open(f"{log}.stderr", "ab") as stderr:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE if stop_at is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


@dataclass
class StreamView:
    """What the consumer of a stream_log_worker run showed, attempt by attempt."""

    view: list[str] = field(default_factory=list)
    answers: list[list[str]] = field(default_factory=list)
    rewinds: list[int] = field(default_factory=list)
    first_positions: list[int] = field(default_factory=list)  # per attempt that got any
    times: Counter[int] = field(default_factory=Counter)


def replay_stream_log(log: Path) -> StreamView:
    """Apply the log as a chat UI would: append each partial, truncate at a rewind."""
    seen = StreamView()
    first_in_attempt = True
    for line in log.read_text().splitlines():
        kind, *rest = line.split()
        if kind == "attempt":
            first_in_attempt = True
        elif kind == "answer":
            seen.answers.append(rest)
        elif kind == "got":
            position, token, rewind = int(rest[0]), rest[1], rest[2]
            if first_in_attempt:
                seen.first_positions.append(position)
                first_in_attempt = False
            if position < len(seen.view):
                # Only a rewind moves back, and only to the position it names.
                assert rewind == str(position), f"{line!r} goes back without a rewind"
                seen.rewinds.append(position)
                del seen.view[position:]
            assert position == len(seen.view), f"{line!r}: a gap after {seen.view}"
            seen.view.append(token)
            seen.times[position] += 1
        elif kind == "end" and rest != ["-"]:
            rewind = int(rest[0])
            if rewind not in seen.rewinds:  # a shorter re-run ended before reaching it
                seen.rewinds.append(rewind)
                del seen.view[rewind:]
        else:
            assert kind == "end", f"unknown log line {line!r}"
    return seen


@pytest.mark.timeout(300)
def test_a_re_run_that_answers_otherwise_is_rewound_when_killed_anywhere(
    store: Store, tmp_path: Path
) -> None:
    from stream_log_worker import answer_of

    first_stream = ["<start>", *answer_of(1), "<end>"]
    outcomes: Counter[str] = Counter()
    for stop_at in range(len(first_stream)):  # every position of the first attempt's stream
        run_id = f"kill-{stop_at}"
        log = tmp_path / f"{run_id}.log"
        with start_stream_log_worker(store, run_id, log, 1, stop_at) as worker:
            try:
                assert read_line(worker) == b"ready\n", stderr_of(log)
                line = read_line(worker)
                assert line == f"stopped {stop_at}\n".encode(), f"{line!r}\n{stderr_of(log)}"
            finally:
                code = kill(worker)
        assert code == -signal.SIGKILL
        state = store.get_run(run_id)
        assert state is not None
        assert (state.status, state.delivered) == ("running", stop_at + 1)
        with start_stream_log_worker(store, run_id, log, 2) as worker:
            finish(worker, log, f"after a kill at position {stop_at}")

        seen = replay_stream_log(log)
        shown = first_stream[: stop_at + 1]
        if stop_at == 0:  # before the child started: it runs once, in attempt 2
            assert seen.answers == [answer_of(2)]
        elif stop_at < len(first_stream) - 1:  # inside the child: it runs again
            assert seen.answers == [answer_of(1), answer_of(2)]
        else:  # after it finished: it is replayed from the journal
            assert seen.answers == [answer_of(1)]
        final = ["<start>", *seen.answers[-1], "<end>"]
        assert seen.view == final, f"killed at {stop_at}: spliced {seen.view}, not {final}"
        differs = [p for p, token in enumerate(shown) if p >= len(final) or final[p] != token]
        assert seen.rewinds == differs[:1], f"killed at {stop_at}: rewinds {seen.rewinds}"
        resumed_at = differs[0] if differs else stop_at + 1
        if resumed_at < len(final):
            assert seen.first_positions == [0, resumed_at]
        # Nothing before the rewind (or before the kill) reached the consumer twice.
        assert [seen.times[p] for p in range(resumed_at)] == [1] * resumed_at
        assert store.get_run(run_id) is None
        outcomes["rewound" if differs else "continued"] += 1
    # Attempt 1 answers "will report will now", attempt 2 "will will to": a kill after
    # "report" or later in the child rewinds to position 2; one after the first "will"
    # continues (what was shown is a prefix of the new answer), as do kills before the
    # child started and after it finished (it is recorded then, and replayed).
    assert answer_of(1) == ["will", "report", "will", "now"]
    assert answer_of(2) == ["will", "will", "to"]
    assert outcomes == {"rewound": 3, "continued": 3}
