"""A server process killed under its clients: they reconnect to another process on the
same store and go on exactly where they were (no gap, no duplicate), on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from http_server import ServerProcess, events, read_stream

from tiny_tasks.http import Client
from tiny_tasks.savers import PostgresSaver

TOTAL = 10
HALF = TOTAL // 2


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store both server processes open: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    dsn: str = request.getfixturevalue("postgres_dsn")
    async with PostgresSaver(dsn) as saver:
        await saver.setup()
    fields = dict(part.split("=", 1) for part in dsn.split())
    return (
        f"postgresql://{fields['user']}@/{fields['dbname']}"
        f"?host={quote(fields['host'], safe='')}&port={fields['port']}"
    )


async def start(store: str, gate: Path, port: int = 0, orphan_after: float = 0.0) -> ServerProcess:
    return await asyncio.to_thread(ServerProcess, store, gate, port, orphan_after)


async def test_a_stream_goes_on_from_another_process_after_a_sigkill(
    store: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = await start(store, gate)
    received: list[tuple[int, Any]] = []
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            body = {"task": "counter", "input": TOTAL, "run_id": "r1"}
            headers = {"Accept": "text/event-stream"}
            async with http.stream("POST", "/runs", json=body, headers=headers) as response:
                assert response.status_code == 201
                async for kind, event_id, data in events(response):
                    if kind == "partial":
                        received.append((int(event_id or -99), data))
                    if len(received) == HALF:
                        break  # the run is parked at the gate: kill its server now
            first.kill()
        assert received == [(n, n) for n in range(HALF)]

        second = await start(store, gate)
        try:
            gate.touch()
            ends: list[tuple[str, Any]] = []
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
                headers = {"Last-Event-ID": str(received[-1][0])}
                async with http.stream("GET", "/runs/r1/stream", headers=headers) as response:
                    assert response.status_code == 200
                    async for kind, event_id, data in events(response):
                        if kind == "partial":
                            received.append((int(event_id or -99), data))
                        elif kind not in ("ready", "comment"):
                            ends.append((kind, data))
                run = (await http.get("/runs/r1")).json()
        finally:
            second.stop()
    finally:
        first.stop()
    assert received == [(n, n) for n in range(TOTAL)]
    assert ends == [("interrupt", {"id": "counter/interrupt#0", "value": {"counted": TOTAL}})]
    assert (run["status"], run["delivered"]) == ("paused", TOTAL)


async def test_the_client_reconnects_by_itself_to_a_server_restarted_under_it(
    store: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = await start(store, gate)
    second: ServerProcess | None = None
    seen: list[Any] = []
    interrupts: list[Any] = []
    try:
        async with Client(first.url, reconnect_timeout=60) as client:
            counter = client.task("counter")
            async for partial, snapshot, interrupt in counter(TOTAL, run_id="c1"):
                if interrupt is not None:
                    interrupts.append((interrupt.id, interrupt.value, snapshot.run_id))
                    continue
                seen.append(partial)
                if len(seen) == HALF:  # parked at the gate: restart the server on its port
                    first.kill()
                    second = await start(store, gate, first.port)
                    gate.touch()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert seen == list(range(TOTAL))
    assert interrupts == [("counter/interrupt#0", {"counted": TOTAL}, "c1")]


async def test_two_processes_answering_one_interrupt_at_once_one_wins_50_rounds(
    store: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    servers = [await start(store, gate, orphan_after=3600) for _ in range(2)]
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            urls = [server.url for server in servers]
            await http.post(
                f"{urls[0]}/runs", json={"task": "approvals", "input": 51, "run_id": "a"}
            )
            winners = []
            for number in range(50):
                _, seen = await read_stream(http, "GET", f"{urls[number % 2]}/runs/a/stream")
                assert (seen[-1][0], seen[-1][2]["value"]) == ("interrupt", number)
                site = seen[-1][2]["id"]
                responses = await asyncio.gather(
                    *(
                        http.post(f"{url}/runs/a/resume", json={"answers": {site: url}})
                        for url in urls
                    )
                )
                codes = sorted(response.status_code for response in responses)
                assert codes == [200, 409], [response.text for response in responses]
                loser = next(response for response in responses if response.status_code == 409)
                winner = urls[[response.status_code for response in responses].index(200)]
                assert loser.json()["type"] == "InterruptAnsweredError"
                assert loser.json()["answered"] == {site: {"value": winner, "by": None}}
                winners.append(winner)
    finally:
        for server in servers:
            server.stop()
    assert len(winners) == 50
