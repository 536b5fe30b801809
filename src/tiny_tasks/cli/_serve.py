"""`tiny-tasks serve`: the tasks of --app over HTTP (`tiny_tasks.http`, under uvicorn)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._common import _open, _open_postgres

SERVE_HELP = """Serve the runs of the tasks of --app over HTTP (see docs/http.md), until
SIGINT or SIGTERM. A SQLite store that does not exist yet is created. Needs
tiny-tasks[http]."""


def add_serve_parser(commands: Any, store_help: str) -> None:
    """The `serve` command's arguments."""
    serve = commands.add_parser(
        "serve", help="serve the tasks of --app over HTTP", description=SERVE_HELP
    )
    serve.add_argument("store", help=store_help)
    serve.add_argument(
        "--app",
        action="append",
        required=True,
        metavar="MODULE[:SERIALIZER]",
        help="a module (or path/to/script.py) defining the tasks: every Task among its "
        "names is served; may be repeated; ':NAME' names the serializer, as for show",
    )
    serve.add_argument("--key-env", metavar="NAME", help="as for show")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free one)")
    serve.add_argument(
        "--ping-interval", type=float, default=15.0, help="seconds between SSE keep-alives (15)"
    )
    serve.add_argument(
        "--lease",
        type=float,
        default=30.0,
        help="seconds a run driven here is leased for (30): when this process dies, "
        "another takes its runs over after that",
    )
    serve.add_argument(
        "--orphan-after",
        type=float,
        default=30.0,
        help="with a store without leases: take over a running run after this many "
        "seconds without a write (30)",
    )


async def open_for_serving(store: str) -> Any:
    """The store for `serve`: a SQLite file is created if there is none yet; a
    PostgreSQL store gets a pool of connections."""
    if store.startswith(("postgres://", "postgresql://")):
        saver = await _open_postgres(store, 10)
        await saver.setup()
        return saver
    if os.path.exists(store):  # noqa: ASYNC240 - one stat at start-up
        return await _open(store)
    from ..savers.sqlite import SqliteSaver

    created = SqliteSaver(store)
    try:
        await created.setup()
    except BaseException:
        await created.close()
        raise
    return created


async def run_serve(saver: Any, tasks: list[Any], args: argparse.Namespace) -> int:
    """Serve until stopped; returns the exit status."""
    from ..http._serve import serve

    await serve(
        saver,
        tasks,
        host=args.host,
        port=args.port,
        ping_interval=args.ping_interval,
        orphan_after=args.orphan_after,
        lease_seconds=args.lease,
    )
    return 0
