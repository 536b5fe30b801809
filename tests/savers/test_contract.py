"""The checkpointer contract, run against every saver (memory, documented dict, SQLite,
PostgreSQL), and the conformance checks' own ability to catch broken savers."""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dict_saver import DictSaver
from saver_kinds import SAVER_KINDS, make_saver

from tiny_tasks.savers import MemorySaver, base
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite, RunInfo
from tiny_tasks.savers.conformance import (
    CHECKS,
    check_bytes_round_trip,
    check_create_and_load,
    check_entries_append_in_order,
    check_list_runs_filters_and_order,
    check_mark_delivered,
    check_saver,
    check_stale_version_conflicts,
)


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__ for check in CHECKS])
async def test_contract(saver: Any, check: Any) -> None:
    await check(saver)


@pytest.mark.parametrize("kind", SAVER_KINDS)
async def test_check_saver_runs_every_check_on_a_fresh_saver(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    made: list[Any] = []

    async def fresh() -> Any:
        # Each postgres saver needs its own database: the fixture gives one per test,
        # so give every check a fresh schema by deleting what the last one stored.
        saver = await make_saver(kind, request, tmp_path)
        for info in await _resolve(saver.list_runs(limit=1000)):
            await _resolve(saver.delete(info.run_id))
        made.append(saver)
        return saver

    await check_saver(fresh)

    assert len(made) == len(CHECKS)
    assert len({id(saver) for saver in made}) == len(CHECKS)


def test_the_documented_dict_saver_is_copied_verbatim() -> None:
    docstring = base.__doc__ or ""
    documented = textwrap.dedent(docstring[docstring.index("    class DictSaver") :]).strip()
    assert inspect.getsource(DictSaver).strip() == documented


async def test_check_saver_accepts_async_savers_and_async_factories() -> None:
    closed: list[str] = []

    class AsyncMemorySaver:
        """MemorySaver behind `async def` methods, with an async `aclose`."""

        def __init__(self) -> None:
            self.inner = MemorySaver()

        async def load(self, run_id: str) -> Checkpoint | None:
            return self.inner.load(run_id)

        async def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
            return self.inner.save(write, expected_version)

        async def mark_delivered(self, run_id: str, delivered: int, version: int) -> int:
            return self.inner.mark_delivered(run_id, delivered, version)

        async def delete(self, run_id: str) -> None:
            self.inner.delete(run_id)

        async def list_runs(self, **filters: Any) -> list[RunInfo]:
            return self.inner.list_runs(**filters)

        async def aclose(self) -> None:
            closed.append("closed")

    async def factory() -> AsyncMemorySaver:
        return AsyncMemorySaver()

    await check_saver(factory)

    assert closed == ["closed"] * len(CHECKS)


class NoCompareAndSwap(DictSaver):
    """Ignores the version it is given: the lost-update bug the contract exists for."""

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        old = self.runs.get(write.run_id)
        self.runs[write.run_id] = write.apply(old)
        return self.runs[write.run_id].version


class OverwritesEntries(DictSaver):
    """Replaces the journal on every write instead of appending to it."""

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        version = super().save(write, expected_version)
        self.runs[write.run_id] = replace(self.runs[write.run_id], entries=write.entries)
        return version


class ListsOldestFirst(DictSaver):
    """Lists runs in creation order instead of newest first."""

    def list_runs(self, **filters: Any) -> list[RunInfo]:
        return list(reversed(super().list_runs(**filters)))


class ForgetsToBumpTheVersion(MemorySaver):
    """`mark_delivered` that records the count but keeps the version."""

    def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        super().mark_delivered(run_id, delivered, expected_version)
        return expected_version


class MangleBytes(DictSaver):
    """Stores state as text, turning bytes into their repr (a classic codec bug)."""

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        mangled = replace(write, state=repr(write.state).encode())
        return super().save(mangled, expected_version)


class NaiveTimestamps(DictSaver):
    """Stores timestamps in milliseconds."""

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        version = super().save(write, expected_version)
        run = self.runs[write.run_id]
        self.runs[write.run_id] = replace(
            run, created_at=run.created_at * 1000, updated_at=run.updated_at * 1000
        )
        return version


@pytest.mark.parametrize(
    ("broken", "check", "message"),
    [
        (
            NoCompareAndSwap,
            check_stale_version_conflicts,
            "save at version 1: expected RunConflictError, but it returned 3",
        ),
        (
            OverwritesEntries,
            check_entries_append_in_order,
            r"entries after update 0: expected \(b'0', b'1', b'2'\), got \(b'2',\)",
        ),
        (
            ListsOldestFirst,
            check_list_runs_filters_and_order,
            r"list_runs\(\): expected \[RunInfo\(run_id='run-5'",
        ),
        (
            ForgetsToBumpTheVersion,
            check_mark_delivered,
            "version returned by mark_delivered: expected 2, got 1",
        ),
        (
            MangleBytes,
            check_bytes_round_trip,
            r"^the binary run differs: state expected b'\\x00\\x01\\x02.*\.\.\. \(2943 "
            r"characters\), got b'b\\'\\\\x00.*\.\.\. \(3608 characters\)$",
        ),
        (NaiveTimestamps, check_create_and_load, r"created_at \d+\.\d+ is not the time"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
async def test_broken_savers_fail_with_a_clear_message(
    broken: type[Any], check: Any, message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        await check(broken())


async def test_check_saver_names_the_failing_check_and_saver() -> None:
    with pytest.raises(
        AssertionError,
        match=r"^check_double_create_conflicts failed for <test_contract\.NoCompareAndSwap "
        r"object at 0x[0-9a-f]+>: creating an existing run: expected RunConflictError, "
        r"but it returned 2$",
    ):
        await check_saver(NoCompareAndSwap)


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
