"""SqliteSaver's per-partial write on the caller's thread: when it happens, when it must
not (a locked database, calls in flight, FULL durability), a WAL that stays small, and
several threads sharing one saver."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from tiny_tasks.errors import RunConflictError
from tiny_tasks.savers import SqliteSaver, _sqlite_inline
from tiny_tasks.savers._sqlite_thread import Job
from tiny_tasks.savers.base import CheckpointWrite


def _write(run_id: str) -> CheckpointWrite:
    return CheckpointWrite(run_id, "task", "running", 0, (), b"state", ())


class _JobCounter:
    """Counts the jobs a saver sends to its thread."""

    def __init__(self, saver: SqliteSaver) -> None:
        self.jobs: list[str] = []
        submit = saver._thread.submit

        def counting_submit(job: Job) -> bool:
            self.jobs.append(getattr(job[0], "__name__", "?"))
            return submit(job)

        saver._thread.submit = counting_submit  # type: ignore[method-assign]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


async def _created(saver: SqliteSaver, run_id: str = "run-1") -> int:
    return await saver.save(_write(run_id), None)


async def test_after_the_first_mark_marks_take_no_trip_to_the_thread(path: Path) -> None:
    async with SqliteSaver(path) as saver:
        version = await _created(saver)
        counter = _JobCounter(saver)
        version = await saver.mark_delivered("run-1", 1, version)  # opens the inline connection
        await saver.load("run-1")  # the opening job runs before this read resolves
        first_jobs = len(counter.jobs)
        for delivered in range(2, 102):
            version = await saver.mark_delivered("run-1", delivered, version)
        assert len(counter.jobs) == first_jobs  # 100 marks, no job
        loaded = await saver.load("run-1")
        assert loaded is not None
        assert (loaded.version, loaded.delivered) == (102, 101)


@pytest.mark.parametrize("run_id", ["run-1", "missing"])
async def test_a_stale_inline_mark_is_a_conflict_and_changes_nothing(
    path: Path, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_inline, "CONCURRENT_WITHIN", 0.0)  # one stream at a time
    async with SqliteSaver(path) as saver:
        version = await saver.mark_delivered("run-1", 1, await _created(saver))
        await saver.load("run-1")
        counter = _JobCounter(saver)
        with pytest.raises(RunConflictError, match=run_id):
            await saver.mark_delivered(run_id, 7, version - 1)
        assert counter.jobs == []
        loaded = await saver.load("run-1")
        assert loaded is not None
        assert (loaded.version, loaded.delivered) == (version, 1)


async def test_a_locked_database_sends_the_mark_to_the_thread_without_blocking_the_loop(
    path: Path,
) -> None:
    async with SqliteSaver(path) as saver:
        version = await saver.mark_delivered("run-1", 1, await _created(saver))
        await saver.load("run-1")
        counter = _JobCounter(saver)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            marking = asyncio.create_task(saver.mark_delivered("run-1", 2, version))
            await asyncio.sleep(0)  # the mark found the lock taken and went to the thread
            assert counter.jobs == ["mark_delivered"]
            ticks = 0
            while ticks < 20:  # the loop keeps running while the thread waits
                await asyncio.sleep(0)
                ticks += 1
            assert not marking.done()
            other.execute("COMMIT")
        assert await marking == version + 1
        loaded = await saver.load("run-1")
        assert loaded is not None
        assert loaded.delivered == 2


async def test_a_mark_made_behind_a_call_in_flight_waits_its_turn(path: Path) -> None:
    async with SqliteSaver(path) as saver:
        version = await saver.mark_delivered("run-1", 1, await _created(saver))
        await saver.load("run-1")
        counter = _JobCounter(saver)
        # A write that always goes to the thread (one no run awaits in sequence).
        cancelling = asyncio.ensure_future(saver.request_cancel("run-1", 1.0))
        marking = asyncio.ensure_future(saver.mark_delivered("run-1", 2, version))
        await cancelling
        with pytest.raises(RunConflictError, match=f"version {version + 1}"):
            await marking  # applied after the cancel request, as it was called after it
        assert counter.jobs == ["request_cancel", "mark_delivered"]


async def test_marks_of_several_streams_at_once_go_to_the_thread_to_be_grouped(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = iter(range(10**6))  # a clock that moves 1 µs a mark, however slow the machine
    monkeypatch.setattr(_sqlite_inline, "clock", lambda: next(ticks) / 1e6)
    streams, marks = 8, 20
    async with SqliteSaver(path) as saver:
        versions = {f"run-{n}": await _created(saver, f"run-{n}") for n in range(streams)}
        await saver.mark_delivered("run-0", 0, versions["run-0"])  # opens the inline connection
        versions["run-0"] += 1
        await saver.load("run-0")
        counter = _JobCounter(saver)

        async def stream(run_id: str) -> None:
            for delivered in range(1, marks + 1):
                versions[run_id] = await saver.mark_delivered(run_id, delivered, versions[run_id])
                await asyncio.sleep(0)  # the consumer awaits something: the streams interleave

        await asyncio.gather(*(stream(run_id) for run_id in versions))
        # Only a first mark, before any other stream has marked, may be made inline.
        assert streams * marks - 1 <= counter.jobs.count("mark_delivered") <= streams * marks
        for run_id in versions:
            loaded = await saver.load(run_id)
            assert loaded is not None
            assert (loaded.delivered, loaded.version) == (marks, versions[run_id])


@pytest.mark.parametrize(
    "options", [{"synchronous": "FULL"}, {"synchronous": "EXTRA"}, {"inline_marks": False}]
)
async def test_full_durability_or_inline_marks_false_keep_every_mark_on_the_thread(
    path: Path, options: dict[str, object]
) -> None:
    async with SqliteSaver(path, **options) as saver:  # type: ignore[arg-type]
        version = await _created(saver)
        counter = _JobCounter(saver)
        for delivered in range(1, 11):
            version = await saver.mark_delivered("run-1", delivered, version)
        assert counter.jobs == ["mark_delivered"] * 10
        assert saver._inline is None


async def test_the_wal_stays_small_under_a_long_stream_of_inline_marks(path: Path) -> None:
    marks = 4 * _sqlite_inline.CHECKPOINT_EVERY
    frame = 2048 + 24  # page plus frame header
    wal = Path(f"{path}-wal")
    async with SqliteSaver(path) as saver:
        version = await _created(saver)
        largest = 0
        for delivered in range(1, marks + 1):
            version = await saver.mark_delivered("run-1", delivered, version)
            if delivered % 100 == 0:
                largest = max(largest, wal.stat().st_size)  # noqa: ASYNC240
        loaded = await saver.load("run-1")
        assert loaded is not None
        assert loaded.delivered == marks
    # Without checkpoints the WAL would hold a frame per mark: 4x this bound.
    assert 0 < largest <= (_sqlite_inline.CHECKPOINT_EVERY + 200) * frame


def test_loops_in_several_threads_share_one_saver(path: Path) -> None:
    marks, threads = 300, 4
    saver = SqliteSaver(path)
    versions: dict[str, int] = {}
    errors: list[BaseException] = []

    async def create() -> None:
        for number in range(threads):
            versions[f"run-{number}"] = await _created(saver, f"run-{number}")

    async def mark(run_id: str) -> None:
        version = versions[run_id]
        for delivered in range(1, marks + 1):
            version = await saver.mark_delivered(run_id, delivered, version)
        versions[run_id] = version

    def worker(run_id: str) -> None:
        try:
            asyncio.run(mark(run_id))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    asyncio.run(create())
    workers = [threading.Thread(target=worker, args=(f"run-{n}",)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []

    async def check() -> list[tuple[int, int]]:
        found = []
        for number in range(threads):
            loaded = await saver.load(f"run-{number}")
            assert loaded is not None
            found.append((loaded.version, loaded.delivered))
        await saver.close()
        return found

    assert asyncio.run(check()) == [(1 + marks, marks)] * threads


async def test_a_mark_after_close_is_refused(path: Path) -> None:
    saver = SqliteSaver(path)
    version = await saver.mark_delivered("run-1", 1, await _created(saver))
    await saver.load("run-1")
    await saver.close()
    with pytest.raises(RuntimeError, match="closed"):
        await saver.mark_delivered("run-1", 2, version)


async def test_a_runs_steps_and_resume_are_written_and_read_without_the_thread(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiny_tasks import Command, TaskInterrupted, interrupt, step, task

    seen: list[int] = []

    @step
    async def count_entries(i: int) -> int:
        # Each earlier step's result was committed before it was handed back.
        with closing(sqlite3.connect(path)) as other:
            (entries,) = other.execute("SELECT count(*) FROM tiny_tasks_entries").fetchone()
        seen.append(entries)
        return i

    @task("inline_steps")
    async def steps(n: int) -> int:
        total = 0
        for i in range(n):
            total += await count_entries(i)
        return total + interrupt("more?")

    monkeypatch.setattr(_sqlite_inline, "CONCURRENT_WITHIN", 0.0)  # one run at a time
    async with SqliteSaver(path) as saver:
        await saver.setup()
        await saver.save(_write("opener"), None)
        await saver.load("opener")  # the first call opens the inline connection
        await saver.load("opener")
        counter = _JobCounter(saver)
        with pytest.raises(TaskInterrupted):
            await steps.invoke(5, run_id="run-1", checkpointer=saver)
        assert await steps.invoke(Command(resume=10), run_id="run-1", checkpointer=saver) == 20
        # run-1's input entry, then one more per step (opener has no entries)
        assert seen == [1, 2, 3, 4, 5]
        # loads, the create, 5 steps, the pause, the answers, the delete: no thread
        assert counter.jobs == []


@pytest.mark.parametrize("synchronous", ["FULL", "EXTRA"])
async def test_at_full_durability_saves_and_loads_go_to_the_thread(
    path: Path, synchronous: str
) -> None:
    async with SqliteSaver(path, synchronous=synchronous) as saver:
        version = await _created(saver)
        counter = _JobCounter(saver)
        for _ in range(3):
            version = await saver.save(_write("run-1"), version)
            await saver.load("run-1")
        await saver.delete("run-1")
        assert counter.jobs == ["save", "load"] * 3 + ["delete"]
