"""Real races between processes: compare-and-swap must let exactly one writer win.

Two spawned processes load the same run at the same version, meet at a barrier, and both
save; this repeats for `ROUNDS` rounds on one SQLite file and on one PostgreSQL
database. Every round must have exactly one winner and one `RunConflictError`, and the
run must hold exactly the winners' writes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import race_worker

from tiny_tasks.savers import PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import CheckpointWrite

ROUNDS = 50
OPENERS = 8
CONTEXT = multiprocessing.get_context("spawn")


def _run_children(target: Any, argument_lists: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Start one child per argument tuple (each ending in name, barrier, queue); collect."""
    barrier = CONTEXT.Barrier(len(argument_lists))
    results: Any = CONTEXT.Queue()
    children = [
        CONTEXT.Process(target=target, args=(*arguments, barrier, results))
        for arguments in argument_lists
    ]
    for child in children:
        child.start()
    try:
        collected = dict(results.get(timeout=120) for _ in children)
    finally:
        for child in children:
            child.join(timeout=60)
        results.close()
        results.join_thread()
    assert [child.exitcode for child in children] == [0] * len(children)
    return collected


async def _race(kind: str, target: str, saver: Any) -> None:
    await saver.setup()
    await saver.save(CheckpointWrite("raced", "race", "running", 0, (), b"start"), None)

    outcomes = await asyncio.to_thread(
        _run_children,
        race_worker.race,
        [(kind, target, "raced", ROUNDS, name) for name in ("first", "second")],
    )

    first, second = outcomes["first"], outcomes["second"]
    assert isinstance(first, list), first
    assert isinstance(second, list), second
    assert [version for version, _ in first] == list(range(1, ROUNDS + 1))
    assert [version for version, _ in second] == list(range(1, ROUNDS + 1))
    assert [won_a + won_b for (_, won_a), (_, won_b) in zip(first, second, strict=True)] == [
        1
    ] * ROUNDS
    wins = sum(won for _, won in first) + sum(won for _, won in second)
    conflicts = sum(not won for _, won in first) + sum(not won for _, won in second)
    assert (wins, conflicts) == (ROUNDS, ROUNDS)

    stored = await saver.load("raced")
    winners = [
        f"{'first' if won_first else 'second'}:{round_number}".encode()
        for round_number, (_, won_first) in enumerate(first)
    ]
    assert stored is not None
    assert stored.version == ROUNDS + 1
    assert stored.entries == tuple(winners)
    assert stored.state == winners[-1]


async def test_sqlite_compare_and_swap_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    async with SqliteSaver(path) as saver:
        await _race("sqlite", path, saver)


async def test_postgres_compare_and_swap_across_processes(postgres_dsn: str) -> None:
    async with PostgresSaver(postgres_dsn) as saver:
        await _race("postgres", postgres_dsn, saver)


CLAIMERS = 4
CLAIMED_RUNS = 150


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_processes_claiming_at_once_never_claim_the_same_run(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = (
        str(tmp_path / "claims.db") if kind == "sqlite" else request.getfixturevalue("postgres_dsn")
    )
    async with race_worker.open_saver(kind, target) as saver:
        await saver.setup()
        for index in range(CLAIMED_RUNS):
            write = CheckpointWrite(f"run-{index:03}", "claimed", "queued", 0, (), b"")
            await saver.save(write, None)
        await saver.save(CheckpointWrite("other", "other-task", "queued", 0, (), b""), None)

        claims = await asyncio.to_thread(
            _run_children,
            race_worker.claim_all,
            [(kind, target, f"claimer-{n}") for n in range(CLAIMERS)],
        )

        assert all(isinstance(claimed, list) for claimed in claims.values()), claims
        every = [run_id for claimed in claims.values() for run_id in claimed]
        assert sorted(every) == [f"run-{index:03}" for index in range(CLAIMED_RUNS)]
        for name, claimed in claims.items():
            for run_id in claimed:
                stored = await saver.load(run_id)
                assert stored is not None
                assert (stored.lease_owner, stored.version) == (name, 2)
        other = await saver.load("other")
        assert other is not None
        assert (other.lease_owner, other.version) == (None, 1)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_workers_resuming_one_paused_run_exactly_one_proceeds(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Through the engine: both processes call `resume` on the same paused run at once."""
    target = _target(kind, request, tmp_path / "runs.db")
    async with race_worker.open_saver(kind, target) as saver:
        await saver.setup()
        for round_number in range(ROUNDS):
            run_id = f"order-{round_number}"
            run = race_worker.approval(round_number, run_id=run_id, checkpointer=saver)
            assert [event.interrupt is not None async for event in run] == [True]
    charges = tmp_path / "charges.log"
    charges.write_text("")

    outcomes = await asyncio.to_thread(
        _run_children,
        race_worker.resume_race,
        [(kind, target, ROUNDS, name, str(charges)) for name in ("first", "second")],
    )

    first, second = outcomes["first"], outcomes["second"]
    assert isinstance(first, list), first
    assert isinstance(second, list), second
    winners: list[str] = []
    losers: Counter[str] = Counter()
    for round_number, both in enumerate(zip(first, second, strict=True)):
        finished = [n for n, (outcome, _) in enumerate(both) if outcome == "finished"]
        assert len(finished) == 1, both  # exactly one worker proceeds
        winner = ("first", "second")[finished[0]]
        assert both[finished[0]][1] == [
            f"approved by {winner}",
            f"receipt {round_number} by {winner}",
        ]
        loser_outcome, loser_partials = both[1 - finished[0]]
        # The loser lost the compare-and-swap on the answer, or loaded the run after the
        # winner had answered it (its lease live: RunBusyError, or it had finished);
        # either way it ran nothing and streamed nothing.
        assert loser_outcome in ("RunConflictError", "NoCheckpointError", "RunBusyError"), both
        assert loser_partials == []
        losers[loser_outcome] += 1
        winners.append(f"{round_number} {winner}")
    assert charges.read_text().splitlines() == winners  # one charge a round, by its winner
    assert losers["RunConflictError"] > 0  # the workers did overlap (50 of 50 when measured)
    async with race_worker.open_saver(kind, target) as saver:
        assert await saver.list_runs() == []  # every run finished and was deleted
    print(f"{kind}: {ROUNDS} resume races, {len(winners)} winners, losers {dict(losers)}")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_processes_creating_the_schema_at_once_all_succeed(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = _target(kind, request, tmp_path / "fresh.db")

    outcomes = await asyncio.to_thread(
        _run_children,
        race_worker.open_concurrently,
        [(kind, target, f"opener-{n}") for n in range(OPENERS)],
    )

    assert outcomes == {f"opener-{n}": "ok" for n in range(OPENERS)}
    saver = race_worker.open_saver(kind, target)
    async with saver:
        await saver.setup()
        assert await saver.list_runs() == []
    assert await _schema_versions(kind, target) == [1, 2, 3]


async def test_sqlite_processes_opening_new_files_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL can fail with "database is locked" without waiting
    # for the busy timeout; connect() must retry. The barrier sits right before each
    # connect, so the openers collide on every file.
    paths = [str(tmp_path / f"new-{n}.db") for n in range(20)]

    outcomes = await asyncio.to_thread(
        _run_children,
        race_worker.connect_concurrently,
        [(paths, f"opener-{n}") for n in range(OPENERS)],
    )

    assert outcomes == {f"opener-{n}": "ok" for n in range(OPENERS)}
    assert [await _schema_versions("sqlite", path) for path in paths] == [[1, 2, 3]] * len(paths)


def _target(kind: str, request: pytest.FixtureRequest, path: Path) -> str:
    """Where a saver of `kind` keeps its runs: the SQLite file `path` or a new database."""
    return str(path) if kind == "sqlite" else str(request.getfixturevalue("postgres_dsn"))


async def _schema_versions(kind: str, target: str) -> list[int]:
    if kind == "sqlite":
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(target)) as connection:
            rows = connection.execute("SELECT version FROM tiny_tasks_schema").fetchall()
    else:
        import psycopg

        async with await psycopg.AsyncConnection.connect(target) as connection:
            cursor = await connection.execute("SELECT version FROM tiny_tasks_schema")
            rows = await cursor.fetchall()
    return [version for (version,) in rows]
