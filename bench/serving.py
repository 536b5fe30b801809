"""What serving runs over HTTP costs: SSE latency and throughput (issue 11).

    .venv/bin/python bench/serving.py              # SQLite
    .venv/bin/python bench/serving.py --postgres   # also PostgreSQL (throwaway server)

One `tiny-tasks serve` process (uvicorn) serves `bench/serving_tasks.py`; the clients run
in this process with httpx.

* latency: a run yields 200 partials 10 ms apart, each the time it was made; W watchers
  (GET /runs/{id}/stream, connected before the first partial) note when each arrives.
  p50 and p99 of arrival - making, over every partial and watcher, for W = 1 and 100.
* throughput: a run yields 5,000 small partials as fast as it can; one client streams
  it (POST /runs with Accept: text/event-stream) and counts partials per second. The
  same task streamed in-process with the same saver is the reference (target: HTTP
  within 3x of it).

The server and the watchers share this machine's cores: with 100 watchers, parsing the
events in one client process is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serving_tasks import burst
from tiny_tasks.savers import PostgresSaver, SqliteSaver

TICKS = 200
BURST = 5_000


@contextlib.contextmanager
def server(store: str) -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiny_tasks",
            "serve",
            store,
            "--app",
            str(HERE / "serving_tasks.py"),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if " on " not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    try:
        yield line.split(" on ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait()


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, line[6:]


async def latency(url: str, watchers: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=watchers + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        run_id = uuid.uuid4().hex
        await http.post("/runs", json={"task": "ticks", "input": TICKS, "run_id": run_id})

        async def watch() -> list[float]:
            delays = []
            async with http.stream("GET", f"/runs/{run_id}/stream") as response:
                async for kind, data in events(response):
                    if kind == "partial":
                        delays.append(time.time() - float(data))
            return delays

        found = [
            d
            for delays in await asyncio.gather(*(watch() for _ in range(watchers)))
            for d in delays
        ]
    assert len(found) == TICKS * watchers, len(found)
    found.sort()
    return found[len(found) // 2] * 1000, found[int(len(found) * 0.99)] * 1000


async def throughput_http(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        body = {"task": "burst", "input": BURST, "run_id": uuid.uuid4().hex}
        started = time.perf_counter()
        count = 0
        headers = {"Accept": "text/event-stream"}
        async with http.stream("POST", "/runs", json=body, headers=headers) as response:
            async for kind, _ in events(response):
                count += kind == "partial"
        elapsed = time.perf_counter() - started
    assert count == BURST, count
    return BURST / elapsed


async def throughput_local(saver: Any) -> float:
    started = time.perf_counter()
    count = 0
    async for _ in burst(BURST, run_id=uuid.uuid4().hex, checkpointer=saver):
        count += 1
    return count / (time.perf_counter() - started)


async def measure(label: str, store: str, saver: Any) -> list[str]:
    await saver.setup()
    local = statistics.median([await throughput_local(saver) for _ in range(3)])
    await saver.close()
    rows = []
    with server(store) as url:
        for watchers in (1, 100):
            p50, p99 = await latency(url, watchers)
            rows.append(
                f"| {label} | latency, {watchers} watcher(s) | p50 {p50:.1f} ms, p99 {p99:.1f} ms |"
            )
        remote = statistics.median([await throughput_http(url) for _ in range(3)])
    rows.append(f"| {label} | partials/s, 1 client over HTTP | {remote:,.0f} |")
    ratio = f"(HTTP: {local / remote:.1f}x slower)"
    rows.append(f"| {label} | partials/s, in-process, same saver | {local:,.0f} {ratio} |")
    return rows


async def main(with_postgres: bool) -> None:
    rows = ["| store | measure | value |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        store = f"{folder}/bench.db"
        rows += await measure("SQLite", store, SqliteSaver(store))
    if with_postgres:
        from _pg import create_database, throwaway_postgres

        with throwaway_postgres() as base_url:
            url = create_database(base_url, "bench_serving")
            rows += await measure("PostgreSQL", url, PostgresSaver(url))
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="also measure PostgreSQL")
    asyncio.run(main(parser.parse_args().postgres))
