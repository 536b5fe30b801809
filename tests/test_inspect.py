"""Run inspection (get_run, list_runs, delete_run) and the operator CLI on top of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tiny_tasks import Interrupt, MemorySaver, delete_run, get_run, interrupt, list_runs, task
from tiny_tasks.savers import SqliteSaver

SRC = Path(__file__).resolve().parent.parent / "src"


@task
async def approval(document: str):
    yield f"drafted {document}"
    verdict = interrupt({"approve": document})
    yield f"{document}: {verdict}"


async def pause(saver: Any, run_id: str, document: str) -> None:
    async for _ in approval(document, run_id=run_id, checkpointer=saver):
        pass


async def test_get_run_shows_status_input_pending_and_counts() -> None:
    saver = MemorySaver()
    await pause(saver, "r1", "memo")
    state = await get_run(saver, "r1")
    assert state is not None
    assert (state.run_id, state.task_name, state.status) == ("r1", "approval", "paused")
    assert state.input == "memo"
    assert state.pending == (Interrupt({"approve": "memo"}, "approval/interrupt#0"),)
    assert (state.delivered, state.answers, state.steps, state.children) == (1, 0, 0, 0)
    assert state.created_at <= state.updated_at
    assert await get_run(saver, "missing") is None


async def test_list_runs_filters_and_pages_newest_first() -> None:
    saver = MemorySaver()
    for number in range(5):
        await pause(saver, f"r{number}", f"doc{number}")
    async for _ in approval.resume("yes", run_id="r2", checkpointer=saver):
        pass  # r2 finishes and is removed
    listed = await list_runs(saver, status="paused")
    assert [run.run_id for run in listed] == ["r4", "r3", "r1", "r0"]
    page = await list_runs(saver, status="paused", limit=2, offset=1)
    assert [run.run_id for run in page] == ["r3", "r1"]
    assert await list_runs(saver, task_name="other") == []
    with pytest.raises(ValueError, match="must not be negative"):
        await list_runs(saver, limit=-1)


async def test_delete_run_says_whether_there_was_one() -> None:
    saver = MemorySaver()
    await pause(saver, "r1", "memo")
    assert await delete_run(saver, "r1") is True
    assert await delete_run(saver, "r1") is False
    assert saver.load("r1") is None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiny_tasks", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=60,
        check=False,
    )


async def test_cli_lists_shows_and_deletes_runs_of_a_sqlite_store(tmp_path: Path) -> None:
    store = str(tmp_path / "runs.sqlite")
    async with SqliteSaver(store) as saver:
        await pause(saver, "invoice-7", "invoice")
        await pause(saver, "memo-1", "memo")

    listed = cli("runs", store, "--status", "paused")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "ID", "TASK", "STATUS", "PENDING", "DELIVERED", "UPDATED"]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["memo-1", "approval", "paused", "1", "1"],
        ["invoice-7", "approval", "paused", "1", "1"],
    ]

    shown = cli("show", store, "invoice-7")
    assert shown.returncode == 0, shown.stderr
    assert "status     paused (version" in shown.stdout
    assert "input      'invoice'" in shown.stdout
    assert "pending    approval/interrupt#0: {'approve': 'invoice'}" in shown.stdout

    assert cli("delete", store, "invoice-7").stdout.strip() == "deleted invoice-7"
    gone = cli("show", store, "invoice-7")
    assert gone.returncode == 1
    assert "no run 'invoice-7' is stored" in gone.stderr
    assert [line.split()[0] for line in cli("runs", store).stdout.splitlines()[1:]] == ["memo-1"]


def test_cli_refuses_a_store_that_does_not_exist(tmp_path: Path) -> None:
    done = cli("runs", str(tmp_path / "nope.sqlite"))
    assert done.returncode == 2
    assert "no SQLite store at" in done.stderr
    assert not (tmp_path / "nope.sqlite").exists()
