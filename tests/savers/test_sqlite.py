"""SqliteSaver beyond the shared contract: durability settings, schema versions, the
writer thread (never blocking the loop, group commit, cancellation), lifecycle."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tiny_tasks.errors import TinyTasksError
from tiny_tasks.savers import SqliteSaver, _sqlite_schema
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite


def _write(run_id: str, *entries: bytes, state: bytes = b"state") -> CheckpointWrite:
    return CheckpointWrite(run_id, "task", "running", 0, (), state, entries)


def _threads_of(folder: Path) -> list[threading.Thread]:
    """The writer threads of savers on files in `folder`."""
    return [t for t in threading.enumerate() if t.name == f"tiny-tasks-sqlite {folder}/runs.db"]


def _pragma(saver: SqliteSaver, name: str) -> Any:
    """A pragma's value on the saver's own connection (read on its thread)."""
    return saver._call(
        lambda connection: connection.execute(f"PRAGMA {name}").fetchone()[0], (), writes=False
    )


async def test_defaults_are_wal_and_synchronous_normal_with_a_busy_timeout(
    tmp_path: Path,
) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        assert (saver.synchronous, saver.busy_timeout, saver.serde) == ("NORMAL", 5.0, None)
        assert await _pragma(saver, "journal_mode") == "wal"
        assert await _pragma(saver, "synchronous") == 1  # NORMAL
        assert await _pragma(saver, "busy_timeout") == 5000
        assert await _pragma(saver, "page_size") == 2048


async def test_synchronous_full_and_a_custom_serde_are_kept(tmp_path: Path) -> None:
    codec = object()
    saver = SqliteSaver(tmp_path / "runs.db", synchronous="full", busy_timeout=0.25, serde=codec)
    async with saver:
        assert saver.serde is codec
        assert await _pragma(saver, "synchronous") == 2  # FULL
        assert await _pragma(saver, "busy_timeout") == 250
    assert repr(saver) == f"SqliteSaver({str(tmp_path / 'runs.db')!r}, synchronous='FULL', closed)"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"synchronous": "SOMETIMES"}, "synchronous must be one of OFF, NORMAL, FULL, EXTRA"),
        ({"busy_timeout": -1}, "busy_timeout must be >= 0 seconds, not -1"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SqliteSaver(tmp_path / "runs.db", **arguments)


@pytest.mark.parametrize("path", [":memory:", "", "file::memory:?cache=shared"])
def test_in_memory_databases_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="Use MemorySaver"):
        SqliteSaver(path)


async def test_a_new_database_is_at_schema_version_3(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        await saver.setup()
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection:
        versions = connection.execute("SELECT version FROM tiny_tasks_schema").fetchall()
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
        due_index = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'tiny_tasks_runs_due'"
        ).fetchone()
    assert versions == [(1,), (2,), (3,)]
    assert tables == [
        ("sqlite_sequence",),
        ("tiny_tasks_entries",),
        ("tiny_tasks_messages",),
        ("tiny_tasks_partials",),
        ("tiny_tasks_runs",),
        ("tiny_tasks_schema",),
        ("tiny_tasks_states",),
    ]
    assert due_index == (
        "CREATE INDEX tiny_tasks_runs_due ON tiny_tasks_runs (due_at, run_id)"
        " WHERE due_at IS NOT NULL",
    )


async def test_opening_an_older_database_applies_the_new_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        await saver.save(_write("kept", b"entry"), None)
    version_4 = ("ALTER TABLE tiny_tasks_runs ADD COLUMN owner TEXT",)
    monkeypatch.setattr(_sqlite_schema, "MIGRATIONS", (*_sqlite_schema.MIGRATIONS, version_4))
    monkeypatch.setattr(_sqlite_schema, "LATEST_VERSION", 4)

    async with SqliteSaver(tmp_path / "runs.db") as saver:
        stored = await saver.load("kept")

    assert stored is not None
    assert stored.entries == (b"entry",)
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection:
        versions = connection.execute("SELECT version FROM tiny_tasks_schema").fetchall()
        owner = connection.execute("SELECT owner FROM tiny_tasks_runs").fetchall()
    assert versions == [(1,), (2,), (3,), (4,)]
    assert owner == [(None,)]


def _old_database(path: Path, version: int) -> None:
    """A database as tiny-tasks at schema `version` left it: a running run (its process
    died), a paused one and a finished one's leftovers never exist in these versions."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute(
            "CREATE TABLE tiny_tasks_schema (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        for number, statements in enumerate(_sqlite_schema.MIGRATIONS[:version], 1):
            for statement in statements:
                connection.execute(statement)
            connection.execute("INSERT INTO tiny_tasks_schema VALUES (?, 0.0)", (number,))
        for run_id, status, pending in [
            ("crashed", "running", "[]"),
            ("paused", "paused", '["task/interrupt#0"]'),
        ]:
            connection.execute(
                "INSERT INTO tiny_tasks_runs VALUES (?, 'task', ?, 2, 3, ?, 1, 100.0, 200.0)",
                (run_id, status, pending),
            )
            connection.execute("INSERT INTO tiny_tasks_states VALUES (?, ?)", (run_id, b"st"))
            connection.execute("INSERT INTO tiny_tasks_entries VALUES (?, 0, ?)", (run_id, b"e"))


@pytest.mark.parametrize("version", [1, 2])
async def test_an_older_database_is_migrated_to_the_runtime_schema(
    tmp_path: Path, version: int
) -> None:
    _old_database(tmp_path / "runs.db", version)

    async with SqliteSaver(tmp_path / "runs.db") as saver:
        crashed = await saver.load("crashed")
        paused = await saver.load("paused")
        claimed = await saver.claim_runs("worker", ["task"], 300.0, 400.0, 10)
        assert await saver.append_partial("crashed", 3, b"four", 3) == 4
        assert await saver.load_partials("crashed") == [(3, b"four")]
        message = await saver.send_message("paused", "topic", b"hello", 300.0)
        assert await saver.next_message("paused", "topic") == (message, b"hello")

    # A running run of an older version has no lease: it is claimable at once.
    assert crashed == Checkpoint(
        "crashed", "task", "running", 2, 3, (), b"st", (b"e",), 100.0, 200.0
    )
    assert paused == Checkpoint(
        "paused", "task", "paused", 2, 3, ("task/interrupt#0",), b"st", (b"e",), 100.0, 200.0
    )
    assert [(run.run_id, run.version, run.lease_owner) for run in claimed] == [
        ("crashed", 3, "worker")
    ]
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection:
        versions = connection.execute("SELECT version FROM tiny_tasks_schema").fetchall()
        due = connection.execute("SELECT run_id, due_at FROM tiny_tasks_runs ORDER BY run_id")
        assert due.fetchall() == [("crashed", 400.0), ("paused", None)]
    assert versions == [(1,), (2,), (3,)]


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        await saver.setup()
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection, connection:
        connection.execute("INSERT INTO tiny_tasks_schema VALUES (4, 0.0)")

    async with SqliteSaver(tmp_path / "runs.db") as saver:
        with pytest.raises(TinyTasksError, match="has checkpoint schema version 4, but this"):
            await saver.setup()
        with pytest.raises(TinyTasksError, match="upgrade tiny-tasks to open it"):
            await saver.load("any")


async def test_a_file_that_cannot_be_opened_fails_every_call(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "missing-folder" / "runs.db") as saver:
        with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
            await saver.setup()
        with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
            await saver.save(_write("run"), None)


async def test_list_runs_refuses_negative_pages(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        with pytest.raises(ValueError, match="limit and offset must be >= 0, not -1 and 0"):
            await saver.list_runs(limit=-1)


def _file_size(path: Path) -> int:
    """The bytes of the database and its WAL, after a truncating checkpoint."""
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def _write_big_run(saver: SqliteSaver, run_id: str) -> None:
    """A 20 MiB run: 20 entries of 1 MiB of incompressible bytes."""
    entries = tuple(random.randbytes(2**20) for _ in range(20))
    await saver.save(_write(run_id, *entries), None)


async def test_vacuum_gives_a_deleted_runs_space_back(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path) as saver:
        await saver.save(_write("small", b"entry"), None)
        assert await _pragma(saver, "auto_vacuum") == 2  # INCREMENTAL, for new files
        empty = _file_size(path)
        await _write_big_run(saver, "big")
        full = _file_size(path)
        await saver.delete("big")
        after_delete = _file_size(path)
        freed = await saver.vacuum()
        vacuumed = _file_size(path)
        assert (await saver.load("small")) is not None
    assert full > empty + 20 * 2**20
    assert after_delete == full  # deleting alone never shrinks the file
    assert vacuumed <= empty + 64 * 1024
    assert freed == full - vacuumed


async def test_vacuum_switches_an_older_file_to_incremental_mode(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path) as saver:
        await saver.save(_write("small", b"entry"), None)
    with closing(sqlite3.connect(path)) as connection:  # as an older tiny-tasks made it
        connection.execute("PRAGMA auto_vacuum = NONE")
        connection.execute("VACUUM")
    empty = _file_size(path)

    async with SqliteSaver(path) as saver:
        assert await _pragma(saver, "auto_vacuum") == 0
        await _write_big_run(saver, "big")
        await saver.delete("big")
        full = _file_size(path)
        await saver.vacuum()
        assert await _pragma(saver, "auto_vacuum") == 2
        assert [run.run_id for run in await saver.list_runs()] == ["small"]
    assert full > empty + 20 * 2**20
    assert _file_size(path) <= empty + 64 * 1024


async def test_a_full_vacuum_of_an_incremental_file_keeps_every_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path) as saver:
        for number in range(3):
            await saver.save(_write(f"r{number}", b"a", b"b"), None)
        await _write_big_run(saver, "big")
        await saver.delete("big")
        assert await saver.vacuum(full=True) > 20 * 2**20
        assert await saver.vacuum() == 0  # nothing left to give back
        stored = [await saver.load(f"r{number}") for number in range(3)]
        assert await _pragma(saver, "auto_vacuum") == 2
    assert [(s.run_id, s.entries) for s in stored if s is not None] == [
        (f"r{number}", (b"a", b"b")) for number in range(3)
    ]


_KILLED_WRITER = """
import asyncio, sys
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite

def say(line):
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

async def main():
    saver = SqliteSaver(sys.argv[1])
    write = CheckpointWrite("run", "task", "running", 0, (), b"", ())
    version, entries = await saver.save(write, None), 0
    say(f"acked {version} {entries}")
    while True:
        if version % 10 == 0:
            say(f"saving entry {entries}")  # before the write starts: it may be in flight
            write = CheckpointWrite("run", "task", "running", 0, (), b"", (b"%d" % entries,))
            version, entries = await saver.save(write, version), entries + 1
        else:
            say("marking")
            version = await saver.mark_delivered("run", version, version)
        say(f"acked {version} {entries}")

asyncio.run(main())
"""


def _acknowledged(lines: list[bytes]) -> tuple[int, int, str | None]:
    """The writer's last acknowledged (version, entry count) and the write it had started
    after that, if any ("saving entry N" or "marking")."""
    in_flight: str | None = None
    for line in reversed(lines):
        text = line.decode().strip()
        if text.startswith("acked "):
            version, entries = map(int, text.split()[1:])
            return version, entries, in_flight
        if text:
            in_flight = text
    raise AssertionError("the writer acknowledged nothing")


async def test_every_acknowledged_write_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert writer.stdout is not None
    said = [await writer.stdout.readline() for _ in range(1000)]
    writer.kill()  # SIGKILL mid-stream: no cleanup, no final commit
    said += (await writer.stdout.read()).splitlines()
    assert await writer.wait() == -signal.SIGKILL
    last_version, last_entries, in_flight = _acknowledged(said)

    async with SqliteSaver(path) as saver:
        stored = await saver.load("run")
    with closing(sqlite3.connect(path)) as connection:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()

    assert integrity == "ok"
    assert stored is not None
    assert last_version >= 500  # 1,000 lines: the first ack, then an intent and an ack each
    # Every acknowledged write is stored; the one in flight at the kill may be too.
    expected_entries = last_entries
    if stored.version == last_version + 1:
        assert in_flight is not None
        if in_flight.startswith("saving entry"):
            assert in_flight == f"saving entry {last_entries}"
            expected_entries += 1
    else:
        assert stored.version == last_version
    assert stored.entries == tuple(b"%d" % n for n in range(expected_entries))


_SYNC_SCRIPT = """
import sys
from tiny_tasks import Command, TaskContext, interrupt, task
from tiny_tasks.savers import SqliteSaver

@task("script")
def script(n: int, ctx: TaskContext) -> str:
    doubled = ctx.step_sync(lambda: n * 2)
    return f"{doubled} {interrupt('ok?')}"

path, mode = sys.argv[1], sys.argv[2]
opts = {"run_id": "r1"}
if mode == "with":
    with SqliteSaver(path) as saver:
        try:
            script.invoke_sync(21, checkpointer=saver, **opts)
        except Exception as error:
            print(type(error).__name__)
        stream = script.stream_sync(Command(resume="yes"), checkpointer=saver, **opts)
        list(stream)
        print(stream.result)
    saver.close_sync()  # closing again does nothing
else:  # never closed: the saver warns
    saver = SqliteSaver(path)
    try:
        script.invoke_sync(21, checkpointer=saver, **opts)
    except Exception as error:
        print(type(error).__name__)
"""


def test_a_script_closes_the_saver_with_a_with_block_and_no_resource_warning(
    tmp_path: Path,
) -> None:
    def run(mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-X", "dev", "-W", "error", "-c", _SYNC_SCRIPT]
        return subprocess.run(
            [*command, str(tmp_path / f"{mode}.db"), mode],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    closed = run("with")
    assert (closed.returncode, closed.stdout, closed.stderr) == (0, "TaskInterrupted\n42 yes\n", "")
    # The check can fail: the same script that never closes its saver is warned about.
    unclosed = run("unclosed")
    assert unclosed.stdout == "TaskInterrupted\n"
    assert "ResourceWarning" in unclosed.stderr
    assert "was never closed" in unclosed.stderr


async def test_close_sync_works_where_a_loop_runs_and_after_close(tmp_path: Path) -> None:
    saver = SqliteSaver(tmp_path / "runs.db")
    await saver.setup()
    saver.close_sync()
    saver.close_sync()
    await saver.close()
    with pytest.raises(RuntimeError, match="is closed"):
        await saver.load("r")
