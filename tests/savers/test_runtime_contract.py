"""The runtime protocol (`RuntimeSaver`: leases, claims, cancel requests, messages,
pruning) against every saver, through the conformance checks a custom saver's author
runs too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dict_saver import DictSaver

from tiny_tasks import Interrupt, interrupt, step, task
from tiny_tasks.savers import MemorySaver, PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import (
    Checkpoint,
    CheckpointWrite,
    Mailbox,
    RunInfo,
    RuntimeSaver,
    check_version,
    filter_runs,
)
from tiny_tasks.savers.conformance import RUNTIME_CHECKS, check_runtime_saver


@pytest.mark.parametrize("check", RUNTIME_CHECKS, ids=[check.__name__ for check in RUNTIME_CHECKS])
async def test_runtime_contract(saver: Any, check: Any) -> None:
    await check(saver)


async def test_check_runtime_saver_runs_every_check_on_a_fresh_saver() -> None:
    made: list[MemorySaver] = []

    def fresh() -> MemorySaver:
        made.append(MemorySaver())
        return made[-1]

    await check_runtime_saver(fresh)

    assert len(made) == len(RUNTIME_CHECKS)


async def test_check_runtime_saver_names_the_check_that_failed() -> None:
    class ForgetfulSaver(MemorySaver):
        """Its messages survive `delete`: a run created again would receive them."""

        def delete(self, run_id: str) -> None:
            with self._lock:
                mailbox, self._mailbox = self._mailbox, Mailbox()
            super().delete(run_id)
            self._mailbox = mailbox

    with pytest.raises(AssertionError, match=r"^check_prune failed for MemorySaver\(runs=\d+\): "):
        await check_runtime_saver(ForgetfulSaver)


def test_every_built_in_saver_has_the_runtime_protocol(tmp_path: Path) -> None:
    built_in = [MemorySaver(), DictSaver(), SqliteSaver(tmp_path / "runs.db")]
    built_in.append(PostgresSaver("dbname=unused"))  # no connection until first use
    assert [isinstance(saver, RuntimeSaver) for saver in built_in] == [True] * 4
    assert not isinstance(PlainSaver(), RuntimeSaver)
    built_in[2].close_sync()


class PlainSaver:
    """A custom saver written before the runtime: the four methods of `Checkpointer`."""

    def __init__(self) -> None:
        self.runs: dict[str, Checkpoint] = {}

    def load(self, run_id: str) -> Checkpoint | None:
        return self.runs.get(run_id)

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        old = self.runs.get(write.run_id)
        check_version(write.run_id, old, expected_version)
        self.runs[write.run_id] = write.apply(old)
        return self.runs[write.run_id].version

    def delete(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    def list_runs(self, **filters: Any) -> list[RunInfo]:
        return filter_runs(self.runs.values(), **filters)


@step
async def double(value: int) -> int:
    return value * 2


@task("plain_approval")
async def plain_approval(value: int) -> list[Any]:
    first = await double(value)
    answer = interrupt("approve?")
    return [first, answer, await double(first)]


async def test_a_saver_without_the_runtime_protocol_still_runs_tasks() -> None:
    saver = PlainSaver()

    stream = plain_approval(5, run_id="plain", checkpointer=saver)
    events = [event async for event in stream]
    paused = saver.load("plain")
    assert paused is not None
    assert (paused.status, paused.lease_owner, paused.wake_at) == ("paused", None, None)
    resumed = plain_approval.resume("yes", run_id="plain", checkpointer=saver)
    assert [event async for event in resumed] == []

    assert [intr for _, _, intr in events] == [Interrupt("approve?", "plain_approval/interrupt#1")]
    assert resumed.result == [10, "yes", 20]
    assert saver.load("plain") is None
