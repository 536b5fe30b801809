"""`worker`, `cancel`, `prune`: running runs as a service from the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from datetime import timedelta
from typing import Any

from .._cancel import cancel_run
from .._cancel import prune as prune_runs
from .._worker import Worker
from ..errors import CheckpointerTypeError
from ._common import _cell, _Failure, _progress, _Usage

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `90s`, `2w` (or a bare number of seconds) as a timedelta."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 7d, 12h, 30m or 90s, not {text!r}"
        )
    return timedelta(seconds=float(found[1]) * _UNITS[found[2] or "s"])


duration.__name__ = "duration"


def add_parsers(commands: Any, store_help: str) -> None:
    """Add `worker`, `cancel` and `prune` to the CLI's subcommands."""
    worker = commands.add_parser(
        "worker",
        help="claim and drive due runs of the tasks of --app until SIGTERM / Ctrl-C",
        description="Run a worker: import --app, then claim the due runs of its tasks "
        "(queued, sleeping or paused past their wake time, or abandoned by a dead "
        "worker) and drive them. SIGTERM or Ctrl-C stops it cleanly: it stops claiming, "
        "lets its runs finish or pause for --grace seconds, then releases the rest.",
    )
    worker.add_argument("store", help=store_help)
    worker.add_argument(
        "--app",
        action="append",
        required=True,
        metavar="MODULE[:SERIALIZER]",
        help="a module (or path/to/script.py) defining the tasks: every Task among its "
        "names is driven; may be repeated",
    )
    worker.add_argument("--key-env", metavar="NAME", help="variable holding encryption key(s)")
    worker.add_argument(
        "--concurrency", type=_positive_int, default=50, help="runs driven at once (50)"
    )
    worker.add_argument(
        "--poll",
        type=duration,
        default=timedelta(seconds=1),
        help="how often to look for due runs, e.g. 0.5s or 2s (1s); a timer fires within it",
    )
    worker.add_argument(
        "--lease",
        type=duration,
        default=timedelta(seconds=30),
        help="how long a run stays owned without renewal: after a crash, its runs are "
        "taken over this long after its last renewal (30s)",
    )
    worker.add_argument(
        "--grace",
        type=duration,
        default=timedelta(seconds=10),
        help="on SIGTERM, how long running runs may go on before they are released (10s)",
    )
    worker.add_argument(
        "--once", action="store_true", help="drive what is due now, then exit (for cron)"
    )
    worker.add_argument("--quiet", action="store_true", help="log warnings only")

    cancel = commands.add_parser(
        "cancel", help="cancel a run (queued, paused, sleeping or running)"
    )
    cancel.add_argument("store", help=store_help)
    cancel.add_argument("run_id")

    prune = commands.add_parser("prune", help="delete kept outcomes of runs finished long ago")
    prune.add_argument("store", help=store_help)
    prune.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="finished (done, failed, cancelled) before this long ago: 7d, 12h, 30m",
    )


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


_positive_int.__name__ = "number"


async def run_worker(saver: Any, tasks: list[Any], args: argparse.Namespace) -> int:
    """`tiny-tasks worker`: drive runs until SIGTERM / SIGINT (or, with --once, until
    nothing is due)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    runtime = logging.getLogger("tiny_tasks.runtime")
    runtime.addHandler(handler)
    previous = runtime.level
    runtime.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        try:
            worker = Worker(
                saver,
                tasks,
                concurrency=args.concurrency,
                poll_interval=args.poll,
                lease=args.lease,
                renew_every=args.lease / 3,
                shutdown_grace=args.grace,
            )
        except (TypeError, ValueError) as error:
            raise _Usage(str(error)) from None
        if args.once:
            count = await worker.run_once()
            print(f"drove {count} run attempts")
            return 0
        await worker.run()
        print(f"worker {worker.owner} stopped after {worker.driven} run attempts")
        return 0
    finally:
        runtime.removeHandler(handler)
        runtime.setLevel(previous)


async def cancel(saver: Any, args: argparse.Namespace) -> int:
    """`tiny-tasks cancel`: ask for a run to be cancelled."""
    try:
        info = await cancel_run(saver, args.run_id)
    except CheckpointerTypeError as error:
        raise _Failure(str(error)) from None
    if info is None:
        raise _Failure(f"no run {args.run_id!r} is stored")
    run = _cell(args.run_id)
    if info.status in ("done", "failed"):
        print(f"run {run} already finished ({info.status}); nothing to cancel")
    elif info.status == "cancelled":
        print(f"cancelled {run}")
    elif info.lease_owner is not None and (info.lease_expires or 0) > time.time():
        print(f"cancel requested: {run} stops at its next effect ({_cell(info.lease_owner)})")
    else:
        print(f"cancel requested: {run} ({info.status}) is cancelled by the next worker")
    return 0


async def prune(saver: Any, args: argparse.Namespace) -> int:
    """`tiny-tasks prune`: delete finished runs older than --older-than."""
    with _progress() as report:
        job = asyncio.ensure_future(prune_runs(saver, older_than=args.older_than))
        started = time.monotonic()
        while not job.done():
            report(
                f"pruning runs finished before {_age(args.older_than)} ago:"
                f" {time.monotonic() - started:.0f} s"
            )
            await asyncio.wait([job], timeout=0.5)
        try:
            total = job.result()
        except CheckpointerTypeError as error:
            raise _Failure(str(error)) from None
    print(f"pruned {total} finished runs older than {_age(args.older_than)}")
    return 0


def _age(age: timedelta) -> str:
    seconds = age.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
