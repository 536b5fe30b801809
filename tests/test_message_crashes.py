"""Messages across crashes: SIGKILL a receiving process anywhere, and no message is lost
or received twice (issue 10, point 6).

`recv_worker.py` re-attaches a run that takes COUNT messages with `ctx.recv` from one
SQLite file. The test sends the messages in batches from this process between attempts,
kills attempts at random moments and right after a `recv` returned, and checks that the
run's result is every message exactly once, in the order sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tiny_tasks import send
from tiny_tasks.savers import SqliteSaver

WORKER = Path(__file__).with_name("recv_worker.py")
SOURCE = Path(__file__).parents[1] / "src"
COUNT = 100
SEED = int(os.environ.get("TINY_TASKS_CRASH_SEED", "6_000_006"))
WORKER_TIMEOUT = 60.0


def _start(db: Path, log: Path, number: int, stop_at: str | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-W", "error", str(WORKER), str(db), "inbox", str(COUNT), str(log)]
    command += [f"--attempt={number}", f"--seed={SEED}"]
    if stop_at is not None:
        command.append(f"--stop-at={stop_at}")
    with open(f"{log}.stderr", "ab") as stderr:
        return subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": str(SOURCE)},
            stdin=subprocess.PIPE if stop_at else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )


def _finish(worker: subprocess.Popen[bytes], log: Path) -> None:
    try:
        code = worker.wait(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(worker)
        raise AssertionError(f"worker still running after {WORKER_TIMEOUT}s") from None
    _kill(worker)  # reaped already: closes its pipes
    stderr = Path(f"{log}.stderr").read_text()
    assert code == 0, f"seed {SEED}: worker exited with {code}\n{stderr}"


def _kill(worker: subprocess.Popen[bytes]) -> None:
    worker.kill()
    worker.wait()
    for pipe in (worker.stdin, worker.stdout):
        if pipe is not None:
            pipe.close()


def _send(db: Path, values: list[int]) -> None:
    async def run() -> None:
        async with SqliteSaver(db) as saver:
            for value in values:
                await send(saver, "inbox", "numbers", value)

    asyncio.run(run())


def _ends(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("end ")]


@pytest.mark.timeout(300)
def test_sigkilled_receivers_never_lose_or_duplicate_a_message(tmp_path: Path) -> None:
    db, log = tmp_path / "inbox.db", tmp_path / "log"
    chooser = random.Random(SEED)
    number = 0
    worker = _start(db, log, number)  # creates the run; it sleeps with nothing to take
    _finish(worker, log)
    assert _ends(log) == ["end sleeping null"], f"seed {SEED}"
    sent = kills = exact_kills = 0
    while not _ends(log)[-1].startswith("end done"):
        number += 1
        assert number < 400, f"seed {SEED}: no end after {number} attempts"
        if sent < COUNT:
            batch = list(range(sent, min(COUNT, sent + chooser.randint(1, 6))))
            _send(db, batch)
            sent += len(batch)
        plan = chooser.random()
        if plan < 0.25 and sent > 0:  # right after a recv returned a message just sent
            stop_at = f"got:{sent - 1}"
            worker = _start(db, log, number, stop_at)
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line == b"ready\n", f"seed {SEED}: {line!r}"
            line = worker.stdout.readline()
            if line == f"stopped {stop_at}\n".encode():
                _kill(worker)
                exact_kills += 1
            else:  # it had been received before: the attempt ran to its end
                _finish(worker, log)
        elif plan < 0.75:
            worker = _start(db, log, number)
            assert worker.stdout is not None
            assert worker.stdout.readline() == b"ready\n"
            time.sleep(chooser.uniform(0.0, 0.08))  # a random moment: the kill's timing
            if worker.poll() is None:
                kills += 1
            _kill(worker)
        else:
            _finish(worker := _start(db, log, number), log)
    ends = _ends(log)
    assert ends[-1] == f"end done {list(range(COUNT))}", f"seed {SEED}: {ends[-1]}"
    # A step after a recv runs again only if its process died while it ran.
    execs = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("exec")
    )
    assert sorted(execs, key=int) == [str(v) for v in range(COUNT)]
    assert sum(execs.values()) - COUNT <= kills, f"seed {SEED}: {execs}"
    assert (kills >= 8, exact_kills >= 2) == (True, True), (
        f"seed {SEED}: only {kills} + {exact_kills} kills"
    )
