"""`tiny-tasks serve`: a `TaskApp` under uvicorn, on a socket bound here (so that port 0
works: the line printed at start names the port actually bound)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from .._task import Task
from ..savers.base import Checkpointer
from ._app import TaskApp

__all__ = ["serve"]


async def serve(
    checkpointer: Checkpointer,
    tasks: Sequence[Task[Any, Any, Any]],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ping_interval: float = 15.0,
    orphan_after: float = 30.0,
    lease_seconds: float = 30.0,
) -> None:
    """Serve `tasks` over HTTP until SIGINT or SIGTERM.

    Prints `tiny-tasks: serving N task(s) on http://HOST:PORT` once it listens. Raises
    `ImportError` naming the extra when uvicorn is missing, `OSError` when the
    address cannot be bound.
    """
    try:
        import uvicorn
    except ImportError:
        raise ImportError(
            "tiny-tasks serve needs uvicorn: pip install 'tiny-tasks[http]'"
        ) from None
    app = TaskApp(
        tasks,
        checkpointer,
        ping_interval=ping_interval,
        orphan_after=orphan_after,
        lease_seconds=lease_seconds,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP (without it, a response waits ~40 ms for the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    # Event streams never end by themselves: on SIGTERM, give requests a few seconds,
    # then close what is still open (clients reconnect, to this server or another).
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    print(f"tiny-tasks: serving {len(app.tasks)} task(s) on http://{shown}:{bound}", flush=True)
    await server.serve(sockets=[sock])
