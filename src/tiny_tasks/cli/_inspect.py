"""`runs`, `show`, `delete`: listing and inspecting stored runs."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._inspect import get_run, list_runs
from ..errors import SerializationError, TinyTasksError, UnknownTypeError
from ..savers.base import FINISHED, RunInfo
from ._common import PAGE, _cell, _Failure, _progress, _short, _store_error, _time

# --- runs ----------------------------------------------------------------------------


async def _runs(saver: Any, args: argparse.Namespace) -> int:
    filters = {"status": args.status, "task_name": args.task}
    runs: list[RunInfo] = []
    if args.all:
        with _progress() as report:
            while True:
                page = await _list(saver, **filters, limit=PAGE, offset=args.offset + len(runs))
                runs += page
                report(f"listed {len(runs)} runs")
                if len(page) < PAGE:
                    break
    else:
        runs = await _list(saver, **filters, limit=args.limit, offset=args.offset)
    now = time.time()
    rows = [("RUN ID", "TASK", "STATUS", "PENDING", "DELIVERED", "UPDATED", "LEASE", "WAKES")]
    for run in runs:
        status = run.status + ("*" if _cancelling(run) else "")
        rows.append(
            (
                _cell(run.run_id),
                _cell(run.task_name),
                status,
                str(len(run.pending)),
                str(run.delivered),
                _time(run.updated_at),
                _lease(run.lease_owner, run.lease_expires, now, short=True),
                "-" if run.wake_at is None else _time(run.wake_at),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not runs:
        print("(no runs)")
    elif any(_cancelling(run) for run in runs):
        print("* cancel requested")
    return 0


def _cancelling(run: RunInfo) -> bool:
    """A cancel was asked and the run has not finished yet (it unwinds when next driven)."""
    return run.cancel_requested and run.status not in FINISHED


def _lease(owner: str | None, expires: float | None, now: float, *, short: bool = False) -> str:
    """Who holds a run's lease and for how long (`-` for nobody)."""
    if owner is None:
        return "-"
    if expires is None or expires <= now:
        return f"{_cell(owner)} (expired)"
    left = f"{expires - now:.0f} s left"
    return (
        f"{_cell(owner)} ({left})" if short else f"{_cell(owner)} until {_time(expires)} ({left})"
    )


async def _list(saver: Any, **filters: Any) -> list[RunInfo]:
    try:
        return await list_runs(saver, **filters)
    except TinyTasksError as error:
        raise _Failure(_store_error(error)) from error


# --- show ----------------------------------------------------------------------------


async def _show(saver: Any, args: argparse.Namespace) -> int:
    run_id: str = args.run_id
    try:
        state = await get_run(saver, run_id)
    except UnknownTypeError as error:
        raise _Failure(_unknown_type(run_id, error)) from error
    except SerializationError as error:
        raise _Failure(await _undecodable(saver, run_id, error, args.key_env)) from error
    except TinyTasksError as error:
        raise _Failure(_store_error(error)) from error
    if state is None:
        raise _Failure(f"no run {run_id!r} is stored")
    print(f"run        {_cell(state.run_id)}")
    print(f"task       {_cell(state.task_name)}")
    print(f"status     {state.status} (version {state.version})")
    print(f"input      {_short(state.input)}")
    print(f"delivered  {state.delivered} partials")
    print(f"recorded   {state.answers} answers, {state.steps} steps, {state.children} children")
    print(f"created    {_time(state.created_at)}")
    print(f"updated    {_time(state.updated_at)}")
    for interrupt in state.pending:
        print(f"pending    {_cell(interrupt.id)}: {_short(interrupt.value)}")
    owner = getattr(state, "lease_owner", None)
    if owner is not None:
        print(f"lease      {_lease(owner, getattr(state, 'lease_expires', None), time.time())}")
    wake_at = getattr(state, "wake_at", None)
    if wake_at is not None:
        print(f"wakes      {_time(wake_at)}")
    if getattr(state, "cancel_requested", False):
        print("cancel     requested (the run stops at its next effect)")
    outcome = getattr(state, "outcome", None)
    if outcome == "done":
        print(f"result     {_short(getattr(state, 'result', None))}")
    elif outcome is not None:
        failure = getattr(state, "error", None)
        shown = ": ".join(map(str, failure)) if isinstance(failure, list | tuple) else str(failure)
        print(f"{outcome:<10} {_cell(shown)}")
    return 0


def _unknown_type(run_id: str, error: UnknownTypeError) -> str:
    name, module = error.type_name, error.module
    short = name.partition(":")[2] or name
    if module is None:
        return (
            f"cannot find type {name!r} stored in run {run_id!r}: it is a name registered "
            "on your serializer; pass --app MODULE:SERIALIZER naming that serializer (or "
            "a saver whose serde it is)"
        )
    if module in sys.modules and module != "__main__":
        return (
            f"cannot import type {short} (module {module}) stored in run {run_id!r}: the "
            f"module has no {short!r} (renamed or moved?); pass --app MODULE:SERIALIZER "
            f"with a serializer that registers the old name {name!r}"
        )
    fix = "--app path/to/script.py" if module == "__main__" else f"--app {module}"
    return (
        f"cannot import type {short} (module {module}) stored in run {run_id!r}: pass "
        f"{fix} to import the code that defines it first (the run is not damaged)"
    )


async def _undecodable(
    saver: Any, run_id: str, error: SerializationError, key_env: str | None
) -> str:
    """Say why a run does not decode: no key, a wrong key, pickled values, or damage."""
    from ..serde import EncryptedSerializer, JsonSerializer

    stored = await saver.load(run_id)
    blobs = [] if stored is None else [*stored.entries[:1], stored.state]
    first = next((blob for blob in blobs if blob), b"")
    encrypted = len(first) >= 33 and first[0] == 1  # EncryptedSerializer's format byte
    serde = saver.serde
    if encrypted and not isinstance(serde, EncryptedSerializer):
        return (
            f"run {run_id!r} is stored encrypted: pass --key-env NAME, naming an "
            "environment variable that holds the key"
        )
    if encrypted and isinstance(serde, EncryptedSerializer):
        known = {key_id for key_id, _ in serde._keys}
        if first[1:5] not in known:
            source = f"the key(s) in ${key_env}" if key_env else "the app's key(s)"
            return f"run {run_id!r} was encrypted with a key other than {source}"
    if first[:1] == b"\x80" and isinstance(serde, JsonSerializer | type(None)):
        return (
            f"run {run_id!r} is stored with pickle: pass --app MODULE:SERIALIZER naming "
            "the PickleSerializer it was written with"
        )
    return str(error)  # genuinely damaged: the message says what and what to do
