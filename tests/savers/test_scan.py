"""`scan_runs`: keyset pages of stored runs with their state, on every built-in saver
(and through the HTTP layer's walk for a saver without it)."""

from __future__ import annotations

from typing import Any

import pytest

from tiny_tasks import interrupt, task
from tiny_tasks.http._listing import scan


@task
async def asks(number: int) -> Any:
    return interrupt(number)


@task
async def other(number: int) -> Any:
    return interrupt(-number)


async def paused_runs(saver: Any) -> None:
    """r0..r4 of `asks` and o0, o1 of `other`, each paused on its first interrupt."""
    for number in range(5):
        async for _ in asks(number, run_id=f"r{number}", checkpointer=saver):
            pass
    for number in range(2):
        async for _ in other(number, run_id=f"o{number}", checkpointer=saver):
            pass


async def test_pages_newest_first_and_oldest_first(saver: Any) -> None:
    await paused_runs(saver)
    newest, after = [], None
    while True:
        page = await scan(saver, task_name="asks", after=after, limit=2)
        newest.append([run.run_id for run in page])
        if len(page) < 2:
            break
        after = (page[-1].created_at, page[-1].run_id)
    assert newest == [["r4", "r3"], ["r2", "r1"], ["r0"]]
    oldest = await scan(saver, status="paused", oldest_first=True, limit=100)
    assert [run.run_id for run in oldest] == ["r0", "r1", "r2", "r3", "r4", "o0", "o1"]
    assert [run.entries for run in oldest] == [()] * 7
    assert all(run.state for run in oldest)
    assert await scan(saver, status="done") == []


async def test_a_negative_limit_is_refused(saver: Any) -> None:
    with pytest.raises(ValueError, match="limit must be >= 0, not -1"):
        await scan(saver, limit=-1)
