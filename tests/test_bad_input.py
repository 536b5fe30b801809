"""Damaged checkpoints: bad bytes in a run's journal or state never crash the engine with
a stray exception, never lose the stored run, and name the run.

A paused run with a step, a finished child and an answered interrupt is stored; then
one entry of its journal (or its state blob) is damaged in the store: random bytes, a
truncation, an empty blob, well-formed JSON of the wrong shape, or one flipped bit.
Inspecting it, re-attaching to it and resuming it must raise a `TinyTasksError` that
names the run, or (for a flipped bit that still decodes) work on what it decodes to.
Damage that does not decode to a journal is refused before anything runs, and the stored
run is left exactly as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiny_tasks import (
    SerializationError,
    TaskContext,
    TinyTasksError,
    get_run,
    interrupt,
    list_runs,
    task,
)
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import Checkpoint

sys.path.insert(0, str(Path(__file__).parent / "savers"))

from dict_saver import DictSaver  # the documented custom saver

RUN_ID = "damaged-run"


@task("child")
async def child(value: int):  # type: ignore[no-untyped-def]
    yield value + 1
    yield value + 2


async def double(value: int) -> int:
    return value * 2


@task("damaged")
async def workflow(value: int, ctx: TaskContext):  # type: ignore[no-untyped-def]
    doubled = await ctx.step(double, value)
    yield doubled
    async for partial in child(doubled):
        yield partial
    yield interrupt("first?")
    yield interrupt("second?")


async def _paused_run() -> DictSaver:
    saver = DictSaver()
    async for _ in workflow(5, run_id=RUN_ID, checkpointer=saver):
        pass
    async for _ in workflow.resume("one", run_id=RUN_ID, checkpointer=saver):
        pass
    stored = saver.load(RUN_ID)
    assert stored is not None
    assert stored.status == "paused"
    return saver


WRONG_SHAPES = [
    b"null",
    b"[]",
    b"{}",
    b'"text"',
    b"12",
    b'{"k": "step"}',
    b'{"k": "answer", "s": 7}',
    b'{"k": "child", "s": "x", "p": 3}',
    b'{"k": "input"}',
    b'{"pending": 5}',
    b'{"pending": [[1]]}',
    b'{"pending": [["a", 1, 2]]}',
    b'{"k": "future-kind", "s": "x"}',
]


@st.composite
def damages(draw: st.DrawFn) -> tuple[str, Callable[[bytes], bytes]]:
    kind = draw(st.sampled_from(["random", "truncate", "flip", "shape", "empty"]))
    if kind == "random":
        junk = draw(st.binary(min_size=1, max_size=64))
        return kind, lambda _: junk
    if kind == "truncate":
        cut = draw(st.floats(0.0, 0.95))
        return kind, lambda raw: raw[: int(len(raw) * cut)]
    if kind == "flip":
        where, bit = draw(st.floats(0.0, 0.999)), draw(st.integers(0, 7))

        def flip(raw: bytes) -> bytes:
            index = int(len(raw) * where)
            return raw[:index] + bytes([raw[index] ^ (1 << bit)]) + raw[index + 1 :]

        return kind, flip
    if kind == "shape":
        shape = draw(st.sampled_from(WRONG_SHAPES))
        return kind, lambda _: shape
    return kind, lambda _: b""


def _damaged(stored: Checkpoint, target: int, damage: Callable[[bytes], bytes]) -> Checkpoint:
    """`stored` with entry `target` damaged, or its state blob when `target` is past them."""
    if target < len(stored.entries):
        entries = list(stored.entries)
        entries[target] = damage(entries[target])
        return dataclasses.replace(stored, entries=tuple(entries))
    return dataclasses.replace(stored, state=damage(stored.state))


async def _attempt(call: Callable[[], Any]) -> BaseException | None:
    try:
        await call()
    except TinyTasksError as error:
        return error
    return None


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def _check(target: int, kind: str, damage: Callable[[bytes], bytes]) -> None:
    """Damage the stored run, then inspect, re-attach and resume it."""
    saver = await _paused_run()
    saver.runs[RUN_ID] = before = _damaged(saver.runs[RUN_ID], target, damage)
    attempts = [
        lambda: get_run(saver, RUN_ID),
        lambda: list_runs(saver),
        lambda: _drain(workflow(5, run_id=RUN_ID, checkpointer=saver)),
        lambda: _drain(workflow.resume("two", run_id=RUN_ID, checkpointer=saver)),
    ]
    for attempt in attempts:
        error = await _attempt(attempt)
        stored = saver.load(RUN_ID)
        if error is not None:
            assert RUN_ID in str(error), error
        if kind != "flip":
            # Bytes that do not decode to a journal are refused before anything runs,
            # and the stored run is left exactly as it was.
            assert isinstance(error, SerializationError) or attempt is attempts[1], error
            assert stored == before
        elif stored is None:
            return  # the flipped bit decoded to valid data and the run finished


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.integers(0, 5), damage=damages())
def test_a_damaged_checkpoint_raises_a_named_error_and_stays_stored(
    target: int, damage: tuple[str, Callable[[bytes], bytes]]
) -> None:
    asyncio.run(_check(target, *damage))


@pytest.mark.parametrize("shape", WRONG_SHAPES)
@pytest.mark.parametrize("target", [0, 1, 2, 3, 4, 5])
def test_every_wrong_shape_in_every_place_is_refused_or_harmless(target: int, shape: bytes) -> None:
    asyncio.run(_check(target, "shape", lambda _: shape))


def test_the_damage_targets_cover_every_kind_of_entry_and_the_state() -> None:
    stored = asyncio.run(_paused_run()).load(RUN_ID)
    assert stored is not None
    assert [json.loads(entry)["k"] for entry in stored.entries] == [
        "input",
        "step",
        "child",
        "answer",
    ]
    assert json.loads(stored.state) == {"pending": [["damaged/interrupt#3", "second?"]]}


async def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    junk = bytes(range(256)) * 64
    path.write_bytes(junk)
    saver = SqliteSaver(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            await saver.load(RUN_ID)
    finally:
        await saver.close()
    assert path.read_bytes() == junk
