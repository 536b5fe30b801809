"""The one-interrupt task the inspection and CLI tests store runs of."""

from __future__ import annotations

from typing import Any

from tiny_tasks import interrupt, task


@task
async def approval(document: str):
    yield f"drafted {document}"
    verdict = interrupt({"approve": document})
    yield f"{document}: {verdict}"


async def pause(saver: Any, run_id: str, document: str) -> None:
    """Store a run of `approval` paused on its interrupt."""
    async for _ in approval(document, run_id=run_id, checkpointer=saver):
        pass
