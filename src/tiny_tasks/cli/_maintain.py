"""`check` and `vacuum`: deploy gates and store maintenance."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from .._check import RunCheck, check_runs
from ..errors import TinyTasksError
from ._common import _bytes, _cell, _progress, _size, _store_error, _Usage


async def _check(saver: Any, tasks: list[Any], args: argparse.Namespace) -> int:
    done = bad = 0
    with _progress() as report:

        def show(result: RunCheck) -> None:
            nonlocal done, bad
            done += 1
            if not result.compatible:
                bad += 1
                report("")
                print(_incompatible_line(result), flush=True)
            report(f"checked {done} runs, {bad} incompatible")

        try:
            summary = await check_runs(
                saver, tasks, running=args.running, jobs=args.jobs, on_result=show
            )
        except ValueError as error:  # two tasks of one name
            raise _Usage(str(error)) from None
        except Exception as error:  # the store failed: not a verdict on the runs
            if isinstance(error, TinyTasksError):
                raise _Usage(_store_error(error)) from None
            raise _Usage(f"the store failed: {type(error).__name__}: {error}") from None
    for patch_id, count in summary.old_patches.items():
        print(f"patch {_cell(patch_id)}: {count} runs take its old branch")
    skipped = "finished or failed" if args.running else "running, finished or failed"
    print(
        f"checked {summary.checked} runs: {summary.compatible} compatible, "
        f"{len(summary.incompatible)} incompatible, {summary.skipped} not checked ({skipped})"
    )
    return 0 if summary.ok else 1


def _incompatible_line(result: RunCheck) -> str:
    where = f"at {_cell(result.site)}: " if result.site is not None else ""
    return (
        f"INCOMPATIBLE {_cell(result.run_id)} (task {_cell(result.task_name)}, "
        f"{result.status}): {where}recorded {result.recorded}, found {result.found}"
    )


# --- vacuum --------------------------------------------------------------------------


async def _vacuum(saver: Any, args: argparse.Namespace) -> int:
    before = _size(args.store)
    with _progress() as report:
        job = asyncio.ensure_future(saver.vacuum(full=args.full))
        started = time.monotonic()
        while not job.done():
            report(f"vacuuming {args.store} ({_bytes(before)}): {time.monotonic() - started:.0f} s")
            await asyncio.wait([job], timeout=0.5)
        job.result()
    print(f"vacuumed {args.store}: {_bytes(before)} -> {_bytes(_size(args.store))}")
    return 0
