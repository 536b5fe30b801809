"""Tasks served by the server processes of the HTTP tests (`tiny-tasks serve --app`).

`approvals(count)` pauses `count` times and yields each answer.

`counter(total)` yields 0, 1, ..., total - 1, then pauses on an interrupt. Before
yielding `total // 2` it waits until the file named by the environment variable
`TT_GATE` exists, so a test can kill the server while the run is parked there, with
the first half delivered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from tiny_tasks import interrupt, task


@task
async def counter(total: int) -> AsyncIterator[int]:
    gate = Path(os.environ["TT_GATE"])
    for number in range(total):
        if number == total // 2:
            while not gate.exists():  # noqa: ASYNC110, ASYNC240 - another process makes the file
                await asyncio.sleep(0.005)
        yield number
    interrupt({"counted": total})


@task
async def approvals(count: int) -> AsyncIterator[object]:
    for number in range(count):
        yield interrupt(number)
