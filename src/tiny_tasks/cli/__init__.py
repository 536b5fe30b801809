"""`tiny-tasks`: operator commands on stored runs, built on the public API only.

    tiny-tasks runs   STORE [--status paused] [--task NAME] [--limit 20] [--offset 0] [--all]
    tiny-tasks show   STORE RUN_ID [--app pkg.module[:serializer]] [--key-env NAME]
    tiny-tasks delete STORE RUN_ID
    tiny-tasks vacuum STORE [--full]
    tiny-tasks check  STORE --app pkg.module [--running] [--jobs 8] [--key-env NAME]
    tiny-tasks worker STORE --app pkg.module [--concurrency 50] [--once] [--key-env NAME]
    tiny-tasks cancel STORE RUN_ID
    tiny-tasks prune  STORE --older-than 7d
    tiny-tasks serve  STORE --app pkg.module [--host 127.0.0.1] [--port 8000]

STORE is the path of an existing SQLite store, or a `postgresql://` URL (needs
`tiny-tasks[postgres]`). Every failure is one line on stderr: exit status 2 for a usage
error (bad arguments, a store that does not exist or is not a tiny-tasks store), 1 for
anything else. See docs/storage.md. `check` (docs/migrations.md) exits 0 when every
waiting run is compatible with the code of `--app`, 1 when some are not, and 2 on a usage
or store error, so a deploy pipeline can gate on it. `worker` runs until SIGTERM or
Ctrl-C and then stops cleanly (see docs/architecture.md, "The worker").
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import types
from collections.abc import Sequence
from typing import Any, NoReturn, get_args

from .._inspect import delete_run
from ..errors import TinyTasksError
from ..savers.base import RunStatus
from ._app import _serializer, _tasks_of, _user_code_scope
from ._common import _cell, _Failure, _open, _Usage
from ._inspect import _runs, _show
from ._maintain import _check, _vacuum
from ._runtime import add_parsers, cancel, prune, run_worker
from ._serve import add_serve_parser, open_for_serving, run_serve

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed by _Parser
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        with _user_code_scope():
            return asyncio.run(_dispatch(args))
    except _Usage as error:
        return _fail(str(error), 2)
    except _Failure as error:
        return _fail(str(error), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (TinyTasksError, sqlite3.Error, OSError, ImportError, ValueError) as error:
        return _fail(str(error), 1)
    except Exception as error:  # never a raw traceback: say what it was, on one line
        return _fail(f"unexpected {type(error).__name__}: {error} (please report it)", 1)


def _fail(message: str, status: int) -> int:
    print(f"tiny-tasks: {' '.join(message.split())}", file=sys.stderr)
    return status


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, not the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tiny-tasks", description="Inspect and maintain stored runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_help = "path of a SQLite store, or a postgresql:// URL"

    runs = commands.add_parser("runs", help="list runs, newest first")
    runs.add_argument("store", help=store_help)
    runs.add_argument("--status", choices=list(get_args(RunStatus)))
    runs.add_argument("--task", help="only runs of this task")
    runs.add_argument("--limit", type=_count(1), default=20, help="at most this many (20)")
    runs.add_argument("--offset", type=_count(0), default=0, help="skip this many first")
    runs.add_argument("--all", action="store_true", help="every run (ignores --limit)")

    show = commands.add_parser(
        "show", help="one run: status, input, pending interrupts", description=_SHOW_HELP
    )
    show.add_argument("store", help=store_help)
    show.add_argument("run_id")
    show.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE[:SERIALIZER]",
        help="import your code first (a module, run from the current directory as "
        "python -m does, or a path/to/script.py), so the types it stored load; "
        "':NAME' names the serializer (or a saver with a serde) it stores with",
    )
    show.add_argument(
        "--key-env",
        metavar="NAME",
        help="environment variable holding the store's encryption key(s) "
        "(hex or base64; several, newest first, separated by commas)",
    )

    delete = commands.add_parser("delete", help="delete one run")
    delete.add_argument("store", help=store_help)
    delete.add_argument("run_id")

    vacuum = commands.add_parser(
        "vacuum", help="give the space of deleted runs back (SQLite stores)"
    )
    vacuum.add_argument("store", help="path of a SQLite store")
    vacuum.add_argument(
        "--full", action="store_true", help="rewrite the whole file (also defragments it)"
    )

    check = commands.add_parser(
        "check",
        help="would the code of --app resume the stored runs? (a dry replay; writes nothing)",
        description=_CHECK_HELP,
    )
    check.add_argument("store", help=store_help)
    check.add_argument(
        "--app",
        action="append",
        required=True,
        metavar="MODULE[:SERIALIZER]",
        help="a module (or path/to/script.py) defining the tasks: every Task among its "
        "names is checked; may be repeated; ':NAME' names the serializer, as for show",
    )
    check.add_argument(
        "--key-env", metavar="NAME", help="environment variable holding the encryption key(s)"
    )
    check.add_argument("--running", action="store_true", help="check running runs too")
    check.add_argument("--jobs", type=_count(1), default=8, help="runs checked at a time (8)")
    add_parsers(commands, store_help)
    add_serve_parser(commands, store_help)
    return parser


_SHOW_HELP = """Show one stored run. Values whose type is defined in your code (a dataclass
in your script or package) load only once that code is imported: pass --app. An
encrypted store needs its key: pass --key-env NAME; a key is never taken on the
command line."""


_CHECK_HELP = """Dry-replay every stored run that waits to be resumed (paused; with --running,
running ones too) against the tasks of --app, without running steps, delivering or
writing anything. Prints one line per incompatible run and a summary; exits 0 when all
are compatible, 1 when some are not, 2 on a usage or store error."""


def _count(least: int) -> Any:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {number}")
        return number

    parse.__name__ = "number"  # argparse names the type in some messages
    return parse


async def _dispatch(args: argparse.Namespace) -> int:
    modules: list[types.ModuleType] = []
    serde = (
        _serializer(args, modules) if args.command in ("show", "check", "worker", "serve") else None
    )
    if args.command == "serve":
        served = _tasks_of(args.app, modules)  # before a new store is created
        saver = await open_for_serving(args.store)
    elif args.command == "check":
        try:
            saver = await _open(args.store)
        except _Failure as error:  # exit status 1 means "incompatible runs" for check
            raise _Usage(str(error)) from None
    else:
        # Runs mostly wait on their writes: a pool of up to 10 serves 50 runs (and
        # every worker process counts against the server's max_connections).
        pool = min(args.concurrency, 10) if args.command == "worker" else 1
        saver = await _open(args.store, vacuum=args.command == "vacuum", pool=pool)
    try:
        if serde is not None:
            saver.serde = serde
        if args.command == "runs":
            return await _runs(saver, args)
        if args.command == "show":
            return await _show(saver, args)
        if args.command == "vacuum":
            return await _vacuum(saver, args)
        if args.command == "check":
            return await _check(saver, _tasks_of(args.app, modules), args)
        if args.command == "worker":
            return await run_worker(saver, _tasks_of(args.app, modules), args)
        if args.command == "cancel":
            return await cancel(saver, args)
        if args.command == "serve":
            return await run_serve(saver, served, args)
        if args.command == "prune":
            return await prune(saver, args)
        existed = await delete_run(saver, args.run_id)
        if not existed:
            raise _Failure(f"no run {args.run_id!r} is stored")
        print(f"deleted {_cell(args.run_id)}")
        return 0
    finally:
        await saver.close()


if __name__ == "__main__":
    raise SystemExit(main())
