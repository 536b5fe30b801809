"""The CLI's runtime commands: `worker` (a run to the end, a clean stop on SIGTERM),
`cancel`, `prune`, and the runtime's fields in `runs` and `show`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import SRC, cli, run

from tiny_tasks import get_run
from tiny_tasks.savers import SqliteSaver

APP = textwrap.dedent(
    """
    from datetime import timedelta

    from tiny_tasks import TaskContext, task


    @task
    async def greet(name: str, ctx: TaskContext) -> str:
        await ctx.step(str.upper, name)
        return f"hello {name}"


    @task
    async def nap(name: str, ctx: TaskContext) -> str:
        await ctx.sleep(timedelta(days=1))
        return name
    """
)


def store_with(tmp_path: Path, *submissions: tuple[str, str, str]) -> str:
    """A SQLite store with runs submitted: (task name, input, run id)."""
    (tmp_path / "app.py").write_text(APP)
    sys.path.insert(0, str(tmp_path))
    try:
        import app  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("app", None)
    path = tmp_path / "store.db"

    async def submit() -> None:
        async with SqliteSaver(path) as saver:
            for name, value, run_id in submissions:
                await getattr(app, name).submit(value, run_id=run_id, checkpointer=saver)

    asyncio.run(submit())
    return str(path)


def test_worker_once_drives_what_is_due_and_keeps_the_outcomes(tmp_path: Path) -> None:
    store = store_with(tmp_path, ("greet", "ada", "g-1"), ("nap", "bob", "n-1"))
    done = cli("worker", store, "--app", str(tmp_path / "app.py"), "--once")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "drove 2 run attempts\n"
    assert "claimed run 'g-1' (task 'greet', was queued)" in done.stderr
    listed = cli("runs", store)
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["g-1"][2] == "done"
    assert rows["n-1"][2] == "sleeping"
    assert rows["n-1"][-3:-1] != ["-", "-"]  # its wake time is shown
    shown = cli("show", store, "g-1", "--app", str(tmp_path / "app.py"))
    assert "result     'hello ada'" in shown.stdout
    shown = cli("show", store, "n-1", "--app", str(tmp_path / "app.py"))
    assert "status     sleeping" in shown.stdout
    assert "wakes      " in shown.stdout


def test_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    store = store_with(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiny_tasks",
            "worker",
            store,
            "--app",
            str(tmp_path / "app.py"),
            "--poll",
            "0.1s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert " started (tasks greet, nap, concurrency 50)" in first
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "got SIGTERM: stopping" in err
    assert out.startswith("worker worker-")
    assert out.endswith(" stopped after 0 run attempts\n")


def test_cancel_a_queued_run_and_a_missing_one(tmp_path: Path) -> None:
    store = store_with(tmp_path, ("greet", "ada", "g-1"))
    cancelled = cli("cancel", store, "g-1")
    assert (cancelled.returncode, cancelled.stdout) == (0, "cancelled g-1\n")
    listed = cli("runs", store, "--status", "cancelled")
    assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
        ["g-1", "greet", "cancelled"]
    ]
    missing = cli("cancel", store, "nope")
    assert (missing.returncode, missing.stderr) == (1, "tiny-tasks: no run 'nope' is stored\n")


def test_prune_deletes_finished_runs_older_than_the_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store_with(tmp_path, ("greet", "ada", "g-1"), ("nap", "bob", "n-1"))
    assert cli("worker", store, "--app", str(tmp_path / "app.py"), "--once").returncode == 0
    assert run(capsys, "prune", store, "--older-than", "7d") == (
        0,
        "pruned 0 finished runs older than 1w\n",
        "",
    )
    assert run(capsys, "prune", store, "--older-than", "0s") == (
        0,
        "pruned 1 finished runs older than 0s\n",
        "",
    )

    async def left() -> list[str]:
        async with SqliteSaver(store) as saver:
            return [r.run_id for r in await saver.list_runs() if await get_run(saver, r.run_id)]

    assert asyncio.run(left()) == ["n-1"]  # the sleeping run is not finished


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "S", "--older-than", "soon"], "expected a duration such as 7d"),
        (["worker", "S", "--app", "x", "--concurrency", "0"], "must be at least 1, not 0"),
        (["prune", "S"], "the following arguments are required: --older-than"),
    ],
)
def test_runtime_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status, out, err = run(capsys, *args)
    assert (status, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1
