"""`TaskApp`: the ASGI app that serves tasks' runs over HTTP.

One route table; each handler parses the request, calls the run machinery
(`LiveRuns`) or the public inspection API, and shapes a response. Errors become JSON
responses in one place (`_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .._cancel import cancel_run
from .._driver import DEFAULT_LEASE_SECONDS, Driver
from .._inspect import delete_run, get_run
from .._journal import decode_journal
from .._run import NO_INPUT
from .._task import Task
from .._values import Command
from .._waits import send
from ..errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidRequestError,
    NoCheckpointError,
    UnknownRunError,
    UnknownTaskError,
)
from ..savers.base import Checkpointer, RunStatus, check_checkpointer
from ._errors import error_body, status_of
from ._json import dumps, plain
from ._listing import scan
from ._live import LiveRuns, Watch
from ._openapi import openapi_document
from ._requests import (
    check_input,
    decode_cursor,
    encode_cursor,
    fields_of,
    read_json,
    run_id_field,
    string_field,
)
from ._sse import event, partial_event, watch
from ._ui import ui_routes

__all__ = ["TaskApp"]

Auth = Callable[[Request], Any]
Handler = Callable[["TaskApp", Request], Awaitable[Response]]

_STATUSES: tuple[str, ...] = typing.get_args(RunStatus)
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _endpoint(handler: Handler) -> Callable[[TaskApp, Request], Awaitable[Response]]:
    """Answer every exception of `handler` as a JSON error (never a traceback)."""

    @functools.wraps(handler)
    async def wrapped(app: TaskApp, request: Request) -> Response:
        try:
            return await handler(app, request)
        except Exception as error:
            return _error_response(error)

    return wrapped


def _error_response(error: BaseException) -> Response:
    status = status_of(error)
    return _json(error_body(error, status), status)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status, headers, media_type="application/json")


class TaskApp:
    """An ASGI app serving the runs of `tasks` stored in `checkpointer`.

    Mount it in FastAPI / Starlette / Litestar, or serve it with
    `tiny-tasks serve STORE --app pkg.module`. `auth(request)` (plain or async) returns
    the caller's principal (recorded as who started a run and who answered each
    interrupt; any value, stored as its `str`) or raises: `AccessDeniedError` gives a
    403, anything else a 401. `ping_interval`: seconds between keep-alive comments on
    an idle event stream. `poll_interval`: how often a stream of a run driven by
    another process looks for news in the store. `orphan_after`: a running run
    without a lease that has not been written for this many seconds is taken over
    when a client watches it (its driver died). `ui=True` serves the inbox under `/ui`.
    `keep`: runs started here keep their outcome when they finish (as submitted runs
    do), so their streams can be replayed and `GET /runs/{id}` shows how they ended.
    `lease_seconds`: the lease a run driven here holds (renewed every third of it);
    when this process dies, another takes its runs over once their leases expire.

    Raises `CheckpointerTypeError` for something that is not a checkpointer and
    `ValueError` for two tasks of one name.
    """

    def __init__(
        self,
        tasks: Sequence[Task[Any, Any, Any]],
        checkpointer: Checkpointer,
        *,
        auth: Auth | None = None,
        ui: bool = True,
        ping_interval: float = 15.0,
        poll_interval: float = 0.2,
        orphan_after: float = 30.0,
        max_body_bytes: int = 1 << 20,
        keep: bool = True,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        check_checkpointer(checkpointer)
        by_name: dict[str, Task[Any, Any, Any]] = {}
        for task in tasks:
            if task.name in by_name and by_name[task.name] is not task:
                raise ValueError(f"two tasks are named {task.name!r}; task names must differ")
            by_name[task.name] = task
        self.tasks = by_name
        self.checkpointer = checkpointer
        self.auth = auth
        self.ping_interval = ping_interval
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        # Runs driven here keep their outcome (so a stream can be replayed, and its
        # end known, after the run finished) and hold leases of `lease_seconds`.
        driver = Driver(keep=keep, lease_seconds=lease_seconds, renew_seconds=lease_seconds / 3)
        self.runs = LiveRuns(by_name, checkpointer, orphan_after, partial_event, driver)
        self._tasks: set[asyncio.Task[Any]] = set()
        routes = [
            Route("/runs", self._bind(_start), methods=["POST"]),
            Route("/runs", self._bind(_list), methods=["GET"]),
            Route("/runs/{run_id}", self._bind(_show), methods=["GET"]),
            Route("/runs/{run_id}", self._bind(_delete), methods=["DELETE"]),
            Route("/runs/{run_id}/stream", self._bind(_stream), methods=["GET"]),
            Route("/runs/{run_id}/resume", self._bind(_resume), methods=["POST"]),
            Route("/runs/{run_id}/cancel", self._bind(_cancel), methods=["POST"]),
            Route("/runs/{run_id}/send", self._bind(_send), methods=["POST"]),
            Route("/interrupts", self._bind(_interrupts), methods=["GET"]),
            Route("/openapi.json", self._bind(_openapi), methods=["GET"]),
        ]
        if ui:
            routes += ui_routes(self)
        self._app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: _http_error},
            lifespan=self._lifespan,
        )

    def _bind(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        wrapped = _endpoint(handler)
        return functools.partial(wrapped, self)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI entry point."""
        await self._app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()

    async def aclose(self) -> None:
        """Stop driving the runs this app drives (they stay stored where they are, for
        another server process or a worker to continue)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runs.aclose()

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of the endpoints (served at `/openapi.json`)."""
        return openapi_document()

    # -- helpers for the handlers -----------------------------------------------------

    async def principal(self, request: Request) -> str | None:
        """Who makes `request`, by the `auth` hook (`None` without one)."""
        if self.auth is None:
            return None
        try:
            found = self.auth(request)
            if inspect.isawaitable(found):
                found = await found
        except (AccessDeniedError, PermissionError) as error:
            raise AccessDeniedError(str(error) or "access denied") from None
        except Exception as error:
            raise AuthenticationError(str(error) or type(error).__name__) from None
        return None if found is None else str(found)

    def task(self, name: str) -> Task[Any, Any, Any]:
        """The served task `name`; `UnknownTaskError` otherwise."""
        task = self.tasks.get(name)
        if task is None:
            raise UnknownTaskError(name, sorted(self.tasks))
        return task

    def location(self, request: Request, run_id: str) -> str:
        """The URL path of run `run_id` (under the path the app is mounted at)."""
        return f"{request.scope.get('root_path', '')}/runs/{quote(run_id, safe='')}"

    def stream_response(
        self,
        request: Request,
        run_id: str,
        after: int,
        status: str,
        code: int = 200,
        following: Watch | None = None,
    ) -> StreamingResponse:
        """The SSE response for run `run_id` after position `after`."""
        cancel = _flag(request, "cancel_on_disconnect")
        return StreamingResponse(
            self._events(run_id, after, status, following, cancel),
            code,
            {**_SSE_HEADERS, "Location": self.location(request, run_id)},
            media_type="text/event-stream",
        )

    async def _events(
        self,
        run_id: str,
        after: int,
        status: str,
        following: Watch | None,
        cancel_on_disconnect: bool,
    ) -> AsyncIterator[str]:
        ended = False
        try:
            async for text in watch(
                self.runs,
                run_id,
                after,
                ping_interval=self.ping_interval,
                poll_interval=self.poll_interval,
                status=status,
                following=following,
            ):
                yield text
            ended = True
        except Exception as error:  # the response has started: end it with an error event
            ended = True
            body = error_body(error, status_of(error))
            yield event("error", {"type": body["type"], "message": body["message"]})
        finally:
            if cancel_on_disconnect and not ended:
                # The client left before the run ended. This generator is being
                # cancelled: the cancel request goes on in a task of its own.
                self._background(self.cancel(run_id))

    async def cancel(self, run_id: str) -> Any:
        """Ask for run `run_id` to be cancelled; a paused or sleeping run nobody
        drives is unwound here at once. Returns its fields (`None` if not stored)."""
        info = await cancel_run(self.checkpointer, run_id)
        if info is not None and run_id not in self.runs.live:
            stored = await self.runs.load(run_id)
            if stored is not None:
                await self.runs.adopt(stored)
        return info

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "HTTPError")
    return _json({"type": kind, "message": str(error.detail)}, error.status_code)


def _flag(request: Request, name: str) -> bool:
    text = request.query_params.get(name, "false").lower()
    if text not in ("true", "false", "1", "0", ""):
        raise InvalidRequestError(f"{name!r} must be true or false, not {text[:40]!r}")
    return text in ("true", "1")


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _after(request: Request, default: int = -1) -> int:
    """The position a stream resumes after: `Last-Event-ID`, else `?after=N`."""
    text = request.headers.get("last-event-id") or request.query_params.get("after")
    if text is None or text == "":
        return default
    try:
        after = int(text)
    except ValueError:
        after = -2
    if after < -1:
        raise InvalidRequestError(
            f"Last-Event-ID / after must be an integer >= -1 (a partial's id), not {text[:40]!r}"
        )
    return after


def _limit(request: Request) -> int:
    text = request.query_params.get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise InvalidRequestError(f"'limit' must be an integer from 1 to 1000, not {text[:40]!r}")
    return int(text)


def _path_run_id(request: Request) -> str:
    return run_id_field(request.path_params["run_id"], "run id")


# -- handlers ---------------------------------------------------------------------------


async def _start(app: TaskApp, request: Request) -> Response:
    principal = await app.principal(request)
    body = fields_of(
        await read_json(request, app.max_body_bytes), ("task", "input", "run_id"), ("task",)
    )
    task = app.task(string_field(body, "task") or "")
    key = request.headers.get("idempotency-key")
    run_id = run_id_field(body["run_id"]) if body.get("run_id") is not None else None
    if key is not None:
        key = run_id_field(key, "Idempotency-Key")
        if run_id is not None and run_id != key:
            raise InvalidRequestError(
                f"run_id {run_id!r} and Idempotency-Key {key!r} differ; send one of them"
            )
        run_id = key
    run_id = run_id or uuid.uuid4().hex
    # Without an input, a stored run is continued with its own (a re-attach).
    given = check_input(task, body["input"]) if "input" in body else NO_INPUT
    streaming = _wants_stream(request)
    started = await app.runs.start(
        task, given, run_id, principal, streaming, lambda: check_input(task, None)
    )
    code = 201 if started is not None else 200
    if streaming:
        return app.stream_response(request, run_id, _after(request), "running", code, started)
    state = await get_run(app.checkpointer, run_id)
    data = _run_json(state) if state is not None else {"run_id": run_id, "status": "done"}
    return _json(data, code, {"Location": app.location(request, run_id)})


async def _list(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in _STATUSES:
        raise InvalidRequestError(f"'status' must be one of {', '.join(_STATUSES)}, not {status!r}")
    cursor = request.query_params.get("cursor")
    limit = _limit(request)
    runs = await scan(
        app.checkpointer,
        status=typing.cast(RunStatus | None, status),
        task_name=request.query_params.get("task") or None,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    items = [{**plain(run.info()), "pending": list(run.pending)} for run in runs]
    return _json({"runs": items, "next_cursor": _next(runs, limit)})


def _next(runs: list[Any], limit: int) -> str | None:
    if len(runs) < limit:
        return None
    return encode_cursor(runs[-1].created_at, runs[-1].run_id)


async def _show(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    run_id = _path_run_id(request)
    state = await get_run(app.checkpointer, run_id)
    if state is None:
        raise UnknownRunError(run_id)
    return _json(_run_json(state), headers={"ETag": f'"{state.version}"'})


def _run_json(state: Any) -> dict[str, Any]:
    data: dict[str, Any] = plain(state)
    data["pending"] = [{"id": i.id, "value": plain(i.value)} for i in state.pending]
    return data


async def _delete(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    run_id = _path_run_id(request)
    if not await delete_run(app.checkpointer, run_id):
        raise UnknownRunError(run_id)
    return Response(status_code=204)


async def _stream(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    run_id = _path_run_id(request)
    after = _after(request)
    stored = await app.runs.load(run_id)
    if stored is None and run_id not in app.runs.live:
        raise UnknownRunError(run_id)
    return app.stream_response(request, run_id, after, stored.status if stored else "running")


async def _resume(app: TaskApp, request: Request) -> Response:
    principal = await app.principal(request)
    run_id = _path_run_id(request)
    body = fields_of(await read_json(request, app.max_body_bytes), ("answers", "resume"))
    if ("answers" in body) == ("resume" in body):
        raise InvalidRequestError("send exactly one of 'answers' (by interrupt id) or 'resume'")
    if "answers" in body:
        answers = body["answers"]
        if not isinstance(answers, dict) or not answers:
            raise InvalidRequestError(
                "'answers' must be a non-empty object of interrupt id -> answer"
            )
        command = Command(answers=answers)
    else:
        command = Command(resume=body["resume"])
    stored = await app.runs.load(run_id)
    if stored is None:
        raise NoCheckpointError(run_id)
    task = app.task(stored.task_name)
    if_match = request.headers.get("if-match")
    if if_match is not None:
        if_match = if_match.strip().removeprefix("W/").strip('"')
    streaming = _wants_stream(request)
    started = await app.runs.resume(task, command, run_id, principal, if_match, streaming)
    if streaming:
        after = _after(request, stored.delivered - 1)
        return app.stream_response(request, run_id, after, "running", 200, started)
    state = await get_run(app.checkpointer, run_id)
    data = _run_json(state) if state is not None else {"run_id": run_id, "status": "done"}
    return _json(data, headers={"Location": app.location(request, run_id)})


async def _cancel(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    run_id = _path_run_id(request)
    if await app.cancel(run_id) is None:
        raise UnknownRunError(run_id)
    state = await get_run(app.checkpointer, run_id)
    data = _run_json(state) if state is not None else {"run_id": run_id, "status": "cancelled"}
    return _json(data, 202, {"Location": app.location(request, run_id)})


async def _send(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    run_id = _path_run_id(request)
    body = fields_of(await read_json(request, app.max_body_bytes), ("topic", "value"), ("topic",))
    topic = string_field(body, "topic")
    if not topic:
        raise InvalidRequestError("'topic' must be a non-empty string")
    message_id = await send(app.checkpointer, run_id, topic, body.get("value"))
    stored = await app.runs.load(run_id)
    if stored is not None and run_id not in app.runs.live:
        await app.runs.adopt(stored)  # a sleeper it woke goes on at once
    return _json({"run_id": run_id, "message_id": message_id}, 202)


async def _interrupts(app: TaskApp, request: Request) -> Response:
    await app.principal(request)
    cursor = request.query_params.get("cursor")
    limit = _limit(request)
    runs = await scan(
        app.checkpointer,
        status="paused",
        task_name=request.query_params.get("task") or None,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit,
        oldest_first=True,
    )
    items = []
    for run in runs:
        for site, value in decode_journal(run, app.runs.serde).pending.items():
            items.append(
                {
                    "run_id": run.run_id,
                    "task_name": run.task_name,
                    "id": site,
                    "value": plain(value),
                    "version": run.version,
                    "created_at": run.created_at,
                    "updated_at": run.updated_at,
                }
            )
    return _json({"interrupts": items, "next_cursor": _next(runs, limit)})


async def _openapi(app: TaskApp, request: Request) -> Response:
    return _json(app.openapi())
