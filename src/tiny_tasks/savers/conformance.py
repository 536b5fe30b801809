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

A saver that also has the runtime protocol (`RuntimeSaver`: what a `Worker` needs)
runs `RUNTIME_CHECKS` too, the same way (`check_runtime_saver(make_saver)`): claims and
their due rules, leases, cancel requests, messages and their wake rule, pruning. They
pass times a few thousand seconds apart around this machine's clock, so a saver that
stamps writes with its database server's clock passes as long as the two clocks are
within `TIMESTAMP_SLACK` seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from typing import Any, TypeVar

from ..errors import RunConflictError
from .base import Checkpoint, CheckpointWrite, Lease, RunInfo, RunStatus

__all__ = [
    "CHECKS",
    "RUNTIME_CHECKS",
    "TIMESTAMP_SLACK",
    "check_bytes_round_trip",
    "check_claim_due_rules",
    "check_claims_are_exclusive",
    "check_delete_forgets_messages",
    "check_leases",
    "check_messages",
    "check_message_wakes_a_waiting_run",
    "check_prune",
    "check_request_cancel",
    "check_runtime_fields_round_trip",
    "check_runtime_saver",
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
    lease_owner: str | None = None,
    lease_expires: float | None = None,
    wake_at: float | None = None,
    waits: tuple[str, ...] = (),
    taken: tuple[int, ...] = (),
) -> CheckpointWrite:
    return CheckpointWrite(
        run_id,
        task_name,
        status,
        delivered,
        pending,
        state,
        entries,
        lease_owner,
        lease_expires,
        wake_at,
        waits,
        taken,
    )


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
    _expect_equal(await _partials(saver, "run-1", after=0, limit=1), rows[1:2], "after=0, limit=1")
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


# The runtime protocol (`RuntimeSaver`). Times are offsets in thousands of seconds from
# `T` (this machine's clock after the rows were written), far apart from the stamps of
# the writes, so no real time passing can change a result.

_NOW = TIMESTAMP_SLACK  # "now", after every stamp of the check's writes


async def _info(saver: Any, run_id: str) -> RunInfo:
    return (await _load(saver, run_id)).info()


async def _claim(
    saver: Any,
    owner: str,
    now: float,
    expires: float,
    limit: int = 100,
    names: tuple[str, ...] = ("task",),
) -> list[RunInfo]:
    claimed = await _call(saver.claim_runs(owner, names, now, expires, limit))
    if not isinstance(claimed, list) or not all(isinstance(run, RunInfo) for run in claimed):
        raise AssertionError(f"claim_runs must return a list of RunInfo, got {claimed!r}")
    return claimed


async def _claimed_ids(saver: Any, owner: str, now: float, expires: float, **kw: Any) -> list[str]:
    return [run.run_id for run in await _claim(saver, owner, now, expires, **kw)]


async def check_runtime_fields_round_trip(saver: Any) -> None:
    """A write stores its lease, wake time and waits as given; `cancel_requested` starts
    false; a later write replaces them (a last write clears the lease)."""
    write = _write(
        "run-1",
        status="sleeping",
        lease_owner="owner-1",
        lease_expires=1234.5,
        wake_at=2345.25,
        waits=("email.reply", "ping"),
    )
    await _call(saver.save(write, None))
    loaded = await _load(saver, "run-1")
    _expect_equal(loaded, write.apply(None, loaded.created_at), "the run with runtime fields")
    _expect_equal(loaded.cancel_requested, False, "cancel_requested of a new run")
    listed = await _call(saver.list_runs())
    _expect_equal(listed, [loaded.info()], "list_runs() of the run with runtime fields")
    last = _write("run-1", status="paused")
    await _call(saver.save(last, 1))
    loaded = await _load(saver, "run-1")
    _expect_equal(
        (loaded.lease_owner, loaded.lease_expires, loaded.wake_at, loaded.waits),
        (None, None, None, ()),
        "lease, wake time and waits after a write without them",
    )


async def _create_statuses(saver: Any, t: float) -> None:
    rows = [
        _write("a-expired", lease_owner="dead", lease_expires=t - 1000),
        _write("b-queued", status="queued"),
        _write("c-running", lease_owner=None),
        _write("d-live", lease_owner="alive", lease_expires=t + 5000),
        _write("e-paused", status="paused", wake_at=t + 2000),
        _write("f-sleeping", status="sleeping", wake_at=t + 2000),
        _write("g-paused-forever", status="paused"),
        _write("h-done", status="done"),
        _write("i-failed", status="failed"),
        _write("j-cancelled", status="cancelled"),
        _write("k-other-task", task_name="other", status="queued"),
        _write("l-sleeping-later", status="sleeping", wake_at=t + 4000),
    ]
    for row in rows:
        await _call(saver.save(row, None))


async def check_claim_due_rules(saver: Any) -> None:
    """`claim_runs` takes, oldest due time first, the runs of the given tasks that are
    due (queued; running without a live lease; paused or sleeping past `wake_at`) and
    leases them (version bumped); never a finished run or one whose lease is live."""
    t = time.time()
    await _create_statuses(saver, t)
    before = {run.run_id: run for run in await _call(saver.list_runs(limit=1000))}
    now = t + _NOW
    first = await _claim(saver, "w1", now, t + 10_000, limit=2)
    _expect_equal([run.run_id for run in first], ["a-expired", "b-queued"], "the first claim")
    for run in first:
        expected = _claimed(before[run.run_id], "w1", t + 10_000)
        _expect_equal(run, expected, f"claim_runs' info of {run.run_id}")
        _expect_equal(await _info(saver, run.run_id), expected, f"{run.run_id} after its claim")
    _expect_equal(await _claimed_ids(saver, "w2", now, t + 10_000), ["c-running"], "claim 2")
    _expect_equal(await _claimed_ids(saver, "w2", now, t + 10_000), [], "claim 3 (all leased)")
    _expect_equal(
        await _claimed_ids(saver, "w3", t + 3000, t + 10_000),
        ["e-paused", "f-sleeping"],
        "the claim once the wake times passed",
    )
    _expect_equal(
        await _claimed_ids(saver, "w4", t + 6000, t + 7000),
        ["l-sleeping-later", "d-live"],
        "the claim once the live lease expired",
    )
    _expect_equal(
        await _claimed_ids(saver, "w5", t + 6000, t + 7000, names=("other", "missing")),
        ["k-other-task"],
        "the claim of another task",
    )
    _expect_equal(
        await _claimed_ids(saver, "w6", t + 8000, t + 9000, names=()), [], "a claim of no task"
    )
    _expect_equal(
        await _claimed_ids(saver, "w6", t + 8000, t + 20_000),
        ["d-live", "l-sleeping-later"],  # both claimable at t + 7000: by run id
        "the claim once w4's leases expired",
    )
    _expect_equal(
        await _claimed_ids(saver, "w7", t + 1_000_000, t + 2_000_000, limit=0), [], "limit=0"
    )
    everything = await _claimed_ids(saver, "w7", t + 1_000_000, t + 2_000_000)
    _expect_equal(
        sorted(everything),
        [
            "a-expired",
            "b-queued",
            "c-running",
            "d-live",
            "e-paused",
            "f-sleeping",
            "l-sleeping-later",
        ],
        "the claim when every lease expired",
    )
    for run_id in ("g-paused-forever", "h-done", "i-failed", "j-cancelled"):
        _expect_equal(await _info(saver, run_id), before[run_id], f"{run_id}, never claimed")


def _claimed(run: RunInfo, owner: str, expires: float) -> RunInfo:
    return RunInfo(
        run.run_id,
        run.task_name,
        run.status,
        run.version + 1,
        run.delivered,
        run.pending,
        run.created_at,
        run.updated_at,
        owner,
        expires,
        run.wake_at,
        run.cancel_requested,
    )


async def check_claims_are_exclusive(saver: Any) -> None:
    """Concurrent claims (asyncio tasks) never return the same run; together they
    return every due run once."""
    for index in range(30):
        await _call(saver.save(_write(f"run-{index:02}", status="queued"), None))
    now = time.time() + _NOW

    async def claim(owner: str) -> list[str]:
        return await _claimed_ids(saver, owner, now, now + 1000, limit=4)

    results = await asyncio.gather(*(claim(f"w{n}") for n in range(10)))
    claimed = [run_id for result in results for run_id in result]
    _expect_equal(sorted(claimed), [f"run-{index:02}" for index in range(30)], "runs claimed")
    for owner, result in zip((f"w{n}" for n in range(10)), results, strict=True):
        for run_id in result:
            _expect_equal((await _info(saver, run_id)).lease_owner, owner, f"{run_id}'s owner")


async def check_leases(saver: Any) -> None:
    """`renew_lease` extends only its owner's lease and reports a cancel request;
    `release_lease` clears only its owner's; neither bumps the version."""
    t = time.time()
    await _call(saver.save(_write("run-1", status="queued"), None))
    await _claim(saver, "w1", t + _NOW, t + 1000)
    claimed = await _info(saver, "run-1")
    lease = await _call(saver.renew_lease("run-1", "w1", t + 2000))
    _expect_equal(lease, Lease(held=True, cancel_requested=False), "renew_lease by its owner")
    renewed = await _info(saver, "run-1")
    _expect_equal(
        (renewed.lease_owner, renewed.lease_expires, renewed.version),
        ("w1", t + 2000, claimed.version),
        "the run after a renewal",
    )
    _expect_equal(await _claimed_ids(saver, "w2", t + 1500, t + 3000), [], "a renewed lease")
    _expect_equal(
        await _call(saver.renew_lease("run-1", "w2", t + 9000)),
        Lease(held=False),
        "renew_lease by another owner",
    )
    await _call(saver.release_lease("run-1", "w2"))
    _expect_equal(await _info(saver, "run-1"), renewed, "the run after another's release")
    await _call(saver.release_lease("run-1", "w1"))
    released = await _info(saver, "run-1")
    _expect_equal(
        (released.lease_owner, released.lease_expires, released.version),
        (None, None, claimed.version),
        "the run after its owner's release",
    )
    _expect_equal(
        await _call(saver.renew_lease("run-1", "w1", t + 9000)),
        Lease(held=False),
        "renew_lease after a release",
    )
    _expect_equal(await _claimed_ids(saver, "w2", t + _NOW, t + 1000), ["run-1"], "re-claim")
    _expect_equal(
        await _call(saver.renew_lease("missing", "w1", t + 9000)),
        Lease(held=False),
        "renew_lease of a missing run",
    )
    await _call(saver.release_lease("missing", "w1"))
    # A write carries the lease of whoever drives the run, the claim's version included.
    run = await _load(saver, "run-1")
    write = _write("run-1", status="running", lease_owner="w2", lease_expires=t + 1000)
    await _call(saver.save(write, run.version))
    _expect_equal(await _claimed_ids(saver, "w3", t + 500, t + 1000), [], "a driven run")
    _expect_equal(await _claimed_ids(saver, "w3", t + 1000, t + 2000), ["run-1"], "expired")
    await _expect_conflict(
        saver.save, (write, run.version + 1), "run-1", "the former owner's write"
    )


async def check_request_cancel(saver: Any) -> None:
    """`request_cancel` sets `cancel_requested` and bumps the version of an unfinished run
    (a queued one is cancelled at once), leaves a finished one as it is, and returns the
    run's info (`None` for a missing run); later writes keep the flag."""
    t = time.time()
    await _create_statuses(saver, t)
    before = {run.run_id: run for run in await _call(saver.list_runs(limit=1000))}
    for run_id in ("b-queued", "d-live", "e-paused", "f-sleeping", "g-paused-forever"):
        info = await _call(saver.request_cancel(run_id, t + 10))
        stored = await _info(saver, run_id)
        _expect_equal(info, stored, f"request_cancel's info of {run_id}")
        old = before[run_id]
        _expect_equal((stored.version, stored.cancel_requested), (old.version + 1, True), run_id)
        if run_id == "b-queued":
            _expect_equal(
                (stored.status, stored.lease_owner, stored.lease_expires),
                ("cancelled", None, None),
                "a queued run after request_cancel",
            )
        else:
            _expect_equal(
                (stored.status, stored.lease_owner, stored.lease_expires, stored.wake_at),
                (old.status, old.lease_owner, old.lease_expires, old.wake_at),
                f"{run_id}'s other fields after request_cancel",
            )
    for run_id in ("h-done", "i-failed", "j-cancelled"):
        info = await _call(saver.request_cancel(run_id, t + 10))
        _expect_equal(info, before[run_id], f"request_cancel of the finished {run_id}")
        _expect_equal(await _info(saver, run_id), before[run_id], f"{run_id} after it")
    _expect_equal(await _call(saver.request_cancel("missing", t)), None, "a missing run")
    _expect_equal(await _call(saver.load("missing")), None, "a missing run after a cancel")
    # The driver learns of it: its write conflicts, its renewal reports it.
    live = before["d-live"]
    await _expect_conflict(
        saver.save, (_write("d-live", lease_owner="alive"), live.version), "d-live", "a write"
    )
    lease = await _call(saver.renew_lease("d-live", "alive", t + 6000))
    _expect_equal(lease, Lease(held=True, cancel_requested=True), "renew_lease after a cancel")
    # A paused or sleeping run with a cancel request is due at once, whatever its wake time.
    _expect_equal(
        await _claimed_ids(saver, "w1", t + _NOW, t + 1000),
        ["a-expired", "c-running", "e-paused", "f-sleeping", "g-paused-forever"],
        "the claim after the cancel requests",
    )
    version = (await _info(saver, "e-paused")).version
    await _call(saver.save(_write("e-paused", status="running"), version))
    _expect_equal((await _info(saver, "e-paused")).cancel_requested, True, "the flag after a write")


async def check_messages(saver: Any) -> None:
    """`send_message` stores messages with increasing ids (`None` for a missing or
    finished run); `next_message` returns the oldest untaken one of a topic; a write's
    `taken` marks its messages taken."""
    t = time.time()
    await _call(saver.save(_write("run-1"), None))
    await _call(saver.save(_write("run-2"), None))
    await _call(saver.save(_write("done", status="done"), None))
    _expect_equal(await _call(saver.next_message("run-1", "a")), None, "no message yet")
    sent = [
        await _call(saver.send_message(run_id, topic, data, t))
        for run_id, topic, data in [
            ("run-1", "a", b"a0"),
            ("run-1", "b", b"b0"),
            ("run-2", "a", b"other run"),
            ("run-1", "a", b"a1"),
            ("run-1", "a", b""),
        ]
    ]
    if not all(type(i) is int for i in sent) or sent != sorted(set(sent)):
        raise AssertionError(f"message ids must be increasing ints, got {sent!r}")
    a0, b0, other, a1, a2 = sent
    for run_id in ("missing", "done"):
        _expect_equal(await _call(saver.send_message(run_id, "a", b"x", t)), None, run_id)
        _expect_equal(await _call(saver.next_message(run_id, "a")), None, f"{run_id}'s messages")
    _expect_equal(await _call(saver.next_message("run-1", "a")), (a0, b"a0"), "first of a")
    _expect_equal(await _call(saver.next_message("run-1", "a")), (a0, b"a0"), "not taken yet")
    _expect_equal(await _call(saver.next_message("run-1", "b")), (b0, b"b0"), "first of b")
    _expect_equal(await _call(saver.next_message("run-1", "c")), None, "a topic never sent")
    _expect_equal(await _call(saver.next_message("run-2", "a")), (other, b"other run"), "run-2")
    version = await _call(saver.save(_write("run-1", taken=(a0,)), 1))
    _expect_equal(await _call(saver.next_message("run-1", "a")), (a1, b"a1"), "after a take")
    # A conflicting write takes nothing.
    await _expect_conflict(saver.save, (_write("run-1", taken=(a1,)), 1), "run-1", "stale take")
    _expect_equal(await _call(saver.next_message("run-1", "a")), (a1, b"a1"), "after a conflict")
    version = await _call(saver.save(_write("run-1", taken=(a1, b0)), version))
    _expect_equal(await _call(saver.next_message("run-1", "a")), (a2, b""), "the empty message")
    _expect_equal(await _call(saver.next_message("run-1", "b")), None, "b after its take")
    await _call(saver.save(_write("run-1", taken=(a2,)), version))
    _expect_equal(await _call(saver.next_message("run-1", "a")), None, "every a taken")
    _expect_equal(await _call(saver.next_message("run-2", "a")), (other, b"other run"), "run-2")


async def check_message_wakes_a_waiting_run(saver: Any) -> None:
    """A message of a topic a paused or sleeping run waits on makes it due at once,
    whether it arrives while the run waits or before its write that starts waiting; a
    message it takes in that write, or of another topic, does not."""
    t = time.time()
    for status in ("sleeping", "paused"):
        waiting = f"{status}-waiting"
        await _call(
            saver.save(_write(waiting, status=status, wake_at=t + 5000, waits=("a", "b")), None)
        )
        before = await _info(saver, waiting)
        await _call(saver.send_message(waiting, "c", b"other topic", t + 1))
        _expect_equal(await _info(saver, waiting), before, f"{waiting} after another topic")
        await _call(saver.send_message(waiting, "b", b"wake", t + 2))
        woken = await _info(saver, waiting)
        _expect_equal(
            (woken.wake_at, woken.version, woken.status),
            (t + 2, before.version, status),
            f"{waiting} after a message it waits on",
        )
        # The message arrived while the run was driven: its waiting write wakes it.
        early = f"{status}-early"
        await _call(saver.save(_write(early, lease_owner="w", lease_expires=t + 1000), None))
        taken = await _call(saver.send_message(early, "a", b"taken", t))
        await _call(saver.send_message(early, "c", b"other topic", t))
        write = _write(early, status=status, wake_at=t + 5000, waits=("a",), taken=(taken,))
        await _call(saver.save(write, 1))
        _expect_equal((await _info(saver, early)).wake_at, t + 5000, f"{early}, all taken")
        await _call(saver.send_message(early, "a", b"untaken", t))
        write = _write(early, status="running", lease_owner="w", lease_expires=t + 1000)
        await _call(saver.save(write, 2))
        await _call(saver.save(_write(early, status=status, wake_at=t + 5000, waits=("a",)), 3))
        stored = await _info(saver, early)
        _expect_equal(stored.wake_at, stored.updated_at, f"{early}'s wake time (its write's)")
        write = _write(early, status=status, waits=("a",))
        await _call(saver.save(write, 4))
        stored = await _info(saver, early)
        _expect_equal(stored.wake_at, stored.updated_at, f"{early} without a timer")
    due = await _claimed_ids(saver, "w", t + _NOW, t + 1000)
    _expect_equal(
        sorted(due),
        ["paused-early", "paused-waiting", "sleeping-early", "sleeping-waiting"],
        "the woken runs' claim",
    )


async def check_prune(saver: Any) -> None:
    """`prune` deletes finished runs last updated before the given time, oldest first,
    at most `limit`, with their messages; it keeps every unfinished run."""
    rows: list[tuple[str, RunStatus]] = [
        ("a", "done"),
        ("b", "failed"),
        ("c", "cancelled"),
        ("d", "paused"),
        ("e", "running"),
        ("f", "queued"),
        ("g", "sleeping"),
    ]
    for run_id, status in rows:
        await _call(saver.save(_write(run_id), None))
        await _call(saver.send_message(run_id, "topic", b"kept until pruned", time.time()))
        await _call(saver.save(_write(run_id, status=status), 1))
    stamps = sorted([(await _info(saver, run_id)).updated_at for run_id in "abcdefg"])
    _expect_equal(await _call(saver.prune(stamps[0])), 0, "prune before the first write")
    after = stamps[-1] + 1
    _expect_equal(await _call(saver.prune(after, 2)), 2, "prune with limit=2")
    _expect_equal(await _call(saver.load("a")), None, "the oldest finished run after prune")
    _expect_equal(await _call(saver.load("b")), None, "the second finished run after prune")
    _expect_equal(await _call(saver.prune(after, 0)), 0, "prune with limit=0")
    _expect_equal(await _call(saver.prune(after)), 1, "prune without a limit")
    _expect_equal(await _call(saver.prune(after)), 0, "prune with nothing left")
    listed = sorted(run.run_id for run in await _call(saver.list_runs()))
    _expect_equal(listed, ["d", "e", "f", "g"], "the runs left after prune")
    for run_id in "abc":
        await _call(saver.save(_write(run_id), None))
        _expect_equal(await _call(saver.next_message(run_id, "topic")), None, f"{run_id}'s mail")
    _expect_equal(
        await _call(saver.next_message("d", "topic")) is not None, True, "an unfinished run's mail"
    )


async def check_delete_forgets_messages(saver: Any) -> None:
    """`delete` forgets the run's messages: a run created again with its id has none."""
    await _call(saver.save(_write("run-1"), None))
    await _call(saver.save(_write("run-2"), None))
    await _call(saver.send_message("run-1", "topic", b"gone", time.time()))
    kept = await _call(saver.send_message("run-2", "topic", b"kept", time.time()))
    await _call(saver.delete("run-1"))
    _expect_equal(await _call(saver.next_message("run-1", "topic")), None, "after delete")
    await _call(saver.save(_write("run-1"), None))
    _expect_equal(await _call(saver.next_message("run-1", "topic")), None, "a new run's mail")
    _expect_equal(await _call(saver.next_message("run-2", "topic")), (kept, b"kept"), "run-2")


RUNTIME_CHECKS: tuple[Check, ...] = (
    check_runtime_fields_round_trip,
    check_claim_due_rules,
    check_claims_are_exclusive,
    check_leases,
    check_request_cancel,
    check_messages,
    check_message_wakes_a_waiting_run,
    check_prune,
    check_delete_forgets_messages,
)
"""Every check of the runtime protocol (`RuntimeSaver`), each expecting a fresh, empty
saver that has it."""


async def check_runtime_saver(make_saver: Callable[[], Any]) -> None:
    """Run every check in `RUNTIME_CHECKS`, each on a fresh saver from `make_saver`.

    Raises `AssertionError` naming the first check that fails and why.
    """
    for check in RUNTIME_CHECKS:
        saver = await _call(make_saver())
        try:
            await check(saver)
        except AssertionError as error:
            raise AssertionError(f"{check.__name__} failed for {saver!r}: {error}") from error
        finally:
            await _close(saver)
