"""`tiny-tasks`: operator commands on stored runs, built on the public API only.

    tiny-tasks runs   STORE [--status paused] [--task NAME] [--limit 20] [--offset 0] [--all]
    tiny-tasks show   STORE RUN_ID [--app pkg.module[:serializer]] [--key-env NAME]
    tiny-tasks delete STORE RUN_ID
    tiny-tasks vacuum STORE [--full]
    tiny-tasks check  STORE --app pkg.module [--running] [--jobs 8] [--key-env NAME]

STORE is the path of an existing SQLite store, or a `postgresql://` URL (needs
`tiny-tasks[postgres]`). Every failure is one line on stderr: exit status 2 for a usage
error (bad arguments, a store that does not exist or is not a tiny-tasks store), 1 for
anything else. See docs/storage.md. `check` (docs/migrations.md) exits 0 when every
waiting run is compatible with the code of `--app`, 1 when some are not, and 2 on a usage
or store error, so a deploy pipeline can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import importlib
import os
import sqlite3
import sys
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._check import RunCheck, check_runs
from ._inspect import delete_run, get_run, list_runs
from .errors import SerializationError, TinyTasksError, UnknownTypeError
from .savers.base import RunInfo

__all__ = ["main"]

PAGE = 1000
"""Runs fetched per query by `runs --all`."""


class _Usage(Exception):
    """A usage error: reported on one line, exit status 2."""


class _Failure(Exception):
    """A failure explained on one line, exit status 1."""


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
    runs.add_argument("--status", choices=["running", "paused", "done", "failed"])
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
    check.add_argument(
        "--jobs", type=_count(1), default=8, help="runs checked at a time (8)"
    )
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
    serde = _serializer(args, modules) if args.command in ("show", "check") else None
    if args.command == "check":
        try:
            saver = await _open(args.store)
        except _Failure as error:  # exit status 1 means "incompatible runs" for check
            raise _Usage(str(error)) from None
    else:
        saver = await _open(args.store, vacuum=args.command == "vacuum")
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
        existed = await delete_run(saver, args.run_id)
        if not existed:
            raise _Failure(f"no run {args.run_id!r} is stored")
        print(f"deleted {_cell(args.run_id)}")
        return 0
    finally:
        await saver.close()


# --- opening a store -----------------------------------------------------------------


async def _open(store: str, *, vacuum: bool = False) -> Any:
    if store.startswith(("postgres://", "postgresql://")):
        if vacuum:
            raise _Usage(
                "vacuum is for SQLite stores; PostgreSQL gives space back with its own "
                "VACUUM (autovacuum does it by default)"
            )
        return await _open_postgres(store)
    _check_sqlite_store(store)
    from .savers.sqlite import SqliteSaver

    saver = SqliteSaver(store)
    try:
        await saver.setup()
    except BaseException:
        await saver.close()
        raise
    return saver


def _check_sqlite_store(store: str) -> None:
    """Refuse, without creating or changing anything, what is not a tiny-tasks store."""
    path = Path(store)
    if not path.exists():
        raise _Usage(f"no SQLite store at {store!r} (the file does not exist)")
    if path.is_dir():
        raise _Usage(f"{store!r} is a directory, not a SQLite store")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as connection:
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tiny_tasks_schema'"
            ).fetchone()
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error):
            raise _Usage(f"{store!r} is not a SQLite database") from error
        raise _Failure(f"cannot open the SQLite store {store!r}: {error}") from error
    if found is None:
        raise _Usage(f"{store!r} is a SQLite database but not a tiny-tasks store")


async def _open_postgres(url: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise _Failure(
            "a postgresql:// store needs psycopg: pip install 'tiny-tasks[postgres]'"
        ) from None
    from .savers.postgres import PostgresSaver

    try:  # a connection of our own first: a wrong URL fails at once, with the server's words
        connection = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    except psycopg.Error as error:
        # The URL is not repeated: it may hold a password.
        raise _Failure(f"cannot connect to the PostgreSQL store: {error}") from None
    await connection.close()
    return PostgresSaver(url, max_size=1)


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
    rows = [("RUN ID", "TASK", "STATUS", "PENDING", "DELIVERED", "UPDATED")]
    for run in runs:
        rows.append(
            (
                _cell(run.run_id),
                _cell(run.task_name),
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
    from .serde import EncryptedSerializer, JsonSerializer

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


def _store_error(error: TinyTasksError) -> str:
    cause = error.__cause__
    if cause is not None and type(cause).__name__ == "UndefinedTable":
        return "this PostgreSQL database is not a tiny-tasks store (its tables are missing)"
    return str(error)


# --- --app and --key-env -------------------------------------------------------------


def _serializer(args: argparse.Namespace, modules: list[types.ModuleType]) -> Any:
    """The serializer to decode with: the app's (or the default), keyed if asked.

    The modules imported for `--app` are appended to `modules`.
    """
    serde: Any = None
    for number, target in enumerate(args.app):
        module, found = _import_app(target, stands_for_main=number == 0)
        modules.append(module)
        if found is not None:
            serde = found
    if args.key_env is None:
        return serde
    from .serde import EncryptedSerializer, JsonSerializer

    keys = _keys_from(args.key_env)
    if isinstance(serde, EncryptedSerializer):
        serde = serde.inner
    try:
        return EncryptedSerializer(serde if serde is not None else JsonSerializer(), keys)
    except ImportError as error:
        raise _Failure(str(error)) from None


def _import_app(target: str, *, stands_for_main: bool) -> tuple[types.ModuleType, Any]:
    """Import `target` (module or script): the module, and the serializer it names after
    ':', if any."""
    where, _, attribute = target.partition(":")
    if where.endswith(".py") or os.sep in where:
        module = _run_script(where, target)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as error:
            raise _Usage(
                f"cannot import --app {target!r}: {type(error).__name__}: {error}"
            ) from None
    if stands_for_main:
        # Types defined in a script run as `python app.py` were stored as "__main__:Name".
        sys.modules["__main__"] = module
    if not attribute:
        return module, None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise _Usage(f"--app {target!r}: {where} has no {attribute!r}")
        found = getattr(found, part)
    if callable(getattr(found, "loads", None)):
        return module, found
    serde = getattr(found, "serde", None)
    if serde is None:
        raise _Usage(
            f"--app {target!r}: {attribute} is neither a serializer nor a saver with a serde"
        )
    return module, serde


def _run_script(path: str, target: str) -> types.ModuleType:
    # As multiprocessing's spawn does: run it under the name "__mp_main__", so its
    # `if __name__ == "__main__":` block does not run.
    file = Path(path)
    if not file.is_file():
        raise _Usage(f"--app {target!r}: no such script")
    module = types.ModuleType("__mp_main__")
    module.__file__ = str(file)
    sys.modules["__mp_main__"] = module
    sys.path.insert(0, str(file.resolve().parent))
    try:
        code = compile(file.read_bytes(), str(file), "exec")
        exec(code, module.__dict__)
    except Exception as error:
        raise _Usage(f"cannot run --app {target!r}: {type(error).__name__}: {error}") from None
    return module


def _keys_from(name: str) -> list[bytes]:
    text = os.environ.get(name)
    if text is None:
        raise _Usage(f"--key-env {name}: the environment variable {name} is not set")
    keys = []
    for part in text.replace(",", " ").split():
        key = _decode_key(part)
        if key is None:
            raise _Usage(
                f"--key-env {name}: the variable does not hold keys of 16, 24 or 32 bytes "
                'in hex or base64 (make one with: python -c "from tiny_tasks.serde import '
                'generate_key; print(generate_key().hex())")'
            )
        keys.append(key)
    if not keys:
        raise _Usage(f"--key-env {name}: the environment variable {name} is empty")
    return keys


def _decode_key(text: str) -> bytes | None:
    """A key from hex (tried first) or base64 (standard or URL-safe, padding optional)."""
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    with contextlib.suppress(binascii.Error, ValueError):
        padded = text + "=" * (-len(text) % 4)
        candidates.append(
            base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        )
    return next((key for key in candidates if len(key) in (16, 24, 32)), None)


@contextlib.contextmanager
def _user_code_scope() -> Iterator[None]:
    """Put the current directory first on sys.path (as `python -m` does) and undo what
    importing the user's code changed in `__main__`, for callers of `main()` in-process."""
    main_module, path = sys.modules.get("__main__"), list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        sys.path[:] = path
        if main_module is not None:
            sys.modules["__main__"] = main_module


# --- check ---------------------------------------------------------------------------


def _tasks_of(targets: list[str], modules: list[types.ModuleType]) -> list[Any]:
    """Every `Task` among the top-level names of each `--app` module."""
    from ._task import Task

    found: dict[int, Any] = {}
    for target, module in zip(targets, modules, strict=True):
        tasks = [value for value in vars(module).values() if isinstance(value, Task)]
        if not tasks:
            raise _Usage(f"--app {target!r} defines no task (no Task among its names)")
        found.update((id(task), task) for task in tasks)
    return list(found.values())


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


def _size(store: str) -> int:
    total = 0
    for name in (store, store + "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(name).st_size
    return total


def _bytes(count: int) -> str:
    for power, unit in ((3, "GB"), (2, "MB"), (1, "kB")):
        if count >= 1000**power:
            return f"{count / 1000**power:.1f} {unit}"
    return f"{count} bytes"


# --- output --------------------------------------------------------------------------


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    """A `report(text)` that rewrites one status line on stderr, if stderr is a terminal."""
    shown = sys.stderr.isatty()

    def report(text: str) -> None:
        if shown:
            sys.stderr.write(f"\r\x1b[K{text}")
            sys.stderr.flush()

    try:
        yield report
    finally:
        if shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _cell(text: str) -> str:
    """`text` as is if every character prints; escaped repr-style otherwise, so a newline
    or a control character in a stored name cannot break a table or a terminal."""
    return text if text.isprintable() else repr(text)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


if __name__ == "__main__":
    raise SystemExit(main())
