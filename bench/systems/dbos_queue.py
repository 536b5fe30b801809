"""DBOS queues beside tiny-tasks workers (bench/runtime.py's throughput scenario).

The same run as tiny-tasks': a workflow of 5 `@DBOS.step`s that then waits for a
message (`DBOS.recv_async`), announced with an event so that the message is sent only
once the workflow waits (a pause answered by another process). The workflows are
enqueued on a `Queue` by a `DBOSClient` in the measuring process and run by N worker
processes that launched DBOS with that queue; the measuring process sends each message
with the client and waits for every result.

Runs in the bench environment (bench/.env, which has dbos):

    bench/.env/bin/python bench/systems/dbos_queue.py measure URL WORKERS RUNS CONCURRENCY

prints one JSON object (runs, workers, seconds, per_second). URL: `sqlite:///path` or
`postgresql+psycopg://...`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from dbos import DBOS, DBOSClient, DBOSConfig

QUEUE = "tiny_tasks_bench"


@DBOS.step()
async def add_one(value: int) -> int:
    return value + 1


@DBOS.workflow()
async def rt_job(number: int) -> int:
    total = number
    for _ in range(5):
        total = await add_one(total)
    await DBOS.set_event_async("waiting", True)
    answer = await DBOS.recv_async("go", timeout_seconds=600)
    return total + int(answer)


def worker(url: str, concurrency: int) -> None:
    """A worker process: DBOS launched with the queue; runs until SIGTERM."""
    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: DBOSConfig = {
        "name": "tiny-tasks-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(QUEUE, worker_concurrency=concurrency, polling_interval_sec=0.05)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print("ready", flush=True)
    stopped.wait()
    DBOS.destroy(workflow_completion_timeout_sec=0)
    os._exit(0)


def _spawn(url: str, concurrency: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "worker", url, str(concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )


async def measure(url: str, workers: int, runs: int, concurrency: int) -> dict[str, Any]:
    procs = [_spawn(url, concurrency) for _ in range(workers)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"DBOS worker {proc.pid} did not start")
        client = DBOSClient(system_database_url=url)
        limit = asyncio.Semaphore(100)

        async def one(number: int) -> int:
            async with limit:
                handle = await client.enqueue_async(
                    {"queue_name": QUEUE, "workflow_name": "rt_job"}, number
                )
            waiting = await client.get_event_async(handle.workflow_id, "waiting", 600)
            assert waiting is True, waiting
            async with limit:
                await client.send_async(handle.workflow_id, 1, "go")
            return int(await handle.get_result())

        started = time.perf_counter()
        results = await asyncio.gather(*(one(number) for number in range(runs)))
        elapsed = time.perf_counter() - started
        assert results == [number + 6 for number in range(runs)]
        client.destroy()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"runs": runs, "workers": workers, "seconds": elapsed, "per_second": runs / elapsed}


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        url, count, runs, concurrency = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(asyncio.run(measure(url, count, runs, concurrency))))
