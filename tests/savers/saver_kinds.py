"""Every saver kind the contract runs on, and how to make a fresh one of each.

A module of its own (not `conftest.py`), so tests can import it by a unique name.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dict_saver import DictSaver

from tiny_tasks import Interrupt
from tiny_tasks.savers import MemorySaver, PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import Checkpoint

SAVER_KINDS = ("memory", "dict", "sqlite", "postgres")

BOUND = 20.0  # seconds; a run that takes this long is hung


async def load_stored(saver: Any, run_id: str) -> Checkpoint | None:
    """`saver.load(run_id)`, whether the saver's methods are plain or async."""
    stored = saver.load(run_id)
    result: Checkpoint | None = await stored if inspect.isawaitable(stored) else stored
    return result


async def drain(stream: AsyncIterator[Any]) -> tuple[list[Any], list[Interrupt]]:
    """Consume a run's stream (within `BOUND` seconds): its partials and its interrupts."""
    partials: list[Any] = []
    interrupts: list[Interrupt] = []
    async with asyncio.timeout(BOUND):
        async for partial, _, intr in stream:
            if intr is None:
                partials.append(partial)
            else:
                interrupts.append(intr)
    return partials, interrupts


async def make_saver(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh saver of `kind`, backed by a fresh store."""
    if kind == "memory":
        return MemorySaver()
    if kind == "dict":
        return DictSaver()
    if kind == "sqlite":
        return SqliteSaver(tmp_path / f"checkpoints-{uuid.uuid4().hex[:8]}.db")
    if kind == "postgres":
        saver = PostgresSaver(request.getfixturevalue("postgres_dsn"))
        await saver.setup()
        return saver
    raise ValueError(f"unknown saver kind {kind!r}")
