"""`Client`: a `TaskApp`'s runs with the interface of local tasks.

`client.task(name)` reads like a local `Task`: call it to stream
`Event(partial, snapshot, interrupt)`, `invoke` it for the result, `resume` it with an
answer, `submit` it. A stream that loses its connection reconnects by itself, to the
same URL (another server process on the same store may answer it by then) with
`Last-Event-ID`, so its consumer sees each partial once, in order.

Values arrive as plain JSON (a dataclass as a dict, a tuple as a list, ...): the
server's types are not rebuilt.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from .._run import NO_INPUT
from .._values import Command, Event, Interrupt, Snapshot
from ..errors import RemoteError, RunCancelled, RunFailedError, TaskInterrupted

__all__ = ["Client", "RemoteStream", "RemoteTask"]

_SSE = {"Accept": "text/event-stream"}


class Client:
    """A client of a `TaskApp` at `base_url` (use it as `async with Client(...)`).

    `reconnect_timeout`: how long a stream keeps trying to reconnect after its
    connection broke before it raises the last transport error. `headers` go with
    every request (an `Authorization` header for the app's `auth` hook, say).
    `http`: an `httpx.AsyncClient` of your own (its base URL is then used as it is).
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = 30.0,
        reconnect_timeout: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.reconnect_timeout = reconnect_timeout
        self._own = http is None
        self.http = http or httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, read=None),
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (an `http` client you passed in stays open)."""
        if self._own:
            await self.http.aclose()

    def task(self, name: str) -> RemoteTask:
        """The served task `name`, with the methods of a local `Task`."""
        return RemoteTask(self, name)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; raises `RemoteError` for an error response."""
        response = await self.http.request(method, path, json=json, headers=headers, params=params)
        if response.status_code >= 400:
            raise _remote_error(response.status_code, response.content)
        return response

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run as `GET /runs/{id}` shows it, or `None` when it is not stored."""
        try:
            response = await self.request("GET", _run_path(run_id))
        except RemoteError as error:
            if error.status == 404 and error.type == "UnknownRunError":
                return None
            raise
        found: dict[str, Any] = response.json()
        return found

    async def list_runs(
        self,
        *,
        status: str | None = None,
        task: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """One page of `GET /runs`: `{"runs": [...], "next_cursor": ...}`."""
        params = {"status": status, "task": task, "cursor": cursor, "limit": limit}
        response = await self.request(
            "GET", "/runs", params={k: v for k, v in params.items() if v is not None}
        )
        page: dict[str, Any] = response.json()
        return page

    async def interrupts(self, *, task: str | None = None) -> list[dict[str, Any]]:
        """Every pending interrupt across runs, oldest first (all pages)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if task is not None:
                params["task"] = task
            if cursor is not None:
                params["cursor"] = cursor
            page = (await self.request("GET", "/interrupts", params=params)).json()
            found.extend(page["interrupts"])
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    async def cancel_run(self, run_id: str) -> dict[str, Any] | None:
        """Ask for the run to be cancelled (as `tiny_tasks.cancel_run`); returns the run
        as `GET /runs/{id}` shows it then, or `None` when it is not stored."""
        try:
            response = await self.request("POST", _run_path(run_id) + "/cancel")
        except RemoteError as error:
            if error.status == 404 and error.type == "UnknownRunError":
                return None
            raise
        found: dict[str, Any] = response.json()
        return found

    async def send(self, run_id: str, topic: str, value: Any) -> int:
        """Send `value` on `topic` to the run (as `tiny_tasks.send`); returns the
        message id. Raises `RemoteError` (404, `NoCheckpointError`) when no unfinished
        run of that id is stored."""
        response = await self.request(
            "POST", _run_path(run_id) + "/send", json={"topic": topic, "value": value}
        )
        message_id: int = response.json()["message_id"]
        return message_id

    async def delete_run(self, run_id: str) -> bool:
        """Delete the run; returns whether it was stored."""
        try:
            await self.request("DELETE", _run_path(run_id))
        except RemoteError as error:
            if error.status == 404:
                return False
            raise
        return True


class RemoteTask:
    """A task served by a `TaskApp`, with the interface of a local `Task`."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"RemoteTask({self.name!r})"

    def __call__(self, input: Any = NO_INPUT, /, *, run_id: str | None = None) -> RemoteStream:
        """Start (or re-attach to, or resume with a `Command`) a run; returns its stream.

        Without `run_id`, a fresh one is made here (`stream.run_id`), so the stream can
        reconnect even if the first response never arrived.
        """
        run_id = run_id or uuid.uuid4().hex
        if isinstance(input, Command):
            return RemoteStream(self.client, run_id, "POST", *_resume_request(run_id, input))
        body = {"task": self.name, "run_id": run_id}
        if input is not NO_INPUT:
            body["input"] = input
        return RemoteStream(self.client, run_id, "POST", "/runs", body)

    def resume(
        self,
        value: Any = None,
        /,
        *,
        run_id: str,
        answers: dict[str, Any] | None = None,
    ) -> RemoteStream:
        """Answer the run's pending interrupt (or `answers` by interrupt id) and stream
        the rest of it. Raises `RemoteError` (type `InterruptAnsweredError`, 409) when
        someone answered first."""
        return self(Command(value, answers=answers), run_id=run_id)

    async def invoke(self, input: Any = NO_INPUT, /, *, run_id: str | None = None) -> Any:
        """Run to the end and return the result; raises `TaskInterrupted` on a pause,
        `RunFailedError` / `RunCancelled` when the run failed or was cancelled."""
        stream = self(input, run_id=run_id)
        async for _ in stream:
            pass
        if stream.interrupts:
            raise TaskInterrupted(stream.run_id, stream.interrupts)
        return stream.result

    async def submit(self, input: Any = NO_INPUT, /, *, run_id: str | None = None) -> str:
        """Start a run without following it; returns its run id. With the run id of an
        existing run and the same input, starts nothing."""
        run_id = run_id or uuid.uuid4().hex
        body: dict[str, Any] = {"task": self.name, "run_id": run_id}
        if input is not NO_INPUT:
            body["input"] = input
        await self.client.request("POST", "/runs", json=body)
        return run_id


class RemoteStream:
    """An async iterator of `Event(partial, snapshot, interrupt)` for one remote run.

    After it is exhausted, `result` holds the run's result (`None` when it paused) and
    `interrupts` the interrupts it paused on, as on a local `TaskStream`. It reconnects
    by itself when its connection breaks (see `Client`).
    """

    def __init__(
        self, client: Client, run_id: str, method: str, path: str, body: dict[str, Any]
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.result: Any = None
        self.interrupts: list[Interrupt] = []
        self.last_event_id = -1
        self._request: tuple[str, str, dict[str, Any]] | None = (method, path, body)
        self._events = self._run()

    def __aiter__(self) -> RemoteStream:
        return self

    async def __anext__(self) -> Event[Any]:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Stop following the run (it goes on on the server)."""
        await self._events.aclose()

    async def _run(self) -> AsyncGenerator[Event[Any], None]:
        broken_since: float | None = None
        delay = 0.05
        while True:
            try:
                async for item in self._connect():
                    broken_since, delay = None, 0.05
                    if isinstance(item, Event):
                        yield item
                    else:
                        return
            except (httpx.TransportError, _Retry) as error:
                now = time.monotonic()
                broken_since = broken_since or now
                if now - broken_since > self.client.reconnect_timeout:
                    raise (error.cause if isinstance(error, _Retry) else error) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _connect(self) -> AsyncIterator[Event[Any] | None]:
        """One connection: its events, then `None` once the stream ended for good."""
        headers = dict(_SSE)
        if self.last_event_id >= 0:
            headers["Last-Event-ID"] = str(self.last_event_id)
        if self._request is not None:
            method, path, body = self._request
            call = self.client.http.stream(method, path, json=body, headers=headers)
        else:
            call = self.client.http.stream(
                "GET", _run_path(self.run_id) + "/stream", headers=headers
            )
        async with call as response:
            if response.status_code >= 400:
                error = _remote_error(response.status_code, await response.aread())
                if response.status_code >= 500:
                    raise _Retry(error)
                raise error
            self._request = None  # the run exists now: reconnect by watching it
            async for kind, event_id, data in _parse(response):
                if kind == "partial":
                    seq = int(event_id) if event_id is not None else self.last_event_id + 1
                    if seq <= self.last_event_id:
                        continue
                    self.last_event_id = seq
                    yield Event(data, self._snapshot(), None)
                elif kind == "interrupt":
                    interrupt = Interrupt(data["value"], data["id"])
                    self.interrupts.append(interrupt)
                    yield Event(None, self._snapshot(), interrupt)
                elif kind in ("done", "error", "cancelled"):
                    if self.interrupts:
                        yield None
                        return
                    self._end(kind, data)
                    yield None
                    return
            if self.interrupts:  # every interrupt event came; the server closed after them
                yield None
                return
        raise _Retry(httpx.ReadError("the event stream ended before the run did"))

    def _end(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "done":
            self.result = data.get("result")
        elif kind == "cancelled":
            raise RunCancelled(self.run_id, data.get("message"))
        else:
            raise RunFailedError(self.run_id, str(data.get("type")), str(data.get("message")))

    def _snapshot(self) -> Snapshot:
        return Snapshot(run_id=self.run_id, pending=tuple(self.interrupts))


class _Retry(Exception):
    def __init__(self, cause: Exception) -> None:
        self.cause = cause


async def _parse(response: httpx.Response) -> AsyncIterator[tuple[str, str | None, Any]]:
    """The events of an SSE response: (event type, id, decoded data)."""
    kind, event_id, data = "message", None, list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield kind, event_id, json.loads("\n".join(data))
            kind, event_id, data = "message", None, list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def _resume_request(run_id: str, command: Command) -> tuple[str, dict[str, Any]]:
    body = (
        {"answers": command.answers} if command.answers is not None else {"resume": command.resume}
    )
    return _run_path(run_id) + "/resume", body


def _run_path(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def _remote_error(status: int, content: bytes) -> RemoteError:
    try:
        body = json.loads(content)
        if not isinstance(body, dict):
            raise ValueError(body)
    except ValueError:
        body = {"type": "HTTPError", "message": content.decode("utf-8", "replace")[:500]}
    return RemoteError(status, str(body.get("type")), str(body.get("message")), body)
