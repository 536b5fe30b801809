"""The runtime under real damage (tests/runtime_proof.py): worker processes SIGKILLed at
random on one SQLite file and on one PostgreSQL database, checked from a log kept
outside the store; the checker itself catches each kind of violation; and one
real-time check that a worker fires a due timer."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from runtime_proof import Report, prove, verify

from tiny_tasks import TaskContext, Worker, get_run, task
from tiny_tasks.savers import SqliteSaver

RUNS = 40

pytestmark = pytest.mark.timeout(300)


async def test_workers_killed_at_random_on_one_sqlite_file(tmp_path: Path) -> None:
    report = await prove(
        str(tmp_path / "proof.db"),
        tmp_path / "steps.log",
        runs=RUNS,
        workers=3,
        concurrency=20,
        kill_every=(0.3, 1.0),
        timeout=180,
        seed=1,
    )
    assert report.problems == []
    assert report.kills >= 1
    assert report.answered + report.defaulted == RUNS
    assert report.answered == RUNS // 2 - report.late_answers


async def test_workers_killed_at_random_on_one_postgres_database(
    tmp_path: Path, postgres_dsn: str
) -> None:
    report = await prove(
        postgres_dsn,
        tmp_path / "steps.log",
        runs=RUNS,
        workers=3,
        concurrency=20,
        kill_every=(0.3, 1.0),
        timeout=180,
        seed=2,
    )
    assert report.problems == []
    assert report.kills >= 1
    assert report.answered + report.defaulted == RUNS


def _state(steps: list[str], answer: str = "default", msg: str = "note-1") -> Any:
    return SimpleNamespace(status="done", result={"steps": steps, "answer": answer, "msg": msg})


def _verify(log: str, outcomes: dict[str, Any], tmp_path: Path) -> list[str]:
    path = tmp_path / "steps.log"
    path.write_text(log)
    report = Report(len(outcomes), 1)
    verify(report, path, outcomes)
    return report.problems


SOUND = """\
begin proof-1 a 10:x
end proof-1 a 10:x
begin proof-1 b 10:y
kill 10
begin proof-1 b 11:y
end proof-1 b 11:y
sent proof-1
begin proof-1 c 11:z
end proof-1 c 11:z
"""


def test_the_checker_accepts_a_step_rerun_before_its_commit(tmp_path: Path) -> None:
    assert _verify(SOUND, {"proof-1": _state(["10:x", "11:y", "11:z"])}, tmp_path) == []


def test_the_checker_catches_a_step_run_again_after_its_commit(tmp_path: Path) -> None:
    log = SOUND + "begin proof-1 a 11:again\nend proof-1 a 11:again\n"
    problems = _verify(log, {"proof-1": _state(["10:x", "11:y", "11:z"])}, tmp_path)
    assert problems == ["proof-1 step a: ran again after its record committed: ['11:again']"]


def test_the_checker_catches_two_drivers_at_once(tmp_path: Path) -> None:
    log = SOUND.replace("kill 10\n", "").replace(
        "begin proof-1 b 10:y\n", "begin proof-1 b 10:y\nbegin proof-1 b 12:w\nend proof-1 b 12:w\n"
    )
    problems = _verify(log, {"proof-1": _state(["10:x", "11:y", "11:z"])}, tmp_path)
    assert problems == [
        "proof-1: 12:w began while ['10:y'] was running",
        "proof-1: 11:y began while ['10:y'] was running",
        "proof-1: 11:z began while ['10:y'] was running",  # 10:y never ended
    ]


def test_the_checker_catches_a_lost_or_doubled_message_and_a_wrong_answer(
    tmp_path: Path,
) -> None:
    log = SOUND + "sent proof-1\nanswered proof-1\n"
    problems = _verify(log, {"proof-1": _state(["10:x", "11:y", "11:z"], msg="note-2")}, tmp_path)
    assert problems == [
        "proof-1: an odd run was answered",
        "proof-1: answer 'default', expected 'yes'",
        "proof-1: message 'note-2', sent 2 times",
    ]


woke = asyncio.Event()


@task
async def nap(_: None, ctx: TaskContext) -> str:
    await ctx.sleep(timedelta(seconds=1.5))  # longer than an in-process sleep: stored
    woke.set()
    return "rested"


async def test_a_worker_fires_a_due_timer_in_real_time(tmp_path: Path) -> None:
    saver = SqliteSaver(str(tmp_path / "timer.db"))
    await saver.setup()
    try:
        await nap.submit(None, run_id="nap-1", checkpointer=saver)
        woke.clear()
        worker = Worker(saver, [nap], poll_interval=0.1)
        job = asyncio.create_task(worker.run())
        await woke.wait()  # the worker stored the sleeping run, then woke it at its time
        worker.stop()
        await job
        state = await get_run(saver, "nap-1")
        assert state is not None
        assert (state.status, state.result) == ("done", "rested")  # type: ignore[attr-defined]
        assert worker.driven == 2  # started, stored sleeping; woken, finished
    finally:
        await saver.close()
