"""Keyset-paginated listing over any saver: its `scan_runs` when it has one (one
indexed query), else a walk over `list_runs` and `load` (a custom saver)."""

from __future__ import annotations

from typing import Any

from .._run import resolve
from ..savers._scan import Cursor, scan_checkpoints
from ..savers.base import Checkpoint, Checkpointer, RunStatus

__all__ = ["scan"]

_WALK_PAGE = 500


async def scan(
    saver: Checkpointer,
    *,
    status: RunStatus | None = None,
    task_name: str | None = None,
    after: Cursor | None = None,
    limit: int = 100,
    oldest_first: bool = False,
) -> list[Checkpoint]:
    """Stored runs with their state blobs (no entries), newest first or oldest first,
    strictly after the position `after`, at most `limit`."""
    method = getattr(saver, "scan_runs", None)
    if method is not None:
        runs: list[Checkpoint] = await resolve(
            method(
                status=status,
                task_name=task_name,
                after=after,
                limit=limit,
                oldest_first=oldest_first,
            )
        )
        return runs
    found: list[Checkpoint] = []
    offset = 0
    while True:
        page: list[Any] = await resolve(
            saver.list_runs(status=status, task_name=task_name, limit=_WALK_PAGE, offset=offset)
        )
        for info in page:
            stored = await resolve(saver.load(info.run_id))
            if stored is not None:
                found.append(stored)
        if len(page) < _WALK_PAGE:
            break
        offset += _WALK_PAGE
    return scan_checkpoints(
        found,
        status=status,
        task_name=task_name,
        after=after,
        limit=limit,
        oldest_first=oldest_first,
    )
