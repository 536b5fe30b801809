"""PostgresSaver beyond the shared contract: setup and migrations, pools, the optional
dependency, lifecycle; and the throwaway server helper the tests run on."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from postgres_server import PostgresServer
from psycopg_pool import AsyncConnectionPool

from tiny_tasks import use_clock
from tiny_tasks.errors import RunConflictError, SaverConnectionError, TinyTasksError
from tiny_tasks.savers import PostgresSaver, _postgres_schema, postgres
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite
from tiny_tasks.testing import ManualClock


def _write(run_id: str, *entries: bytes) -> CheckpointWrite:
    return CheckpointWrite(run_id, "task", "running", 0, (), b"state", entries)


async def _fetch(dsn: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(query.encode())
        return await cursor.fetchall()


async def test_setup_is_idempotent_and_concurrent_calls_are_safe(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as first, PostgresSaver(postgres_dsn) as second:
        await asyncio.gather(first.setup(), second.setup(), first.setup())
        await second.setup()

    versions = await _fetch(postgres_dsn, "SELECT version FROM tiny_tasks_schema ORDER BY 1")
    assert versions == [(1,), (2,), (3,)]
    tables = await _fetch(
        postgres_dsn,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    )
    assert tables == [
        ("tiny_tasks_entries",),
        ("tiny_tasks_messages",),
        ("tiny_tasks_partials",),
        ("tiny_tasks_runs",),
        ("tiny_tasks_schema",),
    ]


async def test_using_a_saver_before_setup_says_to_call_setup(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as saver:
        with pytest.raises(
            TinyTasksError,
            match=r"^the tiny-tasks tables are missing from this database \(relation "
            r'"tiny_tasks_runs" does not exist\); call await saver.setup\(\) once to create them$',
        ):
            await saver.mark_delivered("run", 1, 1)


async def test_setup_applies_new_migrations_to_an_older_schema(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresSaver(postgres_dsn) as saver:
        await saver.setup()
        await saver.save(_write("kept", b"entry"), None)
    version_4 = ("ALTER TABLE tiny_tasks_runs ADD COLUMN owner text",)
    monkeypatch.setattr(_postgres_schema, "MIGRATIONS", (*_postgres_schema.MIGRATIONS, version_4))
    monkeypatch.setattr(_postgres_schema, "LATEST_VERSION", 4)

    async with PostgresSaver(postgres_dsn) as saver:
        await saver.setup()
        stored = await saver.load("kept")

    assert stored is not None
    assert stored.entries == (b"entry",)
    versions = await _fetch(postgres_dsn, "SELECT version FROM tiny_tasks_schema ORDER BY 1")
    assert versions == [(1,), (2,), (3,), (4,)]
    assert await _fetch(postgres_dsn, "SELECT owner FROM tiny_tasks_runs") == [(None,)]


async def _old_schema(dsn: str, version: int) -> None:
    """A database as tiny-tasks at schema `version` left it: a running run (its process
    died) and a paused one, written with that version's columns."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute(
            "CREATE TABLE tiny_tasks_schema (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for number, statements in enumerate(_postgres_schema.MIGRATIONS[:version], 1):
            for statement in statements:
                await connection.execute(statement.encode())
            await connection.execute(
                "INSERT INTO tiny_tasks_schema (version) VALUES (%s)", (number,)
            )
        for run_id, status, pending in [
            ("crashed", "running", []),
            ("paused", "paused", ["task/interrupt#0"]),
        ]:
            await connection.execute(
                "INSERT INTO tiny_tasks_runs VALUES (%s, 'task', %s, 2, 3, %s, 'st', 1, 100, 200)",
                (run_id, status, pending),
            )
            await connection.execute(
                "INSERT INTO tiny_tasks_entries VALUES (%s, 0, 'e')", (run_id,)
            )


@pytest.mark.parametrize("version", [1, 2])
async def test_an_older_schema_is_migrated_to_the_runtime_schema(
    postgres_dsn: str, version: int
) -> None:
    await _old_schema(postgres_dsn, version)

    async with PostgresSaver(postgres_dsn) as saver:
        await saver.setup()
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
    due = await _fetch(postgres_dsn, "SELECT run_id, due_at FROM tiny_tasks_runs ORDER BY 1")
    assert due == [("crashed", 400.0), ("paused", None)]
    versions = await _fetch(postgres_dsn, "SELECT version FROM tiny_tasks_schema ORDER BY 1")
    assert versions == [(1,), (2,), (3,)]


async def test_a_schema_from_a_newer_version_is_refused(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as saver:
        await saver.setup()
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as connection:
        await connection.execute("INSERT INTO tiny_tasks_schema (version) VALUES (4)")

    async with PostgresSaver(postgres_dsn) as saver:
        with pytest.raises(TinyTasksError, match="has checkpoint schema version 4, but this"):
            await saver.setup()


async def test_a_saver_on_your_own_pool_leaves_it_open(postgres_dsn: str) -> None:
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        saver = PostgresSaver(pool)
        await saver.setup()
        await saver.save(_write("run", b"entry"), None)
        assert await saver.mark_delivered("run", 3, 1) == 2
        with pytest.raises(RunConflictError):
            await saver.mark_delivered("run", 4, 1)
        await saver.close()

        assert saver.pool is pool
        assert not pool.closed
        async with pool.connection() as connection:
            cursor = await connection.execute("SELECT version, delivered FROM tiny_tasks_runs")
            assert await cursor.fetchall() == [(2, 3)]


async def test_close_is_idempotent_and_later_calls_say_the_saver_is_closed(
    postgres_dsn: str,
) -> None:
    saver = PostgresSaver(postgres_dsn, max_size=2)
    await saver.setup()
    await saver.close()
    await saver.close()

    assert saver.pool.closed
    assert repr(saver) == "PostgresSaver(pool='tiny-tasks', closed)"
    with pytest.raises(RuntimeError, match=r"is closed; create a new PostgresSaver"):
        await saver.load("run")


async def test_list_runs_refuses_negative_pages(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as saver:
        with pytest.raises(ValueError, match="limit and offset must be >= 0, not 10 and -1"):
            await saver.list_runs(limit=10, offset=-1)


def test_without_psycopg_the_saver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("psycopg", "psycopg_pool"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import psycopg` fail

    with pytest.raises(ImportError, match=r"pip install 'tiny-tasks\[postgres\]'"):
        PostgresSaver("dbname=anything")


def test_the_server_helper_restarts_with_its_data_and_cleans_up(tmp_path: Path) -> None:
    with PostgresServer(fsync=True) as server:
        dsn = server.create_database("kept")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE t (x int)")
            connection.execute("INSERT INTO t VALUES (42)")
        server.stop(mode="immediate")  # a crash: no shutdown checkpoint
        assert not server.running
        server.start()
        with psycopg.connect(dsn) as connection:
            assert connection.execute("SELECT x FROM t").fetchall() == [(42,)]
        directory = server.directory
    assert not directory.exists()


def test_a_missing_postgres_binary_fails_loudly(tmp_path: Path) -> None:
    server = PostgresServer(bin_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"PostgreSQL binary .*initdb is missing"):
        server.start()
    server.cleanup()
    assert not server.directory.exists()


@pytest.mark.parametrize("wrong", ["dbname=no_such_database", "host=/no/such/socket/dir"])
async def test_a_wrong_connection_string_fails_at_once_with_the_servers_error(
    postgres_server: PostgresServer, wrong: str
) -> None:
    # The pool alone would retry in the background for 30 s and then raise PoolTimeout,
    # with the real cause only in a log line.
    key = wrong.split("=")[0]
    base = {part.split("=")[0]: part for part in postgres_server.dsn().split() if "=" in part}
    base[key] = wrong
    conninfo = " ".join([*base.values(), "password=hunter2"])
    saver = PostgresSaver(conninfo)
    for call in (saver.setup, lambda: saver.load("r1")):
        with pytest.raises(SaverConnectionError) as caught:
            await call()
        message = str(caught.value)
        assert "hunter2" not in message
        assert wrong in message  # the target, named
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        if key == "dbname":
            assert 'database "no_such_database" does not exist' in message
        else:
            assert "/no/such/socket/dir/.s.PGSQL" in message
            assert "No such file or directory" in message
    await saver.close()


def test_a_connection_string_that_cannot_be_parsed_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid PostgreSQL connection string"):
        PostgresSaver("not a connection string")
    with pytest.raises(ValueError, match="connect_timeout"):
        PostgresSaver("dbname=x", connect_timeout=0)


async def test_a_claim_reads_the_partial_index_of_claimable_runs(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as saver:
        await saver.setup()
        await saver.save(CheckpointWrite("due", "task", "queued", 0, (), b""), None)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as connection:
        # 200,000 runs paused without a deadline: never claimable, not in the index.
        await connection.execute(
            "INSERT INTO tiny_tasks_runs (run_id, task_name, status, version, delivered,"
            " pending, state, entry_count, created_at, updated_at)"
            " SELECT 'paused-' || n, 'task', 'paused', 1, 0, '{}', '', 0, n, n"
            " FROM generate_series(1, 200000) AS n"
        )
        await connection.execute("ANALYZE tiny_tasks_runs")
        parameters = {"owner": "w", "names": ["task"], "now": 1e12, "expires": 2e12, "limit": 10}
        query = psycopg.ClientCursor(connection).mogrify(postgres._CLAIM, parameters)
        cursor = await connection.execute(("EXPLAIN " + query).encode())
        plan = "\n".join(row[0] for row in await cursor.fetchall())

    # An index scan or a bitmap index scan, as the planner likes: the partial index either
    # way, never a scan of the whole table.
    assert "Scan using tiny_tasks_runs_due on tiny_tasks_runs" in plan or (
        "Bitmap Index Scan on tiny_tasks_runs_due" in plan
    ), plan
    assert "Seq Scan" not in plan, plan
    async with PostgresSaver(postgres_dsn) as saver:
        claimed = await saver.claim_runs("w", ["task"], time.time() + 120, 2e12, 10)
    assert [run.run_id for run in claimed] == ["due"]


async def test_wait_for_due_hears_submits_messages_and_cancels(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as worker, PostgresSaver(postgres_dsn) as client:
        await worker.setup()
        with use_clock(ManualClock()) as clock:
            for action in ("submit", "send", "cancel", "nothing"):
                waiting = asyncio.ensure_future(worker.wait_for_due(60.0))
                await clock.wait_for_sleepers(1)  # listening, and its timeout running
                if action == "submit":
                    await client.save(CheckpointWrite("r", "task", "queued", 0, (), b""), None)
                elif action == "send":
                    await client.save(CheckpointWrite("s", "task", "sleeping", 0, (), b""), None)
                    assert await client.send_message("s", "topic", b"x", clock.now()) == 1
                elif action == "cancel":
                    await client.request_cancel("r", clock.now())
                else:
                    await clock.advance(60.0)
                async with asyncio.timeout(20):  # a notification that never comes: hung
                    assert await waiting is (action != "nothing"), action


async def test_wait_for_due_only_sleeps_where_it_cannot_listen(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise psycopg.OperationalError("LISTEN is not allowed here")

    async with PostgresSaver(postgres_dsn) as saver:
        await saver.setup()
        monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse)
        with use_clock(ManualClock()) as clock:
            waiting = asyncio.ensure_future(saver.wait_for_due(5.0))
            await clock.wait_for_sleepers(1)
            await saver.save(CheckpointWrite("r", "task", "queued", 0, (), b""), None)
            assert not waiting.done()
            await clock.advance(5.0)
            assert await waiting is False


async def test_durability_process_turns_synchronous_commit_off_on_the_savers_connections(
    postgres_dsn: str,
) -> None:
    settings = {}
    for durability in ("full", "process"):
        # The connection string's own options are kept beside the added one.
        dsn = f"{postgres_dsn} options='-c application_name=tt-{durability}'"
        async with PostgresSaver(dsn, durability=durability) as saver:
            await saver.setup()
            assert saver.durability == durability
            assert await saver.save(_write(f"run-{durability}", b"entry"), None) == 1
            async with saver.pool.connection() as connection:
                cursor = await connection.execute(
                    "SELECT current_setting('synchronous_commit'),"
                    " current_setting('application_name')"
                )
                settings[durability] = await cursor.fetchone()
    # "full" leaves the server's own setting (this test server's is off, for speed).
    [(server_default,)] = await _fetch(postgres_dsn, "SHOW synchronous_commit")
    assert settings == {"full": (server_default, "tt-full"), "process": ("off", "tt-process")}


async def test_an_unknown_durability_or_process_durability_on_your_own_pool_is_refused(
    postgres_dsn: str,
) -> None:
    with pytest.raises(ValueError, match="durability must be one of 'full', 'process', not 'fast'"):
        PostgresSaver(postgres_dsn, durability="fast")
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1, open=False) as pool:
        with pytest.raises(ValueError, match="durability='process' needs a connection string"):
            PostgresSaver(pool, durability="process")
