"""The main demo: a run streams, pauses for approval, and its process exits; a second
process resumes the run from the SQLite file and finishes it.

    PYTHONPATH=src python3 examples/demo.py

Both processes run this file: without arguments it plays both parts one after the
other; `first DB` and `second DB` play one part each.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tiny_tasks import step, task
from tiny_tasks.savers import SqliteSaver

RUN_ID = "newsletter-2026-11"


@step
async def draft_with_llm(topic: str) -> str:
    print(f"  [pid {os.getpid()}] calling the model (a side effect, recorded once)")
    return f"tiny-tasks now resumes {topic} in another process"


@task
async def publish(topic: str, ctx):
    draft = await draft_with_llm(topic)
    for word in draft.split():
        yield word
    verdict = ctx.interrupt({"approve": draft})
    yield f"published ({verdict})"


async def play(part: str, db: str) -> None:
    async with SqliteSaver(db) as saver:
        opts = {"run_id": RUN_ID, "checkpointer": saver}
        stream = (
            publish("workflows", **opts) if part == "first" else publish.resume("approved", **opts)
        )
        async for partial, _, intr in stream:
            if intr:
                print(f"  [pid {os.getpid()}] paused: {intr.value} -> exiting")
            else:
                print(f"  [pid {os.getpid()}] {partial}")


def main() -> None:
    if len(sys.argv) == 3:
        asyncio.run(play(sys.argv[1], sys.argv[2]))
        return
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "runs.sqlite")
        for part in ("first", "second"):
            print(f"process {part}:")
            subprocess.run([sys.executable, __file__, part, db], check=True)


if __name__ == "__main__":
    main()
