"""`TaskApp` over real HTTP (uvicorn on 127.0.0.1, httpx): every endpoint, its errors,
and the event stream, on every saver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from http_server import events, read_stream, replayed, serving
from starlette.requests import Request

from tiny_tasks import TaskContext, get_run, interrupt, task
from tiny_tasks.errors import AccessDeniedError
from tiny_tasks.http import TaskApp


@task
async def review(doc: str) -> AsyncIterator[str]:
    yield f"reading {doc}"
    answer = interrupt({"approve": doc})
    yield f"answer: {answer}"


@task
async def approvals(count: int) -> AsyncIterator[Any]:
    for number in range(count):
        yield interrupt(number)


@task
async def fails(_: None) -> AsyncIterator[str]:
    yield "about to fail"
    raise KeyError("no such thing")


@dataclass
class Order:
    item: str
    quantity: int


@task
async def order(placed: Order) -> int:
    return placed.quantity * 2


GATES: dict[str, asyncio.Event] = {}


@task
async def gated(name: str) -> AsyncIterator[int]:
    await GATES[name].wait()
    yield 0
    yield 1


@task
async def waits(_: Any, ctx: TaskContext) -> AsyncIterator[str]:
    yield "waiting"
    value = await ctx.recv("go")
    yield f"got {value}"


TASKS = [review, approvals, fails, order, gated, waits]


def who(request: Request) -> str | None:
    user = request.headers.get("x-user")
    if user == "mallory":
        raise AccessDeniedError("mallory may not touch runs")
    if user == "":
        raise ValueError("an empty x-user header")
    return user


@pytest.fixture
async def http(saver: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = TaskApp(TASKS, saver, auth=who, ping_interval=0.05)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


async def started(http: httpx.AsyncClient, **body: Any) -> list[Any]:
    """Start a run and follow its stream until it pauses or ends; its events."""
    status, seen = await read_stream(http, "POST", "/runs", json=body)
    assert status == 201, seen
    return seen


async def stored_runs(http: httpx.AsyncClient) -> list[tuple[str, str, int]]:
    page = (await http.get("/runs", params={"limit": 1000})).json()
    return [(run["run_id"], run["status"], run["version"]) for run in page["runs"]]


async def test_a_run_starts_pauses_and_is_answered(http: httpx.AsyncClient, saver: Any) -> None:
    started = await http.post(
        "/runs",
        json={"task": "review", "input": "a.txt", "run_id": "r1"},
        headers={"x-user": "ann"},
    )
    assert started.status_code == 201
    assert started.headers["location"] == "/runs/r1"
    assert (started.json()["run_id"], started.json()["started_by"]) == ("r1", "ann")

    status, live = await read_stream(http, "GET", "/runs/r1/stream")  # while it runs
    status, seen = await read_stream(http, "GET", "/runs/r1/stream")  # once it paused
    assert live[1:] == seen[1:]
    assert status == 200
    assert seen == [
        ("ready", "-1", {"run_id": "r1", "status": "paused", "after": -1}),
        *replayed(saver, [("partial", "0", "reading a.txt")]),
        ("interrupt", None, {"id": "review/interrupt#0", "value": {"approve": "a.txt"}}),
    ]
    shown = await http.get("/runs/r1")
    assert shown.headers["etag"] == f'"{shown.json()["version"]}"'
    assert shown.json()["pending"] == [{"id": "review/interrupt#0", "value": {"approve": "a.txt"}}]

    status, seen = await read_stream(
        http,
        "POST",
        "/runs/r1/resume",
        json={"answers": {"review/interrupt#0": "yes"}},
        headers={"x-user": "bob", "If-Match": shown.headers["etag"]},
    )
    assert status == 200
    assert seen[1:] == [("partial", "1", "answer: yes"), ("done", None, {"result": None})]


async def test_who_started_and_who_answered_are_in_the_journal(
    http: httpx.AsyncClient, saver: Any
) -> None:
    await http.post(
        "/runs", json={"task": "approvals", "input": 2, "run_id": "w"}, headers={"x-user": "ann"}
    )
    await read_stream(http, "GET", "/runs/w/stream")
    answered = await http.post("/runs/w/resume", json={"resume": "ok"}, headers={"x-user": "bob"})
    assert answered.status_code == 200
    await read_stream(http, "GET", "/runs/w/stream")
    state = await get_run(saver, "w")
    assert state is not None
    assert (state.started_by, state.answered_by) == ("ann", {"approvals/interrupt#0": "bob"})
    assert (await http.get("/runs/w")).json()["answered_by"] == {"approvals/interrupt#0": "bob"}


async def test_two_answers_at_once_one_wins_50_rounds(http: httpx.AsyncClient) -> None:
    await http.post("/runs", json={"task": "approvals", "input": 51, "run_id": "race"})
    outcomes = []
    for number in range(50):
        _, seen = await read_stream(http, "GET", "/runs/race/stream")
        site = seen[-1][2]["id"]
        assert (seen[-1][0], seen[-1][2]["value"]) == ("interrupt", number)
        first, second = await asyncio.gather(
            *(
                http.post(
                    "/runs/race/resume",
                    json={"answers": {site: f"from {user}"}},
                    headers={"x-user": user},
                )
                for user in ("ann", "bob")
            )
        )
        codes = sorted([first.status_code, second.status_code])
        assert codes == [200, 409], (number, first.text, second.text)
        winner, loser = (first, second) if first.status_code == 200 else (second, first)
        won_by = winner.json()["answered_by"][site]
        assert loser.json()["type"] == "InterruptAnsweredError"
        assert loser.json()["answered"] == {site: {"value": f"from {won_by}", "by": won_by}}
        outcomes.append(won_by)
    assert len(outcomes) == 50


async def test_an_existing_run_id_with_the_same_input_starts_nothing(
    http: httpx.AsyncClient,
) -> None:
    body = {"task": "review", "input": "a.txt"}
    first = await http.post("/runs", json=body, headers={"Idempotency-Key": "key-1"})
    await read_stream(http, "GET", "/runs/key-1/stream")  # until it paused
    again = await http.post("/runs", json=body, headers={"Idempotency-Key": "key-1"})
    other = await http.post(
        "/runs", json={**body, "input": "b.txt"}, headers={"Idempotency-Key": "key-1"}
    )
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["version"] == (await http.get("/runs/key-1")).json()["version"]
    assert other.json()["type"] == "InputMismatchError"
    assert await stored_runs(http) == [("key-1", "paused", again.json()["version"])]


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/runs", {"content": b"{not json"}, 400, "MalformedRequestError"),
    ("POST", "/runs", {"json": ["review"]}, 400, "MalformedRequestError"),
    ("POST", "/runs", {"content": b""}, 400, "MalformedRequestError"),
    ("POST", "/runs", {"json": {"input": 1}}, 422, "InvalidRequestError"),
    ("POST", "/runs", {"json": {"task": "review", "extra": 1}}, 422, "InvalidRequestError"),
    ("POST", "/runs", {"json": {"task": 7}}, 422, "InvalidRequestError"),
    ("POST", "/runs", {"json": {"task": "nope"}}, 404, "UnknownTaskError"),
    ("POST", "/runs", {"json": {"task": "review", "input": 5}}, 422, "InvalidRequestError"),
    ("POST", "/runs", {"json": {"task": "review"}}, 422, "InvalidRequestError"),
    (
        "POST",
        "/runs",
        {"json": {"task": "order", "input": {"item": "x"}}},
        422,
        "InvalidRequestError",
    ),
    (
        "POST",
        "/runs",
        {"json": {"task": "review", "input": "a", "run_id": ""}},
        422,
        "InvalidRequestError",
    ),
    (
        "POST",
        "/runs",
        {"json": {"task": "review", "input": "a", "run_id": 3}},
        422,
        "InvalidRequestError",
    ),
    (
        "POST",
        "/runs",
        {"json": {"task": "review", "input": "x" * 2_000_000}},
        413,
        "RequestTooLargeError",
    ),
    (
        "POST",
        "/runs",
        {
            "json": {"task": "review", "input": "a", "run_id": "p"},
            "headers": {"Idempotency-Key": "q"},
        },
        422,
        "InvalidRequestError",
    ),
    (
        "POST",
        "/runs",
        {"json": {"task": "review", "input": "a"}, "headers": {"x-user": "mallory"}},
        403,
        "AccessDeniedError",
    ),
    (
        "POST",
        "/runs",
        {"json": {"task": "review", "input": "a"}, "headers": {"x-user": ""}},
        401,
        "AuthenticationError",
    ),
    ("GET", "/runs/missing", {}, 404, "UnknownRunError"),
    ("DELETE", "/runs/missing", {}, 404, "UnknownRunError"),
    ("GET", "/runs/missing/stream", {}, 404, "UnknownRunError"),
    ("POST", "/runs/missing/cancel", {}, 404, "UnknownRunError"),
    ("POST", "/runs/missing/send", {"json": {"topic": "go"}}, 404, "NoCheckpointError"),
    ("POST", "/runs/p1/send", {"json": {"value": 1}}, 422, "InvalidRequestError"),
    ("POST", "/runs/p1/send", {"json": {"topic": ""}}, 422, "InvalidRequestError"),
    ("POST", "/runs/p1/send", {"json": {"topic": 3}}, 422, "InvalidRequestError"),
    (
        "GET",
        "/runs/p1/stream",
        {"params": {"cancel_on_disconnect": "maybe"}},
        422,
        "InvalidRequestError",
    ),
    ("POST", "/runs/missing/resume", {"json": {"resume": 1}}, 404, "NoCheckpointError"),
    ("POST", "/runs/p1/resume", {"json": {}}, 422, "InvalidRequestError"),
    (
        "POST",
        "/runs/p1/resume",
        {"json": {"resume": 1, "answers": {"x": 1}}},
        422,
        "InvalidRequestError",
    ),
    ("POST", "/runs/p1/resume", {"json": {"answers": []}}, 422, "InvalidRequestError"),
    (
        "POST",
        "/runs/p1/resume",
        {"json": {"answers": {"nope#0": 1}}},
        409,
        "UnknownInterruptError",
    ),
    (
        "POST",
        "/runs/p1/resume",
        {"json": {"resume": 1}, "headers": {"If-Match": '"999"'}},
        412,
        "VersionMismatchError",
    ),
    ("POST", "/runs/p1/resume", {"content": b"[1"}, 400, "MalformedRequestError"),
    ("GET", "/runs/p1/stream", {"headers": {"Last-Event-ID": "x"}}, 422, "InvalidRequestError"),
    ("GET", "/runs/p1/stream", {"params": {"after": "-5"}}, 422, "InvalidRequestError"),
    ("GET", "/runs", {"params": {"status": "sideways"}}, 422, "InvalidRequestError"),
    ("GET", "/runs", {"params": {"limit": "0"}}, 422, "InvalidRequestError"),
    ("GET", "/runs", {"params": {"cursor": "garbage!"}}, 422, "InvalidRequestError"),
    ("GET", "/interrupts", {"params": {"limit": "x"}}, 422, "InvalidRequestError"),
    ("GET", "/nowhere", {}, 404, "NotFound"),
    ("PUT", "/runs", {}, 405, "MethodNotAllowed"),
]


async def test_bad_requests_get_a_clear_4xx_and_change_nothing(http: httpx.AsyncClient) -> None:
    await http.post("/runs", json={"task": "review", "input": "p", "run_id": "p1"})
    await read_stream(http, "GET", "/runs/p1/stream")  # until it paused
    before = await stored_runs(http)
    for method, url, options, status, kind in BAD_REQUESTS:
        response = await http.request(method, url, **options)
        assert (response.status_code, response.json()["type"]) == (status, kind), response.text
        assert response.json()["message"]
        assert await stored_runs(http) == before


async def test_a_dataclass_input_is_built_from_json(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/runs",
        json={"task": "order", "input": {"item": "pen", "quantity": 3}, "run_id": "o"},
        headers={"Accept": "text/event-stream"},
    )
    assert response.status_code == 201
    assert [item async for item in events(response)][-1] == ("done", None, {"result": 6})


async def test_a_failing_run_ends_its_stream_with_an_error_event(http: httpx.AsyncClient) -> None:
    status, seen = await read_stream(http, "POST", "/runs", json={"task": "fails", "run_id": "f"})
    assert status == 201
    assert seen[1:] == [
        ("partial", "0", "about to fail"),
        ("error", None, {"type": "KeyError", "message": "'no such thing'"}),
    ]


async def test_a_stream_resumes_after_last_event_id_or_after(
    http: httpx.AsyncClient, saver: Any
) -> None:
    await started(http, **{"task": "approvals", "input": 3, "run_id": "s"})
    for answer in ("a", "b"):
        await read_stream(http, "GET", "/runs/s/stream")
        await http.post("/runs/s/resume", json={"resume": answer})
    await read_stream(http, "GET", "/runs/s/stream")
    _, by_header = await read_stream(http, "GET", "/runs/s/stream", headers={"Last-Event-ID": "0"})
    _, by_query = await read_stream(http, "GET", "/runs/s/stream", params={"after": "0"})
    _, both = await read_stream(
        http, "GET", "/runs/s/stream", params={"after": "1"}, headers={"Last-Event-ID": "0"}
    )
    expected = [
        ("ready", "0", {"run_id": "s", "status": "paused", "after": 0}),
        *replayed(saver, [("partial", "1", "b")]),
        ("interrupt", None, {"id": "approvals/interrupt#2", "value": 2}),
    ]
    assert by_header == by_query == both == expected


async def test_many_watchers_see_the_same_stream_with_pings_while_idle(
    http: httpx.AsyncClient,
) -> None:
    GATES["w3"] = gate = asyncio.Event()
    await http.post("/runs", json={"task": "gated", "input": "w3", "run_id": "w3"})

    pinged: set[int] = set()

    async def watch(number: int) -> list[tuple[str, str | None, Any]]:
        seen = []
        async with http.stream("GET", "/runs/w3/stream") as response:
            async for item in events(response):
                seen.append(item)
                if item[0] == "comment":
                    pinged.add(number)
                    if len(pinged) == 3:  # every watcher has had a ping: let the run go on
                        gate.set()
        return seen

    watchers = await asyncio.gather(*(watch(number) for number in range(3)))
    for seen in watchers:
        assert ("comment", None, "ping") in seen
        assert [item for item in seen if item[0] not in ("comment", "ready")] == [
            ("partial", "0", 0),
            ("partial", "1", 1),
            ("done", None, {"result": None}),
        ]


async def test_runs_are_listed_newest_first_a_page_at_a_time(http: httpx.AsyncClient) -> None:
    for number in range(5):
        await started(http, **{"task": "review", "input": "x", "run_id": f"l{number}"})
    await started(http, **{"task": "approvals", "input": 1, "run_id": "other"})
    pages, cursor = [], None
    while True:
        params = {"limit": 2, "task": "review", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/runs", params=params)).json()
        pages.append([run["run_id"] for run in page["runs"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [["l4", "l3"], ["l2", "l1"], ["l0"]]
    paused = (await http.get("/runs", params={"status": "paused"})).json()["runs"]
    assert [run["run_id"] for run in paused] == ["other", "l4", "l3", "l2", "l1", "l0"]


async def test_every_pending_interrupt_oldest_first(http: httpx.AsyncClient) -> None:
    await started(http, **{"task": "review", "input": "one", "run_id": "i1"})
    await started(http, **{"task": "approvals", "input": 2, "run_id": "i2"})
    await started(http, **{"task": "review", "input": "three", "run_id": "i3"})
    found = (await http.get("/interrupts")).json()
    assert [(i["run_id"], i["id"], i["value"]) for i in found["interrupts"]] == [
        ("i1", "review/interrupt#0", {"approve": "one"}),
        ("i2", "approvals/interrupt#0", 0),
        ("i3", "review/interrupt#0", {"approve": "three"}),
    ]
    only = (await http.get("/interrupts", params={"task": "review", "limit": 1})).json()
    assert [i["run_id"] for i in only["interrupts"]] == ["i1"]
    rest = (
        await http.get("/interrupts", params={"task": "review", "cursor": only["next_cursor"]})
    ).json()
    assert ([i["run_id"] for i in rest["interrupts"]], rest["next_cursor"]) == (["i3"], None)


async def test_a_deleted_run_is_gone(http: httpx.AsyncClient) -> None:
    await started(http, **{"task": "review", "input": "d", "run_id": "d"})
    assert (await http.delete("/runs/d")).status_code == 204
    assert (await http.get("/runs/d")).status_code == 404
    assert await stored_runs(http) == []


async def test_a_paused_run_cancelled_is_unwound_at_once(http: httpx.AsyncClient) -> None:
    await started(http, task="review", input="c", run_id="c1")
    cancelled = await http.post("/runs/c1/cancel")
    assert (cancelled.status_code, cancelled.json()["cancel_requested"]) == (202, True)
    _, seen = await read_stream(http, "GET", "/runs/c1/stream", params={"after": "0"})
    assert seen[1:] == [
        ("cancelled", None, {"type": "RunCancelled", "message": seen[-1][2]["message"]})
    ]
    shown = (await http.get("/runs/c1")).json()
    assert (shown["status"], shown["outcome"], shown["error"][0]) == (
        "cancelled",
        "cancelled",
        "RunCancelled",
    )


async def test_a_client_leaving_with_cancel_on_disconnect_cancels_its_run(
    http: httpx.AsyncClient,
) -> None:
    GATES["leaving"] = gate = asyncio.Event()
    body = {"task": "gated", "input": "leaving", "run_id": "leaving"}
    headers = {"Accept": "text/event-stream"}
    params = {"cancel_on_disconnect": "true"}
    async with http.stream("POST", "/runs", json=body, headers=headers, params=params) as response:
        async for kind, _, _ in events(response):
            assert kind == "ready"
            break  # and leave
    # The server asks for the cancel as the connection closes: wait until it has.
    while not (await http.get("/runs/leaving")).json()["cancel_requested"]:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    gate.set()
    _, seen = await read_stream(http, "GET", "/runs/leaving/stream")
    assert [kind for kind, _, _ in seen] == ["ready", "cancelled"]
    assert (await http.get("/runs/leaving")).json()["status"] == "cancelled"


async def test_a_client_leaving_does_not_stop_the_run(http: httpx.AsyncClient, saver: Any) -> None:
    GATES["stays"] = gate = asyncio.Event()
    body = {"task": "gated", "input": "stays", "run_id": "stays"}
    async with http.stream(
        "POST", "/runs", json=body, headers={"Accept": "text/event-stream"}
    ) as response:
        async for kind, _, _ in events(response):
            assert kind == "ready"
            break
    gate.set()
    _, seen = await read_stream(http, "GET", "/runs/stays/stream")
    if not hasattr(saver, "load_partials"):  # made before this watcher came: not replayed
        seen = [item for item in seen if item[0] != "partial"]
    assert seen[1:] == [
        *replayed(saver, [("partial", "0", 0), ("partial", "1", 1)]),
        ("done", None, {"result": None}),
    ]


async def test_a_message_wakes_a_sleeping_run_its_watcher_follows(
    http: httpx.AsyncClient, saver: Any
) -> None:
    await http.post("/runs", json={"task": "waits", "run_id": "m"})
    watcher = asyncio.create_task(read_stream(http, "GET", "/runs/m/stream"))
    # It waits for a message: stored sleeping, and its watcher stays connected.
    while (await http.get("/runs/m")).json()["status"] != "sleeping":  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    sent = await http.post("/runs/m/send", json={"topic": "go", "value": 5})
    assert (sent.status_code, sent.json()["run_id"]) == (202, "m")
    _, seen = await watcher
    if not hasattr(saver, "load_partials"):  # made while it polled: not replayed
        seen = [item for item in seen if item[0] != "partial"]
    assert [item for item in seen if item[0] != "comment"][1:] == [
        *replayed(saver, [("partial", "0", "waiting"), ("partial", "1", "got 5")]),
        ("done", None, {"result": None}),
    ]
    assert (await http.get("/runs/m")).json()["status"] == "done"
