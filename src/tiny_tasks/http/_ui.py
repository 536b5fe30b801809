"""The inbox under `/ui` (issue 12): a placeholder page until the inbox is built."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

__all__ = ["ui_routes"]

_PLACEHOLDER = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>tiny-tasks inbox</title>
<p>The tiny-tasks inbox is not built yet. The JSON API serves the same data:
<a href="../interrupts">pending interrupts</a>, <a href="../runs">runs</a>,
<a href="../openapi.json">OpenAPI document</a>.</p>
</html>
"""


async def _inbox(request: Request) -> HTMLResponse:
    return HTMLResponse(_PLACEHOLDER)


def ui_routes() -> list[Route]:
    """The routes of the inbox (`TaskApp(ui=True)`)."""
    return [Route("/ui", _inbox, methods=["GET"]), Route("/ui/", _inbox, methods=["GET"])]
