"""One attempt at an agent whose child answers differently every time it runs, for
`test_crash_recovery.py` to SIGKILL at a chosen position of its stream.

    python stream_log_worker.py BACKEND TARGET RUN_ID LOG --attempt K [--stop-at N]

BACKEND is `sqlite` (TARGET is a file path) or `postgres` (TARGET is a libpq connection
string; the schema must exist). The `agent` task streams `<start>`, the tokens of its
recorded child `llm`, then `<end>`. `llm` draws its tokens from `Random(K)`: a re-run in
another attempt gives another answer. Each attempt calls `agent` with the same run id, so
it continues the run. Lines appended to LOG (one `os.write` each, so a kill leaves whole
lines only):

    attempt K            the worker has imported everything
    answer T1 T2 ...     `llm` runs, and this is its whole answer
    got P TOKEN R        the consumer received TOKEN at position P of the run's stream;
                         R is the event's `Snapshot.rewind` (`-` for none)
    end R                the stream ended; R is the stream's `rewind` (`-` for none)

The consumer learns where it resumes from the stored run (`get_run(...).delivered`),
as a reconnecting client would, and from `rewind`. On stdout the worker prints `ready`;
with `--stop-at N` it prints `stopped N` right after logging position N and blocks
(reading stdin) until it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from typing import Any

from tiny_tasks import get_run, task
from tiny_tasks._driver import Driver, driving

WORDS = ("I", "will", "email", "the", "report", "to", "Bob", "now")


def answer_of(attempt: int) -> list[str]:
    """What `llm` answers when it runs in attempt `attempt`."""
    rng = random.Random(attempt)
    return [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]


class Worker:
    def __init__(self, log_path: str, attempt: int, stop_at: int | None) -> None:
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.attempt = attempt
        self.stop_at = stop_at

    def log(self, line: str) -> None:
        os.write(self.log_fd, f"{line}\n".encode())


worker: Worker


@task("llm")
async def llm(prompt: str):  # type: ignore[no-untyped-def]
    tokens = answer_of(worker.attempt)
    worker.log("answer " + " ".join(tokens))
    for token in tokens:
        yield token


@task("agent")
async def agent(prompt: str):  # type: ignore[no-untyped-def]
    yield "<start>"
    async for token, _, _ in llm(prompt):
        yield token
    yield "<end>"


def saver_factory(backend: str) -> Any:
    if backend == "sqlite":
        from tiny_tasks.savers import SqliteSaver

        return SqliteSaver
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401

    from tiny_tasks.savers import PostgresSaver

    return lambda dsn: PostgresSaver(dsn, max_size=1)


def _mark(rewind: int | None) -> str:
    return "-" if rewind is None else str(rewind)


async def main(open_saver: Any, target: str, run_id: str) -> None:
    # Every attempt drives the run as one owner: a restarted process takes its run back
    # at once instead of waiting for the killed attempt's lease to expire.
    with driving(Driver(owner="stream-log-worker")):
        await attempt(open_saver, target, run_id)


async def attempt(open_saver: Any, target: str, run_id: str) -> None:
    async with open_saver(target) as saver:
        state = await get_run(saver, run_id)
        position = 0 if state is None else state.delivered
        stream = agent("write to Bob", run_id=run_id, checkpointer=saver)
        rewound = False
        async for token, snapshot, _ in stream:
            if snapshot.rewind is not None and not rewound:
                rewound = True
                position = snapshot.rewind  # from here on, partials replace earlier ones
            worker.log(f"got {position} {token} {_mark(snapshot.rewind)}")
            if position == worker.stop_at:
                sys.stdout.write(f"stopped {position}\n")
                sys.stdout.flush()
                sys.stdin.read()
                raise SystemExit("stdin closed while stopped; expected to be killed")
            position += 1
        worker.log(f"end {_mark(stream.rewind)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["sqlite", "postgres"])
    parser.add_argument("target")
    parser.add_argument("run_id")
    parser.add_argument("log")
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--stop-at", type=int, default=None)
    arguments = parser.parse_args()
    open_saver = saver_factory(arguments.backend)
    worker = Worker(arguments.log, arguments.attempt, arguments.stop_at)
    worker.log(f"attempt {arguments.attempt}")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    asyncio.run(main(open_saver, arguments.target, arguments.run_id))
