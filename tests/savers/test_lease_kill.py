"""A direct call's process is SIGKILLed while it holds its run's lease: a second caller
is turned away while the lease is live, and takes the run over once it has expired.

The dead owner's lease was taken on the real clock; the taker reads a `ManualClock` set
past its expiry, so the test waits for nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import lease_kill_worker
import pytest
from lease_kill_worker import lease_victim, open_saver

from tiny_tasks import RunBusyError, get_run, use_clock
from tiny_tasks.testing import ManualClock

WORKER = Path(lease_kill_worker.__file__)
SOURCE = Path(__file__).parents[2] / "src"
TIMEOUT = 60.0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_killed_owners_run_is_taken_over_once_its_lease_expires(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "sqlite":
        target = str(tmp_path / "runs.db")
    else:
        target = request.getfixturevalue("postgres_dsn")
    async with open_saver(backend, target) as saver:
        await saver.setup()
    log = tmp_path / "steps.log"
    monkeypatch.setenv("TINY_TASKS_KILL_LOG", str(log))

    victim = await asyncio.to_thread(kill_in_second_step, backend, target, log)

    async with open_saver(backend, target) as saver:
        held = await get_run(saver, "r1")
        assert held is not None
        assert held.lease_owner is not None
        assert held.lease_owner.startswith("call-")
        assert held.lease_expires is not None
        assert held.lease_expires > time.time() + 5  # taken for 30 s, a moment ago
        assert (held.status, held.steps) == ("running", 1)

        with pytest.raises(RunBusyError) as busy:  # the owner is dead, its lease is not
            await lease_victim.invoke("order-7", run_id="r1", checkpointer=saver)
        assert busy.value.owner == held.lease_owner

        with use_clock(ManualClock(start=held.lease_expires + 1.0)):
            result = await lease_victim.invoke(
                "order-7", run_id="r1", checkpointer=saver, keep=True
            )
        assert result == ["receipt for order-7", "shipped order-7"]
        done = await get_run(saver, "r1")
        assert done is not None
        assert (done.status, done.result, done.steps, done.lease_owner) == (
            "done",
            result,
            2,
            None,
        )
    me = str(os.getpid())
    # The recorded step ran once; the one the kill cut short ran again, in the taker.
    assert log.read_text().splitlines() == [f"charge {victim}", f"ship {victim}", f"ship {me}"]


def kill_in_second_step(backend: str, target: str, log: Path) -> str:
    """Run the worker until it is inside its second step, SIGKILL it; return its pid."""
    with subprocess.Popen(
        [sys.executable, "-W", "error", str(WORKER), backend, target, "r1", str(log)],
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as worker:
        try:
            assert worker.stdout is not None
            line = worker.stdout.readline()  # reading it is the synchronisation
            assert line == b"stopped\n", worker.stderr.read() if worker.stderr else line
            worker.kill()
            assert worker.wait(timeout=TIMEOUT) == -9
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return str(worker.pid)
