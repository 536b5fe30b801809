"""The inbox's routes: its pages, the form posts that answer, cancel and delete, a feed
of live updates (SSE), and its two static files. Every handler asks the app's `auth`
hook first, every post checks the CSRF token, and answers go through the same run
machinery as `POST /runs/{id}/resume`."""

from __future__ import annotations

import asyncio
import functools
import hmac
import importlib.resources
import json
import logging
import secrets
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from ..._inspect import delete_run, get_run
from ..._journal import decode_journal
from ..._run import resolve
from ..._values import Command
from ...errors import (
    CsrfTokenError,
    InterruptAnsweredError,
    InvalidRequestError,
    MalformedRequestError,
    RequestTooLargeError,
    RunConflictError,
    TinyTasksError,
    UnknownRunError,
)
from ...savers.base import Checkpoint, RunStatus
from .._errors import error_body, status_of
from .._json import plain
from .._listing import scan
from .._requests import decode_cursor, encode_cursor, run_id_field
from ._answers import read_answers
from ._forms import Asked, asked
from ._html import Markup, html, join, pretty
from ._pages import (
    STATUSES,
    Page,
    PendingRun,
    feed_data,
    inbox_body,
    inbox_regions,
    layout,
    message_page,
    runs_body,
)
from ._run_page import RunView, run_body, run_regions
from ._timeline import timeline

if typing.TYPE_CHECKING:
    from .._app import TaskApp

__all__ = ["ui_routes"]

logger = logging.getLogger("tiny_tasks.http")

CSRF_COOKIE = "tiny_tasks_csrf"
_TAIL = 100  # partials shown on a run's page before the live ones
_INBOX_LIMIT = 200  # paused runs on the inbox page
_FEED_SECONDS = 30.0  # how long one response of the live feed lasts
_STATIC = {"inbox.css": "text/css; charset=utf-8", "inbox.js": "text/javascript; charset=utf-8"}
_SECURITY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

UiHandler = Callable[["TaskApp", Request, Page], Awaitable[Response]]


def ui_routes(app: TaskApp) -> list[Route]:
    """The routes of the inbox (`TaskApp(ui=True)`)."""

    def bind(handler: UiHandler) -> Callable[[Request], Awaitable[Response]]:
        return functools.partial(_guarded, handler, app)

    return [
        Route("/ui", bind(_inbox), methods=["GET"]),
        Route("/ui/", bind(_inbox), methods=["GET"]),
        Route("/ui/runs", bind(_runs), methods=["GET"]),
        Route("/ui/runs/{run_id}", bind(_run), methods=["GET"]),
        Route("/ui/runs/{run_id}/answer", bind(_answer), methods=["POST"]),
        Route("/ui/runs/{run_id}/cancel", bind(_cancel), methods=["POST"]),
        Route("/ui/runs/{run_id}/delete", bind(_delete), methods=["POST"]),
        Route("/ui/feed", bind(_feed), methods=["GET"]),
        Route("/ui/static/{name}", _static, methods=["GET"]),
    ]


# -- what every handler does --------------------------------------------------------------


async def _guarded(handler: UiHandler, app: TaskApp, request: Request) -> Response:
    """Ask `auth`, make the page context (CSRF cookie), run `handler`; errors become a
    page (or JSON, for the script's requests), never a traceback."""
    token = request.cookies.get(CSRF_COOKIE, "")
    fresh = not (
        20 <= len(token) <= 100
        and token.isascii()
        and token.replace("-", "").replace("_", "").isalnum()
    )
    if fresh:
        token = secrets.token_urlsafe(32)
    page = Page(request.scope.get("root_path", ""), token, time.time())
    try:
        principal = await app.principal(request)
        page = Page(page.base, token, page.now, principal)
        response = await handler(app, request, page)
    except Exception as error:
        response = _failure(request, page, error)
    if fresh:
        response.set_cookie(
            CSRF_COOKIE, token, path=f"{page.base}/ui", httponly=True, samesite="strict"
        )
    return response


def _failure(request: Request, page: Page, error: BaseException) -> Response:
    status = status_of(error)
    body = error_body(error, status)
    if _wants_json(request):
        return JSONResponse(body, status)
    titles = {401: "Please sign in", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    title = titles.get(status, "Something went wrong")
    return _page_response(message_page(page, title, body["message"]), status)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _page_response(markup: Markup, status: int = 200) -> HTMLResponse:
    return HTMLResponse(str(markup), status, headers=_SECURITY)


async def _form(app: TaskApp, request: Request, page: Page) -> dict[str, list[str]]:
    """The posted form (URL-encoded), after checking its CSRF token."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise MalformedRequestError("send the form URL-encoded, from the inbox's pages")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > app.max_body_bytes:
            raise RequestTooLargeError(app.max_body_bytes)
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise MalformedRequestError("the form is not UTF-8") from None
    sent = (form.get("csrf") or [""])[0]
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise CsrfTokenError()
    return form


def _run_id(request: Request) -> str:
    return run_id_field(request.path_params["run_id"], "run id")


# -- reading the store ------------------------------------------------------------------------


def _pending_run(app: TaskApp, stored: Checkpoint) -> PendingRun:
    journal = decode_journal(stored, app.runs.serde)
    raw = getattr(journal, "deadlines", None) or {}
    deadlines = {site: float(when[0]) for site, when in raw.items() if site in journal.pending}
    return PendingRun(
        run_id=stored.run_id,
        task_name=stored.task_name,
        version=stored.version,
        paused_at=stored.updated_at,
        created_at=stored.created_at,
        started_by=journal.started_by,
        items=tuple(asked(site, value) for site, value in journal.pending.items()),
        deadlines=deadlines,
    )


async def _waiting(app: TaskApp) -> list[Checkpoint]:
    return await scan(app.checkpointer, status="paused", limit=_INBOX_LIMIT, oldest_first=True)


async def _run_view(app: TaskApp, run_id: str, **extra: Any) -> RunView:
    stored = await app.runs.load(run_id)
    state = await get_run(app.checkpointer, run_id)
    if stored is None or state is None:
        raise UnknownRunError(run_id)
    journal = decode_journal(stored, app.runs.serde)
    pending = _pending_run(app, stored) if stored.status == "paused" else None
    partials: list[tuple[int, Any]] = []
    after = max(-1, stored.delivered - 1 - _TAIL)
    load_partials = getattr(app.checkpointer, "load_partials", None)
    if load_partials is not None:
        rows = await resolve(load_partials(run_id, after, _TAIL + 50))
        partials = [(seq, app.runs.serde.loads(data)) for seq, data in rows]
    else:
        after = stored.delivered - 1
    return RunView(
        state,
        pending,
        timeline(stored, app.runs.serde, journal.pending),
        partials,
        after + 1,
        partials_kept=load_partials is not None,
        **extra,
    )


# -- pages ---------------------------------------------------------------------------------------


async def _inbox(app: TaskApp, request: Request, page: Page) -> Response:
    runs = [_pending_run(app, stored) for stored in await _waiting(app)]
    body = inbox_body(page, runs)
    title = f"({sum(len(r.items) for r in runs)}) Waiting on you" if runs else "Waiting on you"
    return _page_response(layout(page, title, "inbox", body, page.url("/ui/feed")))


async def _runs(app: TaskApp, request: Request, page: Page) -> Response:
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequestError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    task = query.get("task") or None
    cursor = query.get("cursor")
    limit = 50
    runs = await scan(
        app.checkpointer,
        status=typing.cast(RunStatus | None, status),
        task_name=task,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    next_cursor = (
        encode_cursor(runs[-1].created_at, runs[-1].run_id) if len(runs) == limit else None
    )
    body = runs_body(page, runs, sorted(app.tasks), status, task, next_cursor)
    return _page_response(layout(page, "Runs", "runs", body, None))


async def _run(app: TaskApp, request: Request, page: Page) -> Response:
    run_id = _run_id(request)
    view = await _run_view(app, run_id)
    body = run_body(page, view)
    feed = page.url("/ui/feed", run=run_id)
    return _page_response(layout(page, f"{view.state.task_name} {run_id}", "runs", body, feed))


# -- actions ---------------------------------------------------------------------------------------


async def _answer(app: TaskApp, request: Request, page: Page) -> Response:
    run_id = _run_id(request)
    form = await _form(app, request, page)
    sites = list(dict.fromkeys(form.get("site", [])))
    if not sites:
        raise InvalidRequestError("the form names no interrupt to answer")
    stored = await app.runs.load(run_id)
    if stored is None:
        raise UnknownRunError(run_id)
    journal = decode_journal(stored, app.runs.serde)
    if any(site not in journal.pending for site in sites):
        return _conflict(request, page, run_id, _answered(app, stored, sites), form)
    items: dict[str, Asked] = {site: asked(site, journal.pending[site]) for site in sites}
    found = read_answers(items, sites, form)
    if found.errors:
        if _wants_json(request):
            return JSONResponse(
                {
                    "type": "InvalidAnswer",
                    "message": "Some answers need a fix.",
                    "errors": found.errors,
                },
                422,
            )
        view = await _run_view(app, run_id, submitted=form, errors=found.errors)
        return _page_response(
            layout(page, "Fix the answer", "runs", run_body(page, view), None), 422
        )
    task = app.task(stored.task_name)
    try:
        await app.runs.resume(task, Command(answers=found.values), run_id, page.principal, None)
    except (InterruptAnsweredError, RunConflictError):
        # Answered by another request (or process) between our read and our write.
        now = await app.runs.load(run_id)
        return _conflict(request, page, run_id, _answered(app, now, sites), form)
    if _wants_json(request):
        return JSONResponse({"answered": sites, "run_id": run_id})
    back = (form.get("next") or [""])[0]
    target = page.url("/ui") if back == "inbox" else page.run_url(run_id)
    return RedirectResponse(target, 303)


def _answered(
    app: TaskApp, stored: Checkpoint | None, sites: list[str]
) -> dict[str, tuple[Any, Any]]:
    """What `sites` were answered with, and by whom, as the store says now."""
    if stored is None:
        return {}
    journal = decode_journal(stored, app.runs.serde)
    return {
        site: (journal.answers[site], journal.answered_by.get(site))
        for site in sites
        if site in journal.answers
    }


def _conflict(
    request: Request,
    page: Page,
    run_id: str,
    answered: dict[str, tuple[Any, Any]],
    form: dict[str, list[str]],
) -> Response:
    """Someone else answered first (or the run no longer waits): say who and what."""
    if answered:
        lines = [
            html(
                "<li><strong>$who</strong> answered <code>$site</code> first, with "
                '<pre class="value">$value</pre></li>',
                who=who if who is not None else "Someone",
                site=site,
                value=pretty(value, 800),
            )
            for site, (value, who) in answered.items()
        ]
        text = html(
            "<p>Someone else answered first. Your answer was not sent; it is still in the "
            "form.</p><ul>$lines</ul>",
            lines=join(lines),
        )
    else:
        text = Markup(
            "<p>This interrupt is no longer waiting (the run moved on, or it was cancelled). "
            "Your answer was not sent; it is still in the form.</p>"
        )
    body = {
        "type": "InterruptAnsweredError",
        "message": "someone else answered first",
        "answered": {
            site: {"value": plain(v), "by": plain(w)} for site, (v, w) in answered.items()
        },
        "html": str(text),
    }
    if _wants_json(request):
        return JSONResponse(body, 409)
    mine = {key: values for key, values in form.items() if key not in ("csrf", "next")}
    markup = html(
        '<div class="empty"><h1>Answered by someone else</h1>$text<h2>What you sent</h2>'
        '<pre class="value">$mine</pre><p><a href="$url">Back to the run</a></p></div>',
        text=text,
        mine=json.dumps(mine, indent=2, ensure_ascii=False),
        url=page.run_url(run_id),
    )
    return _page_response(layout(page, "Answered by someone else", "inbox", markup, None), 409)


async def _cancel(app: TaskApp, request: Request, page: Page) -> Response:
    run_id = _run_id(request)
    await _form(app, request, page)
    if await app.cancel(run_id) is None:
        raise UnknownRunError(run_id)
    return RedirectResponse(page.run_url(run_id), 303)


async def _delete(app: TaskApp, request: Request, page: Page) -> Response:
    run_id = _run_id(request)
    await _form(app, request, page)
    if not await delete_run(app.checkpointer, run_id):
        raise UnknownRunError(run_id)
    return RedirectResponse(page.url("/ui/runs"), 303)


# -- live updates ---------------------------------------------------------------------------------


async def _feed(app: TaskApp, request: Request, page: Page) -> Response:
    run = request.query_params.get("run")
    run_id = run_id_field(run, "run") if run is not None else None
    return StreamingResponse(
        _updates(app, request, page, run_id),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        media_type="text/event-stream",
    )


async def _updates(
    app: TaskApp, request: Request, page: Page, run_id: str | None
) -> AsyncIterator[str]:
    """An `update` event with the page's regions each time what they show changes.

    Ends after `_FEED_SECONDS` (the browser reconnects at once and gets the regions
    again): a server that stops waits for open responses, and this one never ends itself.
    """
    yield "retry: 500\n\n"
    last: object = None
    quiet = opened = time.monotonic()
    while time.monotonic() - opened < _FEED_SECONDS and not await request.is_disconnected():
        page = Page(page.base, page.csrf, time.time(), page.principal)
        try:
            data, key = await _snapshot(app, page, run_id)
        except UnknownRunError:
            yield _sse("gone", json.dumps({"run_id": run_id}))
            return
        except TinyTasksError as error:  # the store failed: say so, try again
            data, key = json.dumps({"error": str(error)}), ("error", str(error))
        if key != last:
            yield _sse("update", data)
            last, quiet = key, time.monotonic()
        elif time.monotonic() - quiet >= app.ping_interval:
            yield ": ping\n\n"
            quiet = time.monotonic()
        await asyncio.sleep(app.poll_interval)


async def _snapshot(app: TaskApp, page: Page, run_id: str | None) -> tuple[str, object]:
    """The update for the page (inbox, or run `run_id`) and a key that changes with it."""
    if run_id is None:
        waiting = await _waiting(app)
        key: object = tuple((stored.run_id, stored.version) for stored in waiting)
        runs = [_pending_run(app, stored) for stored in waiting]
        count = sum(len(run.items) for run in runs)
        return feed_data(inbox_regions(page, runs), count=count), key
    stored = await app.runs.load(run_id)
    if stored is None:
        raise UnknownRunError(run_id)
    key = (stored.version, stored.status)
    view = await _run_view(app, run_id)
    return feed_data(run_regions(page, view), status=stored.status, delivered=stored.delivered), key


def _sse(kind: str, data: str) -> str:
    return f"event: {kind}\ndata: {data}\n\n"


# -- static files ----------------------------------------------------------------------


@functools.cache
def _static_text(name: str) -> bytes:
    return (importlib.resources.files(__package__) / "static" / name).read_bytes()


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    media = _STATIC.get(name)
    if media is None:
        return Response("not found", 404, media_type="text/plain")
    return Response(
        _static_text(name),
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        media_type=media,
    )
