"""SqliteSaver beyond the shared contract: durability settings, schema versions, the
writer thread (never blocking the loop, group commit, cancellation), lifecycle."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tiny_tasks.errors import RunConflictError, TinyTasksError
from tiny_tasks.savers import SqliteSaver, _sqlite_schema
from tiny_tasks.savers.base import CheckpointWrite


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


async def test_a_new_database_is_at_schema_version_1(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        await saver.setup()
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection:
        versions = connection.execute("SELECT version FROM tiny_tasks_schema").fetchall()
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
    assert versions == [(1,)]
    assert tables == [
        ("tiny_tasks_entries",),
        ("tiny_tasks_runs",),
        ("tiny_tasks_schema",),
        ("tiny_tasks_states",),
    ]


async def test_opening_an_older_database_applies_the_new_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        await saver.save(_write("kept", b"entry"), None)
    version_2 = ("ALTER TABLE tiny_tasks_runs ADD COLUMN owner TEXT",)
    monkeypatch.setattr(_sqlite_schema, "MIGRATIONS", (*_sqlite_schema.MIGRATIONS, version_2))
    monkeypatch.setattr(_sqlite_schema, "LATEST_VERSION", 2)

    async with SqliteSaver(tmp_path / "runs.db") as saver:
        stored = await saver.load("kept")

    assert stored is not None
    assert stored.entries == (b"entry",)
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection:
        versions = connection.execute("SELECT version FROM tiny_tasks_schema").fetchall()
        owner = connection.execute("SELECT owner FROM tiny_tasks_runs").fetchall()
    assert versions == [(1,), (2,)]
    assert owner == [(None,)]


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        await saver.setup()
    with closing(sqlite3.connect(tmp_path / "runs.db")) as connection, connection:
        connection.execute("INSERT INTO tiny_tasks_schema VALUES (2, 0.0)")

    async with SqliteSaver(tmp_path / "runs.db") as saver:
        with pytest.raises(TinyTasksError, match="has checkpoint schema version 2, but this"):
            await saver.setup()
        with pytest.raises(TinyTasksError, match="upgrade tiny-tasks to open it"):
            await saver.load("any")


async def test_a_file_that_cannot_be_opened_fails_every_call(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "missing-folder" / "runs.db") as saver:
        with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
            await saver.setup()
        with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
            await saver.save(_write("run"), None)


async def test_the_loop_keeps_running_while_a_save_waits_for_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path, busy_timeout=30.0) as saver:
        await saver.setup()
        with closing(sqlite3.connect(path, isolation_level=None)) as other_process:
            other_process.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock
            save = asyncio.create_task(saver.save(_write("run", b"entry"), None))
            ticks = 0
            while ticks < 2000:  # the loop turns while the save waits on the lock
                await asyncio.sleep(0)
                ticks += 1
            assert not save.done()
            other_process.execute("COMMIT")  # only a running loop can get here
            assert await save == 1
        stored = await saver.load("run")
    assert stored is not None
    assert stored.entries == (b"entry",)


async def test_a_save_that_cannot_get_the_lock_fails_after_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path, busy_timeout=0.3) as saver:
        await saver.setup()
        with closing(sqlite3.connect(path, isolation_level=None)) as other_process:
            other_process.execute("BEGIN IMMEDIATE")
            loop = asyncio.get_running_loop()
            save = asyncio.create_task(saver.save(_write("run"), None))
            started, ticks = loop.time(), 0
            while not save.done():
                await asyncio.sleep(0)
                ticks += 1
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                await save
            assert loop.time() - started >= 0.29
            assert ticks > 100  # the loop ran all along
            other_process.execute("ROLLBACK")
        assert await saver.load("run") is None


async def _queue_behind_a_held_lock(
    saver: SqliteSaver, path: Path, calls: list[Any], cancel: tuple[int, ...] = ()
) -> list[Any]:
    """Run `calls` (coroutines) so that they reach the writer thread as one batch.

    Another connection holds the write lock while a first save, then a load, then the
    calls are queued: the thread waits on the lock with the first save alone in its
    batch (a load ends a batch), so the calls are all queued when it comes to them.
    The calls at the indexes in `cancel` are cancelled while they wait in the queue.
    """
    with closing(sqlite3.connect(path, isolation_level=None)) as other_process:
        other_process.execute("BEGIN IMMEDIATE")
        first = asyncio.ensure_future(saver.save(_write("first"), None))
        load = asyncio.ensure_future(saver.load("first"))
        queued = [asyncio.ensure_future(call) for call in calls]
        # One turn of the loop runs each new task up to its first await, which is
        # after its job was queued.
        await asyncio.sleep(0)
        for index in cancel:
            queued[index].cancel()
        other_process.execute("COMMIT")
    assert await first == 1
    assert await load is not None
    return await asyncio.gather(*queued, return_exceptions=True)


async def test_one_failing_write_in_a_group_commit_does_not_affect_the_others(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path) as saver:
        await saver.save(_write("existing", b"e0"), None)
        bad_entry: Any = object()  # cannot be bound: fails after the run row changed
        results = await _queue_behind_a_held_lock(
            saver,
            path,
            [
                saver.save(_write("new", b"n0"), None),
                saver.save(_write("existing"), None),
                saver.save(
                    CheckpointWrite("existing", "task", "done", 0, (), b"", (bad_entry,)), 1
                ),
                saver.mark_delivered("existing", 5, 1),
                saver.mark_delivered("existing", 6, 1),
            ],
        )
        new, existing = await saver.load("new"), await saver.load("existing")

    assert results[0] == 1
    assert isinstance(results[1], RunConflictError)
    assert isinstance(results[2], sqlite3.ProgrammingError)
    assert results[3] == 2
    assert isinstance(results[4], RunConflictError)
    assert "it is at version 2, this worker read version 1" in str(results[4])
    assert new is not None
    assert existing is not None
    assert (new.version, new.entries) == (1, (b"n0",))
    assert (existing.version, existing.status, existing.delivered) == (2, "running", 5)
    assert existing.entries == (b"e0",)


async def test_a_write_cancelled_before_the_thread_reaches_it_is_not_applied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    async with SqliteSaver(path) as saver:
        results = await _queue_behind_a_held_lock(
            saver,
            path,
            [saver.save(_write("cancelled"), None), saver.save(_write("kept"), None)],
            cancel=(0,),
        )
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1] == 1
        assert await saver.load("cancelled") is None
        assert [run.run_id for run in await saver.list_runs()] == ["kept", "first"]


async def test_many_concurrent_writers_each_get_their_own_result(tmp_path: Path) -> None:
    async def drive(saver: SqliteSaver, run_id: str) -> int:
        version = await saver.save(_write(run_id), None)
        for delivered in range(1, 31):
            version = await saver.mark_delivered(run_id, delivered, version)
        return await saver.save(_write(run_id, run_id.encode()), version)

    async with SqliteSaver(tmp_path / "runs.db") as saver:
        versions = await asyncio.gather(*(drive(saver, f"run-{n:02}") for n in range(40)))
        runs = await saver.list_runs(limit=1000)

    assert versions == [32] * 40
    assert [(run.run_id, run.version, run.delivered) for run in runs] == [
        (f"run-{n:02}", 32, 0) for n in reversed(range(40))
    ]


def test_one_saver_serves_event_loops_in_several_threads(tmp_path: Path) -> None:
    saver = SqliteSaver(tmp_path / "runs.db")
    errors: list[BaseException] = []

    async def drive(run_id: str) -> None:
        version = await saver.save(_write(run_id), None)
        for delivered in range(1, 101):
            version = await saver.mark_delivered(run_id, delivered, version)

    def in_thread(run_id: str) -> None:
        try:
            asyncio.run(drive(run_id))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=in_thread, args=(f"run-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def check_and_close() -> list[tuple[str, int, int]]:
        async with saver:
            runs = await saver.list_runs()
        return sorted((run.run_id, run.version, run.delivered) for run in runs)

    assert errors == []
    assert asyncio.run(check_and_close()) == [(f"run-{n}", 101, 100) for n in range(4)]


async def test_close_is_idempotent_and_later_calls_say_the_saver_is_closed(
    tmp_path: Path,
) -> None:
    saver = SqliteSaver(tmp_path / "runs.db")
    await saver.save(_write("run"), None)
    await saver.close()
    await saver.close()

    with pytest.raises(RuntimeError, match=r"SqliteSaver\(.*, closed\) is closed; open a new"):
        await saver.load("run")
    assert _threads_of(tmp_path) == []


async def test_writes_queued_before_close_are_committed(tmp_path: Path) -> None:
    saver = SqliteSaver(tmp_path / "runs.db")
    writes = [asyncio.ensure_future(saver.save(_write(f"run-{n}"), None)) for n in range(10)]
    await asyncio.sleep(0)  # one turn of the loop: each write runs up to its queued job
    await saver.close()
    assert [await write for write in writes] == [1] * 10
    async with SqliteSaver(tmp_path / "runs.db") as reopened:
        assert len(await reopened.list_runs()) == 10


def test_an_unclosed_saver_warns_and_stops_its_thread(tmp_path: Path) -> None:
    saver = SqliteSaver(tmp_path / "runs.db")
    (thread,) = _threads_of(tmp_path)

    with pytest.warns(ResourceWarning, match=r"SqliteSaver\(.*\) was never closed"):
        del saver  # the last reference: collected at once

    thread.join(timeout=10)
    assert not thread.is_alive()


async def test_list_runs_refuses_negative_pages(tmp_path: Path) -> None:
    async with SqliteSaver(tmp_path / "runs.db") as saver:
        with pytest.raises(ValueError, match="limit and offset must be >= 0, not -1 and 0"):
            await saver.list_runs(limit=-1)


_KILLED_WRITER = """
import asyncio, sys
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite

async def main():
    saver = SqliteSaver(sys.argv[1])
    write = CheckpointWrite("run", "task", "running", 0, (), b"", ())
    version, entries = await saver.save(write, None), 0
    while True:
        if version % 10 == 0:
            write = CheckpointWrite("run", "task", "running", 0, (), b"", (b"%d" % entries,))
            version, entries = await saver.save(write, version), entries + 1
        else:
            version = await saver.mark_delivered("run", version, version)
        sys.stdout.write(f"{version} {entries}\\n")
        sys.stdout.flush()

asyncio.run(main())
"""


async def test_every_acknowledged_write_survives_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert writer.stdout is not None
    acknowledged = [await writer.stdout.readline() for _ in range(500)]
    writer.kill()  # SIGKILL mid-stream: no cleanup, no final commit
    acknowledged += (await writer.stdout.read()).splitlines()
    assert await writer.wait() == -signal.SIGKILL
    last_version, last_entries = map(int, acknowledged[-1].split())

    async with SqliteSaver(path) as saver:
        stored = await saver.load("run")
    with closing(sqlite3.connect(path)) as connection:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()

    assert integrity == "ok"
    assert stored is not None
    assert last_version >= 500
    assert stored.version in (last_version, last_version + 1)  # + one write in flight
    written = stored.version // 10
    assert stored.entries == tuple(b"%d" % n for n in range(written))
    assert len(stored.entries) >= last_entries
