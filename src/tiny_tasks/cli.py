"""`tiny-tasks`: operator commands on stored runs, built on the public API only.

    tiny-tasks runs   STORE [--status paused] [--task NAME] [--limit 20] [--offset 0]
    tiny-tasks show   STORE RUN_ID
    tiny-tasks delete STORE RUN_ID

STORE is a SQLite file path, or a `postgresql://` URL (needs `tiny-tasks[postgres]`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

from ._inspect import delete_run, get_run, list_runs

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_dispatch(args))
    except FileNotFoundError as exc:
        print(f"tiny-tasks: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiny-tasks", description="Inspect stored runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("store", help="SQLite file path or postgresql:// URL")
    runs.add_argument("--status", choices=["running", "paused", "done", "failed"])
    runs.add_argument("--task", help="only runs of this task")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--offset", type=int, default=0)
    show = commands.add_parser("show", help="one run: status, input, pending interrupts")
    show.add_argument("store")
    show.add_argument("run_id")
    delete = commands.add_parser("delete", help="delete one run")
    delete.add_argument("store")
    delete.add_argument("run_id")
    return parser


async def _dispatch(args: argparse.Namespace) -> int:
    saver = await _open(args.store)
    try:
        if args.command == "runs":
            return await _runs(saver, args)
        if args.command == "show":
            return await _show(saver, args.run_id)
        existed = await delete_run(saver, args.run_id)
        print(f"deleted {args.run_id}" if existed else f"no run {args.run_id!r} is stored")
        return 0 if existed else 1
    finally:
        await saver.close()


async def _open(store: str) -> Any:
    if store.startswith(("postgres://", "postgresql://")):
        from .savers.postgres import PostgresSaver

        saver: Any = PostgresSaver(store)
        await saver.setup()
        return saver
    import os

    from .savers.sqlite import SqliteSaver

    if not os.path.exists(store):  # noqa: ASYNC240 - one stat before opening the store
        raise FileNotFoundError(f"no SQLite store at {store!r}")
    return SqliteSaver(store)


async def _runs(saver: Any, args: argparse.Namespace) -> int:
    runs = await list_runs(
        saver, status=args.status, task_name=args.task, limit=args.limit, offset=args.offset
    )
    rows = [("RUN ID", "TASK", "STATUS", "PENDING", "DELIVERED", "UPDATED")]
    for run in runs:
        rows.append(
            (
                run.run_id,
                run.task_name,
                run.status,
                str(len(run.pending)),
                str(run.delivered),
                _time(run.updated_at),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not runs:
        print("(no runs)")
    return 0


async def _show(saver: Any, run_id: str) -> int:
    state = await get_run(saver, run_id)
    if state is None:
        print(f"no run {run_id!r} is stored", file=sys.stderr)
        return 1
    print(f"run        {state.run_id}")
    print(f"task       {state.task_name}")
    print(f"status     {state.status} (version {state.version})")
    print(f"input      {state.input!r}")
    print(f"delivered  {state.delivered} partials")
    print(f"recorded   {state.answers} answers, {state.steps} steps, {state.children} children")
    print(f"created    {_time(state.created_at)}")
    print(f"updated    {_time(state.updated_at)}")
    for interrupt in state.pending:
        print(f"pending    {interrupt.id}: {interrupt.value!r}")
    return 0


def _time(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


if __name__ == "__main__":
    raise SystemExit(main())
