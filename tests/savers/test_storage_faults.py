"""Storage faults: a failing saver never deletes or rewrites a run, and the run continues.

On every saver kind: a wrapper that fails calls (before they apply, or after, with the
answer lost), driven to completion by calling again after each `StorageError`. On
SQLite and PostgreSQL: real faults (another connection holding the write lock, killed
server backends, a stopped server) that the savers retry or report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from faulty_saver import FaultySaver, faulty
from postgres_server import PostgresServer
from psycopg_pool import AsyncConnectionPool
from saver_kinds import SAVER_KINDS, make_saver

from tiny_tasks import (
    Command,
    Interrupt,
    MemorySaver,
    NoCheckpointError,
    StorageError,
    TaskInterrupted,
    interrupt,
    step,
    task,
)
from tiny_tasks._driver import Driver, driving
from tiny_tasks._run import resolve
from tiny_tasks.errors import RunConflictError
from tiny_tasks.savers import PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite

# -- a program with every effect: partials, steps, children, a gather, interrupts --------


class Program:
    """One run of `job`, with its step executions counted and checked."""

    def __init__(self, saver: FaultySaver | None = None) -> None:
        self.saver = saver
        self.executions: Counter[str] = Counter()

        @step
        async def record(name: str) -> str:
            # No recorded step ever runs twice: its stored record would have been replayed.
            if self.saver is not None:
                assert f"done {name}" not in self.saver.applied_steps, f"{name} ran twice"
            self.executions[name] += 1
            return f"done {name}"

        @task("leaf")
        async def leaf(name: str) -> str:
            return await record(name)

        @task("streamer")
        async def streamer(name: str):
            yield f"{name} starts"
            yield await record(name)

        @task("job")
        async def job(rounds: int):
            for i in range(rounds):
                yield f"round {i}"
                yield await record(f"step {i}")
                async for partial, _, _ in streamer(f"child {i}"):
                    yield partial
            first = interrupt("first?")
            yield f"first answer {first}"
            yield await leaf.invoke("invoked child")
            pair = await asyncio.gather(leaf.invoke("left"), leaf.invoke("right"))
            yield f"gathered {pair}"
            second = interrupt("second?")
            yield f"second answer {second}"
            yield await record("last")

        self.job = job


ANSWERS = {"first?": "yes", "second?": "no"}


async def consume(stream: Any, partials: list[Any]) -> None:
    """Append the stream's partials to `partials` as they arrive (kept if it raises)."""
    async for event in stream:
        partials.append(event.partial)


async def drive(program: Program, checkpointer: Any, run_id: str) -> tuple[list[Any], int]:
    """Call, answer and call again after every storage error until the run is done.

    Returns every partial the consumer was given, in order, and the storage errors met.
    """
    partials: list[Any] = []
    given: Any = 3
    errors = 0
    for _ in range(500):
        stream = program.job(given, run_id=run_id, checkpointer=checkpointer)
        interrupts: list[Interrupt] = []
        try:
            async for partial, _, pending in stream:
                if pending is None:
                    partials.append(partial)
                else:
                    interrupts.append(pending)
        except StorageError as error:
            errors += 1
            wrong = error.run_id != run_id or not isinstance(error.error, ConnectionError)
            if wrong or error.__cause__ is not error.error:
                raise
            continue  # the same call again: continues the stored run
        except NoCheckpointError as error:
            # A resume whose answer was stored before its answer was lost: the run is
            # running again, so it is continued by calling the task.
            if not isinstance(given, Command) or "is running, not paused" not in str(error):
                raise
            given = 3
            continue
        if not interrupts:
            assert stream.result is None
            return partials, errors
        given = Command(resume=ANSWERS[interrupts[0].value])
    raise AssertionError("the run did not finish in 500 calls")


async def fault_free() -> tuple[list[Any], Counter[str]]:
    program = Program()
    partials, errors = await drive(program, MemorySaver(), "reference")
    assert errors == 0
    return partials, program.executions


@pytest.mark.parametrize("every", range(2, 8))
@pytest.mark.parametrize("kind", SAVER_KINDS)
async def test_a_run_through_every_kth_call_failing_ends_as_a_fault_free_run(
    kind: str, every: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    expected_partials, expected_executions = await fault_free()
    assert len(expected_partials) == 17
    assert set(expected_executions.values()) == {1}
    inner = await make_saver(kind, request, tmp_path)
    try:
        saver = faulty(inner, every)
        program = Program(saver)
        partials, errors = await drive(program, saver, f"faults-{every}")
        assert await resolve(inner.load(f"faults-{every}")) is None  # finished and deleted
    finally:
        if hasattr(inner, "close"):
            await inner.close()

    assert errors == len(saver.faults) > 0
    # A partial whose delivery was stored but whose answer was lost is skipped: never twice.
    lost = set(saver.lost_positions)
    assert partials == [p for i, p in enumerate(expected_partials, 1) if i not in lost]
    # Every step ran; a step ran again only if its result was never stored (the record
    # was lost, or the run stopped before writing it). "ran twice" is asserted in it.
    assert set(program.executions) == set(expected_executions)
    assert saver.applied_steps == {f"done {name}" for name in expected_executions}


# -- the engine: what a storage error does to a run --------------------------------------


class BrokenSaver(MemorySaver):
    """A `MemorySaver` whose `broken` method raises `OSError` while `failing` is set;
    counts every call."""

    def __init__(self, broken: str) -> None:
        super().__init__()
        self.broken = broken
        self.failing = False
        self.log: list[str] = []

    def _check(self, method: str) -> None:
        self.log.append(method)
        if self.failing and method == self.broken:
            raise OSError("disk unplugged")

    def load(self, run_id: str) -> Any:
        self._check("load")
        return super().load(run_id)

    def save(self, write: Any, expected_version: int | None) -> int:
        self._check("save")
        return super().save(write, expected_version)

    def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        self._check("mark_delivered")
        return super().mark_delivered(run_id, delivered, expected_version)

    def append_partial(self, run_id: str, seq: int, data: bytes, expected_version: int) -> int:
        self._check("append_partial")
        return super().append_partial(run_id, seq, data, expected_version)

    def load_partials(
        self, run_id: str, after: int = -1, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        self._check("load_partials")
        return super().load_partials(run_id, after, limit)

    def delete(self, run_id: str) -> None:
        self._check("delete")
        super().delete(run_id)


class BrokenCountingSaver(BrokenSaver):
    """`BrokenSaver` without the stream log: its per-partial write is `mark_delivered`."""

    append_partial = None  # type: ignore[assignment]
    load_partials = None  # type: ignore[assignment]


def storage_error_message(operation: str) -> str:
    return (
        f"storage failed for run 'r1': the checkpointer's {operation}() raised "
        "builtins.OSError: disk unplugged. The run was stopped and its stored state was "
        "neither deleted nor rewritten; once storage is back, call the task again with "
        "run_id='r1' to continue it (recorded steps are not run again, answers are kept, "
        "a paused run reports its interrupts again)"
    )


async def test_a_failed_step_write_stops_the_run_and_keeps_it_for_a_later_call() -> None:
    saver = BrokenSaver("save")
    charged: list[int] = []
    closed: list[str] = []

    @step
    async def charge(amount: int) -> int:
        charged.append(amount)
        if len(charged) == 2:
            saver.failing = True  # storage goes away while the second charge runs
        return amount

    @task("pay")
    async def pay(_: Any):
        try:
            yield await charge(10)
            answer = interrupt("ship?")
            yield await charge(20)
            yield f"shipped: {answer}"
        finally:
            closed.append("finally")

    with pytest.raises(TaskInterrupted):
        await pay.invoke(None, run_id="r1", checkpointer=saver)
    before = saver.load("r1")
    saver.log.clear()

    with pytest.raises(StorageError) as caught:
        await pay.invoke(Command(resume="yes"), run_id="r1", checkpointer=saver)

    error = caught.value
    assert str(error) == storage_error_message("save")
    assert (error.run_id, error.operation) == ("r1", "save")
    assert isinstance(error.error, OSError)
    assert error.__cause__ is error.error
    assert closed == ["finally", "finally"]  # the pause, then the storage error
    # The answer was stored, the failed write was not retried, nothing was deleted.
    assert saver.log == ["load", "load_partials", "save", "save"]
    stored = saver.load("r1")
    assert stored is not None
    assert (stored.status, stored.version) == ("running", before.version + 1)
    assert stored.entries[:-1] == before.entries  # and the answer after them
    assert charged == [10, 20]

    saver.failing = False
    assert await pay.invoke(None, run_id="r1", checkpointer=saver) is None
    assert charged == [10, 20, 20]  # the charge whose result was lost runs again, once
    assert saver.load("r1") is None


async def test_a_body_that_swallows_the_storage_error_writes_nothing_more() -> None:
    saver = BrokenSaver("save")
    ran: list[str] = []

    @step
    async def work(name: str) -> str:
        ran.append(name)
        saver.failing = name == "b"
        return name

    @task("careless")
    async def careless(_: Any):
        yield await work("a")
        try:
            await work("b")
        except Exception as error:  # user code that hides every error
            yield f"ignored {type(error).__name__}"
        yield await work("c")

    partials: list[Any] = []
    with pytest.raises(StorageError, match=r"the checkpointer's save\(\) raised"):
        await consume(careless(None, run_id="r1", checkpointer=saver), partials)
    assert partials == ["a"]  # the body's next partial was refused: its delivery cannot be kept
    assert saver.log == ["load", "save", "save", "append_partial", "save"]
    assert ran == ["a", "b"]
    stored = saver.load("r1")
    assert stored is not None
    assert (stored.status, stored.delivered, len(stored.entries)) == ("running", 1, 2)


@pytest.mark.parametrize(
    "broken", ["load", "load_partials", "mark_delivered", "append_partial", "delete"]
)
async def test_every_saver_call_that_fails_is_a_storage_error_that_keeps_the_run(
    broken: str,
) -> None:
    saver = BrokenCountingSaver(broken) if broken == "mark_delivered" else BrokenSaver(broken)
    closed: list[int] = []

    @task("two")
    async def two(_: Any):
        try:
            yield 1
            yield 2
        finally:
            closed.append(1)

    stream = two(None, run_id="r1", checkpointer=saver)
    partials = [(await anext(stream)).partial]
    saver.failing = True
    # The same driver re-attaches (another would get RunBusyError: the first stream still
    # holds the run's lease).
    same_driver = Driver(owner=stream._run.lease.owner)  # type: ignore[union-attr]
    with pytest.raises(StorageError) as caught, driving(same_driver):
        await (
            two.invoke(None, run_id="r1", checkpointer=saver)
            if broken.startswith("load")
            else consume(stream, partials)
        )
    assert str(caught.value) == storage_error_message(broken)
    assert partials == ([1] if broken != "delete" else [1, 2])
    assert closed == ([] if broken == "load" else [1])  # load_partials: while replaying
    stored = MemorySaver.load(saver, "r1")
    assert stored is not None
    assert (stored.status, stored.delivered) == ("running", partials[-1])

    saver.failing = False
    with driving(same_driver):
        partials = [event.partial async for event in two(None, run_id="r1", checkpointer=saver)]
    assert partials == ([2] if broken != "delete" else [])  # exactly once in total
    assert MemorySaver.load(saver, "r1") is None
    if broken.startswith("load"):
        await stream.aclose()


async def test_the_tasks_own_exception_is_never_wrapped_and_ends_the_run() -> None:
    saver = BrokenSaver("save")

    @task("fails")
    async def fails(_: Any):
        yield 1
        raise OSError("the task's own")

    with pytest.raises(OSError, match=r"^the task's own$"):
        await fails.invoke(None, run_id="r1", checkpointer=saver)
    assert saver.load("r1") is None


# -- SQLite: another connection holds the write lock ------------------------------------


class OnRetry(logging.Handler):
    """Counts the savers' retry warnings; calls `action` on the first one."""

    def __init__(self, action: Any = None) -> None:
        super().__init__()
        self.action = action
        self.retries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.retries.append(record.getMessage())
        if self.action is not None and len(self.retries) == 1:
            self.action()


@pytest.fixture
def on_retry() -> Any:
    handlers: list[OnRetry] = []
    logger = logging.getLogger("tiny_tasks.savers")

    def install(action: Any = None) -> OnRetry:
        handler = OnRetry(action)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield install
    for handler in handlers:
        logger.removeHandler(handler)


def locking_task(holder: sqlite3.Connection, saver: Any, seen: dict[str, Any]) -> Any:
    """A task whose second step takes the write lock on `holder` before its result is
    written; `seen["before"]` is the stored run just before."""
    ran: Counter[str] = Counter()

    @step
    async def work(name: str) -> str:
        ran[name] += 1
        if name == "second" and "before" not in seen:
            seen["before"] = await saver.load("locked")
            holder.execute("BEGIN IMMEDIATE")
        return name

    @task("locker")
    async def locker(_: Any):
        yield await work("first")
        yield await work("second")
        yield await work("third")

    seen["ran"] = ran
    return locker


async def test_sqlite_a_lock_released_within_the_retries_costs_nothing(
    tmp_path: Path, on_retry: Any
) -> None:
    path = tmp_path / "runs.db"
    holder = sqlite3.connect(path, isolation_level=None)
    retries = on_retry(lambda: holder.execute("COMMIT"))
    seen: dict[str, Any] = {}
    async with SqliteSaver(path, busy_timeout=0.02, retry_attempts=4) as saver:
        locker = locking_task(holder, saver, seen)
        partials = [e.partial async for e in locker(None, run_id="locked", checkpointer=saver)]
        assert await saver.load("locked") is None
    holder.close()
    assert partials == ["first", "second", "third"]
    assert seen["ran"] == {"first": 1, "second": 1, "third": 1}
    assert len(retries.retries) == 1
    assert (
        "save failed with OperationalError: database is locked; retry 1 of 4"
        in (retries.retries[0])
    )


async def test_sqlite_a_lock_held_past_the_retries_stops_the_run_and_keeps_it(
    tmp_path: Path, on_retry: Any
) -> None:
    # One process throughout: after a storage failure the run keeps its lease (nothing
    # more is written), so it re-attaches as the same owner.
    with driving(Driver(owner="this-process")):
        path = tmp_path / "runs.db"
        holder = sqlite3.connect(path, isolation_level=None)
        retries = on_retry()
        seen: dict[str, Any] = {}
        async with SqliteSaver(path, busy_timeout=0.02, retry_attempts=2) as saver:
            locker = locking_task(holder, saver, seen)
            partials: list[Any] = []
            with pytest.raises(StorageError) as caught:
                await consume(locker(None, run_id="locked", checkpointer=saver), partials)
            assert str(caught.value).startswith(
                "storage failed for run 'locked': the checkpointer's save() raised "
                "sqlite3.OperationalError: database is locked. The run was stopped"
            )
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            # The save's two retries, then release_lease's: the attempt gives its lease
            # up, best effort (the lock is still held, so it stays until it expires).
            assert [line.split("): ")[1].split(" failed")[0] for line in retries.retries] == [
                "save",
                "save",
                "release_lease",
                "release_lease",
            ]
            assert await saver.load("locked") == seen["before"]  # not a byte changed
            assert seen["before"].status == "running"
            assert len(seen["before"].entries) == 2  # the input, the first step

            holder.execute("COMMIT")
            partials += [e.partial async for e in locker(None, run_id="locked", checkpointer=saver)]
            assert await saver.load("locked") is None
        holder.close()
        assert partials == ["first", "second", "third"]
        # The first step's result was stored: it is not run again. The second one's was not.
        assert seen["ran"] == {"first": 1, "second": 2, "third": 1}


# -- PostgreSQL: killed backends, a stopped server --------------------------------------

_OTHERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def three_steps(between: Any) -> tuple[Any, Counter[str]]:
    """A task of three steps; `await between()` runs inside the second one."""
    ran: Counter[str] = Counter()

    @step
    async def work(name: str) -> str:
        ran[name] += 1
        if name == "second" and ran[name] == 1:
            await between()
        return name

    @task("three")
    async def three(_: Any):
        yield await work("first")
        yield await work("second")
        yield await work("third")

    return three, ran


async def test_postgres_backends_killed_between_two_steps_are_replaced(
    postgres_dsn: str, on_retry: Any
) -> None:
    retries = on_retry()
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:

        async def kill_the_savers_connections() -> None:
            cursor = await admin.execute(_OTHERS)
            killed.extend(row[0] for row in await cursor.fetchall())

        killed: list[bool] = []
        three, ran = three_steps(kill_the_savers_connections)
        async with PostgresSaver(postgres_dsn) as saver:
            await saver.setup()
            opts: dict[str, Any] = {"run_id": "killed", "checkpointer": saver}
            partials = [event.partial async for event in three(None, **opts)]
            assert await saver.load("killed") is None
    assert killed
    assert all(killed)
    assert partials == ["first", "second", "third"]
    assert ran == {"first": 1, "second": 1, "third": 1}
    assert len(retries.retries) == 1
    assert "save failed with" in retries.retries[0]


async def test_postgres_a_backend_killed_while_its_write_waits_is_retried_once(
    postgres_dsn: str, on_retry: Any
) -> None:
    retries = on_retry()
    async with (
        await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin,
        await psycopg.AsyncConnection.connect(postgres_dsn) as blocker,
    ):

        async def block_the_row() -> None:
            await blocker.execute(
                "SELECT 1 FROM tiny_tasks_runs WHERE run_id = 'in-flight' FOR UPDATE"
            )

        three, ran = three_steps(block_the_row)
        async with PostgresSaver(postgres_dsn) as saver:
            await saver.setup()
            opts: dict[str, Any] = {"run_id": "in-flight", "checkpointer": saver}
            running = asyncio.create_task(three.invoke(None, **opts))
            waiting: list[tuple[Any, ...]] = []
            while not waiting:  # the step's write is in flight, waiting for the row lock
                await asyncio.sleep(0.01)
                cursor = await admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'WITH changed AS (UPDATE%%'"
                )
                waiting = await cursor.fetchall()
            await admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
            await blocker.rollback()
            assert await running is None
            assert await saver.load("in-flight") is None
    assert ran == {"first": 1, "second": 1, "third": 1}
    assert len(retries.retries) == 1
    assert "save failed with AdminShutdown" in retries.retries[0]


async def test_postgres_a_stopped_server_stops_the_run_and_keeps_it(
    on_retry: Any,
) -> None:
    # One process throughout: after a storage failure the run keeps its lease (nothing
    # more is written), so it re-attaches as the same owner.
    with driving(Driver(owner="this-process")):
        retries = on_retry()
        with PostgresServer() as server:
            dsn = server.create_database("stopped")
            seen: dict[str, Any] = {}

            async def stop_the_server() -> None:
                seen["before"] = await saver.load("stopped")
                await asyncio.to_thread(server.stop)

            three, ran = three_steps(stop_the_server)
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                dsn, open=False, timeout=1, kwargs={"autocommit": True}
            )
            await pool.open(wait=True)
            async with pool, PostgresSaver(pool, retry_attempts=2) as saver:
                await saver.setup()
                partials: list[Any] = []
                with pytest.raises(StorageError) as caught:
                    await consume(three(None, run_id="stopped", checkpointer=saver), partials)
            assert caught.value.operation == "save"
            assert isinstance(caught.value.error, psycopg.OperationalError)

            server.start()
            async with PostgresSaver(dsn) as restarted:
                assert await restarted.load("stopped") == seen["before"]
                assert seen["before"].status == "running"
                opts: dict[str, Any] = {"run_id": "stopped", "checkpointer": restarted}
                partials += [event.partial async for event in three(None, **opts)]
                assert await restarted.load("stopped") is None
        assert partials == ["first", "second", "third"]
        assert ran == {"first": 1, "second": 2, "third": 1}
        assert len(retries.retries) == 1  # the lost connection; the pool's timeout is final


class LosingPool:
    """A pool that fails the next statement with a lost connection: after running it on
    the server (`lose`: its answer is lost between COMMIT and reply), or after running
    `instead` (another worker's write; the statement itself never arrived)."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.name = "losing"
        self.lose = False
        self.instead: Any = None

    async def check(self) -> None:
        await self.pool.check()

    @contextlib.asynccontextmanager
    async def connection(self) -> Any:
        if not (self.lose or self.instead):
            async with self.pool.connection() as connection:
                yield connection
            return
        yield self

    async def execute(self, query: Any, parameters: Any) -> Any:
        if self.lose:
            async with self.pool.connection() as connection:
                await connection.execute(query, parameters)
        else:
            await self.instead()
        self.lose, self.instead = False, None
        raise psycopg.OperationalError("server closed the connection unexpectedly")


def _write(*entries: bytes, delivered: int = 0) -> CheckpointWrite:
    return CheckpointWrite("lost", "task", "running", delivered, (), b"state", entries)


async def test_postgres_a_write_whose_answer_was_lost_is_not_applied_twice(
    postgres_dsn: str, on_retry: Any
) -> None:
    retries = on_retry()
    async with AsyncConnectionPool(postgres_dsn, kwargs={"autocommit": True}) as pool:
        losing = LosingPool(pool)
        saver = PostgresSaver(losing)  # type: ignore[arg-type]
        other = PostgresSaver(pool)
        await saver.setup()
        losing.lose = True
        assert await saver.save(_write(b"input"), None) == 1
        losing.lose = True
        assert await saver.save(_write(b"step"), 1) == 2
        losing.lose = True
        assert await saver.mark_delivered("lost", 1, 2) == 3
        stored = await saver.load("lost")
        assert stored is not None
        assert (stored.version, stored.delivered, stored.entries) == (3, 1, (b"input", b"step"))

        # The statement never arrived, and another worker wrote the run meanwhile.
        async def their_write() -> None:
            await other.save(_write(b"theirs", delivered=1), 3)

        losing.instead = their_write
        with pytest.raises(
            RunConflictError, match="it is at version 4, this worker read version 3"
        ):
            await saver.save(_write(b"mine", delivered=1), 3)

        async def their_mark() -> None:
            await other.mark_delivered("lost", 5, 4)

        losing.instead = their_mark
        with pytest.raises(
            RunConflictError, match="it is at version 5, this worker read version 4"
        ):
            await saver.mark_delivered("lost", 2, 4)
        stored = await saver.load("lost")
        assert stored is not None
        assert (stored.version, stored.delivered) == (5, 5)
        assert stored.entries == (b"input", b"step", b"theirs")

        losing.lose = True
        await saver.delete("lost")
        assert await saver.load("lost") is None
    assert len(retries.retries) == 6
