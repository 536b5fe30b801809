"""Serving runs over HTTP: `TaskApp` (an ASGI app) and `Client` (the same interface as a
local `Task`, over HTTP). Needs the `http` extra: `pip install 'tiny-tasks[http]'`.

    from tiny_tasks.http import TaskApp, Client

    app = TaskApp(tasks=[review], checkpointer=saver)        # an ASGI app

    async with Client("http://127.0.0.1:8000") as client:
        review = client.task("review")
        async for partial, snapshot, interrupt in review(payload, run_id="r1"):
            ...

See docs/http.md for the endpoints and the event stream.
"""

from __future__ import annotations

try:
    import httpx as _httpx  # noqa: F401
    import starlette as _starlette  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"tiny_tasks.http needs Starlette and httpx ({error.name} is missing): "
        "pip install 'tiny-tasks[http]'"
    ) from error

from ._app import TaskApp
from ._client import Client, RemoteStream, RemoteTask

__all__ = ["Client", "RemoteStream", "RemoteTask", "TaskApp"]
