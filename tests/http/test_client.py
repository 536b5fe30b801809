"""`Client`: remote tasks read like local ones (stream, invoke, resume, submit), and the
app's documents and pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import replayed, serving

from tiny_tasks import Interrupt, MemorySaver, interrupt, task
from tiny_tasks.errors import RemoteError, RunFailedError, TaskInterrupted
from tiny_tasks.http import Client, TaskApp

DOCS = Path(__file__).parents[2] / "docs"


@task
async def review(doc: str) -> AsyncIterator[str]:
    yield f"reading {doc}"
    answer = interrupt({"approve": doc})
    yield f"answer: {answer}"


@task
async def double(number: int) -> int:
    return number * 2


@task
async def broken(_: Any) -> None:
    raise RuntimeError("it broke")


@pytest.fixture
async def client(saver: Any) -> AsyncIterator[Client]:
    app = TaskApp([review, double, broken], saver)
    async with serving(app) as url, Client(url) as client:
        yield client


async def test_a_remote_task_streams_like_a_local_one(client: Client) -> None:
    remote = client.task("review")
    events = [event async for event in remote("a.txt", run_id="r1")]
    local_saver = MemorySaver()
    local = [event async for event in review("a.txt", run_id="r1", checkpointer=local_saver)]
    assert [(e.partial, e.interrupt) for e in events] == [(e.partial, e.interrupt) for e in local]
    assert events[-1].interrupt == Interrupt({"approve": "a.txt"}, "review/interrupt#0")
    assert events[-1].snapshot.pending == (events[-1].interrupt,)

    resumed = remote.resume("yes", run_id="r1")
    assert [partial async for partial, _, _ in resumed] == ["answer: yes"]
    assert (resumed.result, resumed.interrupts) == (None, [])


async def test_invoke_returns_the_result_or_raises_as_locally(client: Client) -> None:
    assert await client.task("double").invoke(21) == 42
    with pytest.raises(TaskInterrupted) as paused:
        await client.task("review").invoke("b.txt", run_id="r2")
    assert paused.value.interrupts == [Interrupt({"approve": "b.txt"}, "review/interrupt#0")]
    with pytest.raises(RunFailedError, match="failed earlier with RuntimeError: it broke"):
        await client.task("broken").invoke(None)


async def test_submit_then_read_the_run(client: Client, saver: Any) -> None:
    run_id = await client.task("review").submit("c.txt", run_id="r3")
    assert run_id == "r3"
    assert await client.task("review").submit("c.txt", run_id="r3") == "r3"
    with pytest.raises(RemoteError) as mismatch:
        await client.task("review").submit("other.txt", run_id="r3")
    assert (mismatch.value.status, mismatch.value.type) == (409, "InputMismatchError")
    stream = client.task("review")(run_id="r3")  # a new watcher: replayed from the store
    assert [(event.partial, event.interrupt) async for event in stream] == [
        *replayed(saver, [("reading c.txt", None)]),
        (None, Interrupt({"approve": "c.txt"}, "review/interrupt#0")),
    ]
    shown = await client.get_run("r3")
    assert shown is not None
    assert (shown["status"], shown["input"]) == ("paused", "c.txt")
    assert [i["run_id"] for i in await client.interrupts()] == ["r3"]
    assert await client.delete_run("r3") is True
    assert await client.get_run("r3") is None
    assert await client.delete_run("r3") is False


async def test_a_second_answer_is_refused_with_what_won(client: Client) -> None:
    remote = client.task("review")
    [_ async for _ in remote("d.txt", run_id="r4")]
    [_ async for _ in remote.resume("first", run_id="r4")]  # it finishes, kept
    with pytest.raises(RemoteError) as refused:
        [_ async for _ in remote.resume("second", run_id="r4")]
    assert (refused.value.status, refused.value.type) == (409, "InterruptAnsweredError")
    assert refused.value.body["answered"] == {"review/interrupt#0": {"value": "first", "by": None}}


@pytest.mark.parametrize("saver", ["memory"], indirect=True)
async def test_the_openapi_document_is_served_and_checked_in(client: Client) -> None:
    served = (await client.request("GET", "/openapi.json")).json()
    assert served == json.loads((DOCS / "openapi.json").read_text())
    assert sorted(served["paths"]) == [
        "/interrupts",
        "/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/cancel",
        "/runs/{run_id}/resume",
        "/runs/{run_id}/send",
        "/runs/{run_id}/stream",
    ]


async def test_the_inbox_place_is_taken_only_with_ui() -> None:
    saver = MemorySaver()
    for ui, status in ((True, 200), (False, 404)):
        async with serving(TaskApp([review], saver, ui=ui)) as url, httpx.AsyncClient() as http:
            response = await http.get(f"{url}/ui")
            assert response.status_code == status
