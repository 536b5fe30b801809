"""SqliteSaver's database thread: the loop never waits on the database, writes queued
together commit together without disturbing each other, cancellation, several event
loops, closing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tiny_tasks.errors import RunConflictError
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite


def _write(run_id: str, *entries: bytes, state: bytes = b"state") -> CheckpointWrite:
    return CheckpointWrite(run_id, "task", "running", 0, (), state, entries)


def _threads_of(folder: Path) -> list[threading.Thread]:
    """The database threads of savers on `folder`/runs.db."""
    return [t for t in threading.enumerate() if t.name == f"tiny-tasks-sqlite {folder}/runs.db"]


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


def test_closing_while_another_loop_writes_never_strands_a_call(tmp_path: Path) -> None:
    saver = SqliteSaver(tmp_path / "runs.db")
    writing = threading.Event()
    outcomes: list[Any] = []

    async def write_until_closed() -> None:
        version = await saver.save(_write("run"), None)
        writing.set()
        while True:
            try:
                version = await saver.mark_delivered("run", version, version)
            except RuntimeError as error:
                outcomes.append(str(error))
                return
            outcomes.append(version)

    writer = threading.Thread(target=asyncio.run, args=(write_until_closed(),))
    writer.start()
    assert writing.wait(timeout=30)
    asyncio.run(saver.close())
    writer.join(timeout=30)

    assert not writer.is_alive()
    assert outcomes[:-1] == list(range(2, len(outcomes) + 1))
    assert outcomes[-1].endswith("closed) is closed; open a new SqliteSaver to use the file")
