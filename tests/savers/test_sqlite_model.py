"""SqliteSaver against MemorySaver as a model, on random bursts of concurrent writes.

Each burst is started at once with `asyncio.gather`, so the writer thread commits it in
groups; the jobs reach the thread in the order they were started, so every result
(a new version or a conflict) and the final state must match running the same calls one
by one on the in-memory saver.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_tasks.errors import RunConflictError
from tiny_tasks.savers import MemorySaver, SqliteSaver
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite

RUN_IDS = ("run-a", "run-b")

calls = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(RUN_IDS), st.integers(0, 2)),
    st.tuples(
        st.just("save"),
        st.sampled_from(RUN_IDS),
        st.integers(1, 6),
        st.integers(0, 2),
        st.sampled_from(["running", "paused", "done"]),
    ),
    st.tuples(st.just("mark"), st.sampled_from(RUN_IDS), st.integers(1, 6), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.sampled_from(RUN_IDS)),
    st.tuples(st.just("load"), st.sampled_from(RUN_IDS)),
)


def _invoke(saver: Any, call: tuple[Any, ...], number: int) -> Any:
    kind, run_id = call[0], call[1]
    entries = tuple(f"{number}.{n}".encode() for n in range(call[-1] if kind == "create" else 0))
    if kind == "create":
        write = CheckpointWrite(run_id, "task", "running", 0, (), b"created", entries)
        return saver.save(write, None)
    if kind == "save":
        _, _, version, count, status = call
        entries = tuple(f"{number}.{n}".encode() for n in range(count))
        write = CheckpointWrite(run_id, "task", status, number, (f"p{number}",), b"s", entries)
        return saver.save(write, version)
    if kind == "mark":
        return saver.mark_delivered(run_id, call[3], call[2])
    if kind == "delete":
        return saver.delete(run_id)
    return saver.load(run_id)


def _comparable(result: Any) -> Any:
    """A result without its timestamps, with conflicts reduced to their message."""
    if isinstance(result, RunConflictError):
        return ("conflict", str(result))
    if isinstance(result, Checkpoint):
        fields = (result.run_id, result.version, result.task_name, result.status)
        return (*fields, result.delivered, result.pending, result.state, result.entries)
    return result


async def _compare(bursts: list[list[tuple[Any, ...]]], path: Path) -> None:
    model = MemorySaver()
    async with SqliteSaver(path) as saver:
        number = 0
        for burst in bursts:
            expected: list[Any] = []
            for call in burst:
                try:
                    expected.append(_invoke(model, call, number + len(expected)))
                except RunConflictError as conflict:
                    expected.append(conflict)
            started = [_invoke(saver, call, number + n) for n, call in enumerate(burst)]
            actual = await asyncio.gather(*started, return_exceptions=True)
            number += len(burst)
            assert [_comparable(result) for result in actual] == [
                _comparable(result) for result in expected
            ], burst
        for run_id in RUN_IDS:
            assert _comparable(await saver.load(run_id)) == _comparable(model.load(run_id))
        listed = [info.run_id for info in await saver.list_runs()]
        assert listed == [info.run_id for info in model.list_runs()]


@settings(max_examples=60, deadline=None)
@given(bursts=st.lists(st.lists(calls, min_size=1, max_size=12), min_size=1, max_size=6))
def test_concurrent_bursts_behave_like_the_same_calls_one_by_one(
    bursts: list[list[tuple[Any, ...]]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_compare(bursts, Path(folder) / "model.db"))
