"""Real servers for the HTTP tests: uvicorn on 127.0.0.1, in this process or in another.

`serving(app)` runs a `TaskApp` under uvicorn on a port the OS picks, in this event
loop. `ServerProcess` runs `tiny-tasks serve` in a child process (a given port, or 0),
so a test can SIGKILL it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

HERE = Path(__file__).parent


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) while the block runs; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    started = asyncio.get_running_loop().create_future()

    async def run() -> None:
        # uvicorn's `serve` installs signal handlers; the test's own stay in place.
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        started.set_result(None)
        await server.main_loop()
        await server.shutdown(sockets=[sock])

    runner = asyncio.create_task(run())
    await asyncio.wait([started, runner], return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        runner.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await runner
        sock.close()


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, str | None, Any]]:
    """(event type, id, data) of an SSE response as they arrive; comments as
    ("comment", None, text)."""
    kind, event_id, data = "message", None, list[str]()
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "comment", None, line[1:].strip()
            continue
        if line:
            name, _, value = line.partition(": ")
            if name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
            continue
        if data:
            yield kind, event_id, json.loads("\n".join(data))
        kind, event_id, data = "message", None, []


async def read_stream(
    http: httpx.AsyncClient, method: str, url: str, **options: Any
) -> tuple[int, list[tuple[str, str | None, Any]]]:
    """The status and every event of one SSE response, read to its end."""
    headers = {"Accept": "text/event-stream", **options.pop("headers", {})}
    async with http.stream(method, url, headers=headers, **options) as response:
        if response.status_code >= 400:
            await response.aread()
            return response.status_code, [("body", None, response.json())]
        return response.status_code, [item async for item in events(response)]


def replayed(saver: Any, events: list[Any]) -> list[Any]:
    """`events`, which a stream replays from the store, if the saver keeps the stream
    log (a saver without `load_partials` can only stream partials as they are made)."""
    return events if hasattr(saver, "load_partials") else []


class ServerProcess:
    """`tiny-tasks serve STORE --app http_app.py` in a child process, with leases of
    1 s (a killed server's runs are taken over 1 s after its last renewal)."""

    def __init__(self, store: str, gate: Path, port: int = 0, orphan_after: float = 0.0) -> None:
        env = {**os.environ, "TT_GATE": str(gate), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tiny_tasks",
                "serve",
                store,
                "--app",
                str(HERE / "http_app.py"),
                "--port",
                str(port),
                "--orphan-after",
                str(orphan_after),
                "--lease",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("tiny-tasks: serving"):
            self.process.kill()
            _, errors = self.process.communicate()
            raise RuntimeError(f"the server did not start: {line!r} {errors}")
        self.url = line.split(" on ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL the server and wait for it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate()

    def stop(self) -> None:
        """Stop the server (SIGTERM) if it runs, and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.communicate()
