"""The checkpointer contract as code: run it against your own saver.

    from tiny_tasks.savers.conformance import check_saver

    async def test_my_saver() -> None:
        await check_saver(MySaver)        # a fresh saver per check

`check_saver(make_saver)` runs every check in `CHECKS`, each on a fresh saver from
`make_saver` (a callable returning a saver, or an awaitable of one), and closes that
saver afterwards if it has `close()` or `aclose()`. Each check is also public, so a
test suite can parametrise over `CHECKS` and report them one by one. A broken contract
raises `AssertionError` naming the check, the saver and what differed. Savers may be
plain or `async`; `mark_delivered` is checked when the saver has it, and the stream log
(`append_partial` and `load_partials`) when it has that.

Timestamps are checked loosely (`TIMESTAMP_SLACK` seconds around this machine's clock),
so a saver that uses its database server's clock passes too.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any, TypeVar

from ..errors import RunConflictError
from .base import Checkpoint, CheckpointWrite, RunStatus

__all__ = [
    "CHECKS",
    "TIMESTAMP_SLACK",
    "check_bytes_round_trip",
    "check_conflicts_change_nothing",
    "check_create_and_load",
    "check_delete",
    "check_double_create_conflicts",
    "check_entries_append_in_order",
    "check_list_runs_filters_and_order",
    "check_list_runs_pagination",
    "check_mark_delivered",
    "check_saver",
    "check_stale_version_conflicts",
    "check_stream_log",
    "check_update_of_missing_run_conflicts",
]

T = TypeVar("T")
Check = Callable[[Any], Awaitable[None]]

TIMESTAMP_SLACK = 120.0
"""Seconds a stored timestamp may differ from this machine's clock."""


async def _call(value: T | Awaitable[T]) -> T:
    """The value of a saver method's result, awaiting it if the method was `async`."""
    if inspect.isawaitable(value):
        return await value
    return value


def _write(
    run_id: str,
    *,
    task_name: str = "task",
    status: RunStatus = "running",
    delivered: int = 0,
    pending: tuple[str, ...] = (),
    state: bytes = b"",
    entries: tuple[bytes, ...] = (),
) -> CheckpointWrite:
    return CheckpointWrite(run_id, task_name, status, delivered, pending, state, entries)


def _expect_equal(actual: object, expected: object, what: str) -> None:
    if actual == expected:
        return
    if isinstance(actual, Checkpoint) and isinstance(expected, Checkpoint):
        differences = [
            f"{field.name} expected {_short(getattr(expected, field.name))}, "
            f"got {_short(getattr(actual, field.name))}"
            for field in fields(Checkpoint)
            if getattr(actual, field.name) != getattr(expected, field.name)
        ]
        raise AssertionError(f"{what} differs: {'; '.join(differences)}")
    raise AssertionError(f"{what}: expected {_short(expected)}, got {_short(actual)}")


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text)} characters)"


async def _load(saver: Any, run_id: str) -> Checkpoint:
    loaded = await _call(saver.load(run_id))
    if not isinstance(loaded, Checkpoint):
        raise AssertionError(f"load({run_id!r}) returned {loaded!r}, not a Checkpoint")
    return loaded


async def _expect_conflict(
    method: Callable[..., Any], args: tuple[Any, ...], run_id: str, what: str
) -> None:
    try:
        value = await _call(method(*args))  # a plain method raises here, before awaiting
    except RunConflictError as error:
        _expect_equal(error.run_id, run_id, f"{what}: RunConflictError.run_id")
        return
    raise AssertionError(f"{what}: expected RunConflictError, but it returned {value!r}")


def _expect_recent(stamp: object, before: float, after: float, what: str) -> None:
    if not isinstance(stamp, float):
        raise AssertionError(f"{what} must be a float of epoch seconds, got {stamp!r}")
    if not before - TIMESTAMP_SLACK <= stamp <= after + TIMESTAMP_SLACK:
        raise AssertionError(f"{what} {stamp!r} is not the time of the write ({before!r})")


async def check_create_and_load(saver: Any) -> None:
    """`save(write, None)` creates version 1; `load` returns every field as written."""
    before = time.time()
    write = _write(
        "run-1",
        task_name="summarise",
        status="paused",
        delivered=2,
        pending=("summarise/interrupt#0",),
        state=b"state-1",
        entries=(b"entry-0", b"entry-1"),
    )
    _expect_equal(await _call(saver.save(write, None)), 1, "version returned by creation")
    after = time.time()
    loaded = await _load(saver, "run-1")
    _expect_recent(loaded.created_at, before, after, "created_at")
    _expect_equal(loaded.updated_at, loaded.created_at, "updated_at of a new run")
    _expect_equal(loaded, write.apply(None, loaded.created_at), "the loaded checkpoint")
    _expect_equal(await _call(saver.load("run-2")), None, "load() of a run never saved")


async def check_double_create_conflicts(saver: Any) -> None:
    """Creating a run that exists raises `RunConflictError` and changes nothing."""
    await _call(saver.save(_write("run-1", state=b"first"), None))
    stored = await _load(saver, "run-1")
    second = _write("run-1", state=b"second", entries=(b"lost",))
    await _expect_conflict(saver.save, (second, None), "run-1", "creating an existing run")
    _expect_equal(await _load(saver, "run-1"), stored, "the run after a double create")


async def check_stale_version_conflicts(saver: Any) -> None:
    """A save naming any version but the stored one raises `RunConflictError`."""
    await _call(saver.save(_write("run-1", state=b"v1", entries=(b"a",)), None))
    version = await _call(saver.save(_write("run-1", state=b"v2", entries=(b"b",)), 1))
    _expect_equal(version, 2, "version returned by the first update")
    stored = await _load(saver, "run-1")
    for stale in (1, 3, 0):
        write = _write("run-1", state=b"stale", entries=(b"lost",))
        await _expect_conflict(saver.save, (write, stale), "run-1", f"save at version {stale}")
    _expect_equal(await _load(saver, "run-1"), stored, "the run after stale saves")
    _expect_equal(stored.entries, (b"a", b"b"), "entries after stale saves")


async def check_update_of_missing_run_conflicts(saver: Any) -> None:
    """Saving at a version a run that is not stored raises and creates nothing."""
    write = _write("run-1", state=b"orphan", entries=(b"x",))
    await _expect_conflict(saver.save, (write, 1), "run-1", "updating a missing run")
    _expect_equal(await _call(saver.load("run-1")), None, "load() after a failed update")


async def check_entries_append_in_order(saver: Any) -> None:
    """Entries are appended in order; the state and fields are replaced by each write."""
    version = await _call(saver.save(_write("run-1", entries=(b"0", b"1")), None))
    expected = [b"0", b"1"]
    for index, entries in enumerate([(b"2",), (), (b"3", b"4", b"5"), (b"6",)]):
        write = _write(
            "run-1",
            task_name="renamed" if index == 3 else "task",
            status="paused" if index % 2 else "running",
            delivered=index * 10,
            pending=tuple(f"p#{n}" for n in range(index)),
            state=f"state-{index}".encode(),
            entries=entries,
        )
        before = await _load(saver, "run-1")
        version = await _call(saver.save(write, version))
        expected.extend(entries)
        loaded = await _load(saver, "run-1")
        _expect_equal(loaded.version, index + 2, f"version after update {index}")
        _expect_equal(loaded.entries, tuple(expected), f"entries after update {index}")
        _expect_equal(
            loaded, write.apply(before, loaded.updated_at), f"the run after update {index}"
        )
        if loaded.updated_at < before.updated_at:
            raise AssertionError(f"updated_at went back from {before.updated_at!r}")


async def check_mark_delivered(saver: Any) -> None:
    """`mark_delivered` sets `delivered`, bumps the version and keeps everything else."""
    if not hasattr(saver, "mark_delivered"):
        return  # optional in the protocol
    write = _write("run-1", pending=("p#0",), state=b"state", entries=(b"e",))
    await _call(saver.save(write, None))
    before = await _load(saver, "run-1")
    for delivered, version in ((1, 1), (2, 2), (2**40, 3)):
        new = await _call(saver.mark_delivered("run-1", delivered, version))
        _expect_equal(new, version + 1, "version returned by mark_delivered")
    loaded = await _load(saver, "run-1")
    _expect_equal(loaded.version, 4, "version after three mark_delivered calls")
    _expect_equal(loaded.delivered, 2**40, "delivered after mark_delivered")
    unchanged = (loaded.task_name, loaded.status, loaded.pending, loaded.state, loaded.entries)
    _expect_equal(
        unchanged,
        (before.task_name, before.status, before.pending, before.state, before.entries),
        "fields mark_delivered must keep",
    )
    _expect_equal(loaded.created_at, before.created_at, "created_at after mark_delivered")
    if loaded.updated_at < before.updated_at:
        raise AssertionError("mark_delivered moved updated_at back in time")
    await _expect_conflict(saver.mark_delivered, ("run-1", 9, 3), "run-1", "stale mark_delivered")
    await _expect_conflict(
        saver.mark_delivered, ("run-2", 9, 1), "run-2", "mark_delivered of a missing run"
    )
    _expect_equal(await _load(saver, "run-1"), loaded, "the run after a stale mark_delivered")
    version = await _call(saver.save(_write("run-1", entries=(b"f",)), 4))
    _expect_equal(version, 5, "version of a save after mark_delivered")
    _expect_equal((await _load(saver, "run-1")).entries, (b"e", b"f"), "entries after it")


async def _partials(saver: Any, run_id: str, **bounds: Any) -> list[tuple[int, bytes]]:
    found = await _call(saver.load_partials(run_id, **bounds))
    if type(found) is not list or any(
        type(row) is not tuple or len(row) != 2 or type(row[1]) is not bytes for row in found
    ):
        raise AssertionError(f"load_partials must return a list of (seq, bytes), got {found!r}")
    return [(int(seq), data) for seq, data in found]


async def check_stream_log(saver: Any) -> None:
    """`append_partial` stores partial `seq`, sets `delivered` to `seq + 1` and bumps the
    version; `load_partials` reads the log below `delivered`, from any offset; an append
    at an earlier position, or a save that lowers `delivered`, cuts the log there."""
    if not hasattr(saver, "append_partial"):
        return  # optional in the protocol
    write = _write("run-1", pending=("p#0",), state=b"state", entries=(b"e",))
    await _call(saver.save(write, None))
    before = await _load(saver, "run-1")
    _expect_equal(await _partials(saver, "run-1"), [], "load_partials() of a new run")
    _expect_equal(await _partials(saver, "missing"), [], "load_partials() of a missing run")
    data = [b"", b"\x00", bytes(range(256)), "ünï 'q' %s ?".encode()]
    for seq, item in enumerate(data):
        new = await _call(saver.append_partial("run-1", seq, item, seq + 1))
        _expect_equal(new, seq + 2, "version returned by append_partial")
    loaded = await _load(saver, "run-1")
    _expect_equal((loaded.version, loaded.delivered), (5, 4), "version, delivered after four")
    kept = (loaded.task_name, loaded.status, loaded.pending, loaded.state, loaded.entries)
    _expect_equal(
        kept,
        (before.task_name, before.status, before.pending, before.state, before.entries),
        "fields append_partial must keep",
    )
    rows = list(enumerate(data))
    _expect_equal(await _partials(saver, "run-1"), rows, "the stream log")
    _expect_equal(await _partials(saver, "run-1", after=1), rows[2:], "load_partials(after=1)")
    _expect_equal(await _partials(saver, "run-1", limit=2), rows[:2], "load_partials(limit=2)")
    _expect_equal(
        await _partials(saver, "run-1", after=0, limit=1), rows[1:2], "after=0, limit=1"
    )
    _expect_equal(await _partials(saver, "run-1", limit=0), [], "load_partials(limit=0)")
    _expect_equal(await _partials(saver, "run-1", after=3), [], "load_partials(after=3)")

    await _expect_conflict(
        saver.append_partial, ("run-1", 4, b"x", 4), "run-1", "stale append_partial"
    )
    await _expect_conflict(
        saver.append_partial, ("run-2", 0, b"x", 1), "run-2", "append_partial of a missing run"
    )
    _expect_equal(await _load(saver, "run-1"), loaded, "the run after a stale append_partial")
    _expect_equal(await _partials(saver, "run-1"), rows, "the log after a stale append_partial")

    # A re-run that differs from partial 2 on: the log is cut there and continues.
    _expect_equal(await _call(saver.append_partial("run-1", 2, b"new", 5)), 6, "rewrite")
    rows = [*rows[:2], (2, b"new")]
    _expect_equal(await _partials(saver, "run-1"), rows, "the log rewritten from 2")
    _expect_equal((await _load(saver, "run-1")).delivered, 3, "delivered after the rewrite")
    # A write that lowers `delivered` (a shorter re-run pausing) cuts the log there:
    # raising it again later (a count-only write) brings nothing back.
    await _call(saver.save(_write("run-1", status="paused", delivered=1), 6))
    _expect_equal(await _partials(saver, "run-1"), rows[:1], "the log after delivered=1")
    await _call(saver.save(_write("run-1", delivered=3), 7))
    _expect_equal(await _partials(saver, "run-1"), rows[:1], "the log after delivered 1, 3")
    _expect_equal(await _call(saver.append_partial("run-1", 1, b"one", 8)), 9, "append at 1")
    _expect_equal(await _partials(saver, "run-1"), [rows[0], (1, b"one")], "the log at 2")
    # Positions counted but not stored (an attempt with a delivery mode that keeps no
    # log) are missing from the log, not filled with anything.
    await _call(saver.save(_write("run-1", delivered=4), 9))
    _expect_equal(await _call(saver.append_partial("run-1", 4, b"four", 10)), 11, "append at 4")
    _expect_equal(
        await _partials(saver, "run-1"),
        [rows[0], (1, b"one"), (4, b"four")],
        "the log with positions 2 and 3 only counted",
    )
    stored = await _load(saver, "run-1")
    _expect_equal((stored.delivered, stored.entries), (5, (b"e",)), "delivered and entries")

    await _call(saver.delete("run-1"))
    _expect_equal(await _partials(saver, "run-1"), [], "load_partials() after delete")
    await _call(saver.save(_write("run-1", delivered=3), None))
    _expect_equal(await _partials(saver, "run-1"), [], "load_partials() of a re-created run")


async def check_conflicts_change_nothing(saver: Any) -> None:
    """Conflicting writes to one run leave it, and every other run, exactly as stored."""
    await _call(saver.save(_write("run-1", state=b"one", entries=(b"1",)), None))
    await _call(saver.save(_write("run-2", state=b"two", entries=(b"2",)), None))
    await _call(saver.save(_write("run-2", state=b"two'", entries=(b"2'",)), 1))
    runs = [await _load(saver, "run-1"), await _load(saver, "run-2")]
    await _expect_conflict(saver.save, (_write("run-1", entries=(b"x",)), 2), "run-1", "save")
    await _expect_conflict(saver.save, (_write("run-2", entries=(b"x",)), None), "run-2", "create")
    _expect_equal([await _load(saver, "run-1"), await _load(saver, "run-2")], runs, "the runs")
    _expect_equal(runs[1].entries, (b"2", b"2'"), "entries of the other run")


async def check_delete(saver: Any) -> None:
    """`delete` forgets a run and its entries; deleting a missing run is not an error;
    a deleted run can be created again from scratch."""
    await _call(saver.save(_write("run-1", entries=(b"old",)), None))
    await _call(saver.save(_write("run-2"), None))
    _expect_equal(await _call(saver.delete("run-1")), None, "delete() result")
    _expect_equal(await _call(saver.load("run-1")), None, "load() after delete")
    await _call(saver.delete("run-1"))
    await _call(saver.delete("never-stored"))
    listed = [info.run_id for info in await _call(saver.list_runs())]
    _expect_equal(listed, ["run-2"], "list_runs() after delete")
    await _expect_conflict(saver.save, (_write("run-1"), 1), "run-1", "update after delete")
    version = await _call(saver.save(_write("run-1", entries=(b"new",)), None))
    _expect_equal(version, 1, "version of a run created again")
    _expect_equal((await _load(saver, "run-1")).entries, (b"new",), "entries after re-create")


_LISTED: tuple[tuple[str, str, RunStatus], ...] = (
    ("run-1", "alpha", "running"),
    ("run-2", "beta", "paused"),
    ("run-3", "alpha", "done"),
    ("run-4", "beta", "failed"),
    ("run-5", "alpha", "paused"),
)


async def _create_listed(saver: Any) -> None:
    # Ids rise with creation time, so newest-first is the same order whether the
    # saver's clock separates the creations or ties them (ties go by run id, desc).
    for run_id, task_name, status in _LISTED:
        await _call(saver.save(_write(run_id, task_name=task_name, status=status), None))
    await _call(saver.save(_write("run-1", task_name="alpha", status="running"), 1))


async def _expect_listed(saver: Any, expected: list[str], **filters: Any) -> None:
    listed = await _call(saver.list_runs(**filters))
    infos = [(await _load(saver, run_id)).info() for run_id in expected]
    _expect_equal(
        listed, infos, f"list_runs({', '.join(f'{k}={v!r}' for k, v in filters.items())})"
    )


async def check_list_runs_filters_and_order(saver: Any) -> None:
    """`list_runs` returns `RunInfo`s newest first, filtered by status and task name."""
    await _create_listed(saver)
    await _expect_listed(saver, ["run-5", "run-4", "run-3", "run-2", "run-1"])
    await _expect_listed(saver, ["run-5", "run-2"], status="paused")
    await _expect_listed(saver, ["run-5", "run-3", "run-1"], task_name="alpha")
    await _expect_listed(saver, ["run-5"], status="paused", task_name="alpha")
    await _expect_listed(saver, [], status="done", task_name="beta")
    await _expect_listed(saver, [], task_name="gamma")


async def check_list_runs_pagination(saver: Any) -> None:
    """`limit` and `offset` page through the newest-first order."""
    await _create_listed(saver)
    await _expect_listed(saver, ["run-5", "run-4"], limit=2)
    await _expect_listed(saver, ["run-3", "run-2"], limit=2, offset=2)
    await _expect_listed(saver, ["run-1"], limit=2, offset=4)
    await _expect_listed(saver, [], limit=2, offset=5)
    await _expect_listed(saver, [], limit=0)
    await _expect_listed(saver, ["run-2"], status="paused", offset=1)


async def check_bytes_round_trip(saver: Any) -> None:
    """Bytes (empty, NUL, every byte value, 1 MiB) and text come back exactly."""
    run_id = "run/ü 'single' \"double\" %s ?"
    write = _write(
        run_id,
        task_name="tâsk 'named'; --",
        pending=("ünï/interrupt#0", "", "a'b\"c%s?"),
        state=bytes(range(256)) * 4,
        entries=(b"", b"\x00", bytes(range(256)), b"\xff" * (1 << 20), "ünïcødé".encode()),
    )
    await _call(saver.save(write, None))
    await _call(saver.save(_write("empty"), None))
    loaded = await _load(saver, run_id)
    _expect_equal(loaded, write.apply(None, loaded.created_at), "the binary run")
    for name, value in [("state", loaded.state), *(("entry", e) for e in loaded.entries)]:
        if type(value) is not bytes:
            raise AssertionError(f"{name} must come back as bytes, got {type(value).__name__}")
    if type(loaded.pending) is not tuple or type(loaded.entries) is not tuple:
        raise AssertionError("pending and entries must come back as tuples")
    empty = await _load(saver, "empty")
    _expect_equal((empty.state, empty.entries, empty.pending), (b"", (), ()), "an empty run")


CHECKS: tuple[Check, ...] = (
    check_create_and_load,
    check_double_create_conflicts,
    check_stale_version_conflicts,
    check_update_of_missing_run_conflicts,
    check_entries_append_in_order,
    check_mark_delivered,
    check_stream_log,
    check_conflicts_change_nothing,
    check_delete,
    check_list_runs_filters_and_order,
    check_list_runs_pagination,
    check_bytes_round_trip,
)
"""Every check of the contract, each expecting a fresh, empty saver."""


async def check_saver(make_saver: Callable[[], Any]) -> None:
    """Run every check in `CHECKS`, each on a fresh saver from `make_saver`.

    Raises `AssertionError` naming the first check that fails and why.
    """
    for check in CHECKS:
        saver = await _call(make_saver())
        try:
            await check(saver)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__} failed for {saver!r}: {error}") from error
        finally:
            await _close(saver)


async def _close(saver: Any) -> None:
    for name in ("aclose", "close"):
        close = getattr(saver, name, None)
        if callable(close):
            await _call(close())
            return
