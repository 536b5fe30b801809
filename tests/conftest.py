"""Fixtures shared by the engine tests.

`collect` is a fixture (not an importable function) because several test folders
have their own `conftest.py`, and pytest imports each of them as a module named
`conftest`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

import pytest

from tiny_tasks import Event, Interrupt, MemorySaver

Collected = tuple[list[Any], list[Interrupt]]
Collector = Callable[[AsyncIterable[Event[Any]]], Awaitable[Collected]]


async def _collect(stream: AsyncIterable[Event[Any]]) -> Collected:
    """Drain a stream: the partials in order, then the interrupts in order.

    Also checks the stream's shape: once an interrupt event has arrived, no partial
    follows it, and an interrupt event never carries a partial.
    """
    partials: list[Any] = []
    interrupts: list[Interrupt] = []
    async for partial, _, intr in stream:
        if intr is None:
            assert not interrupts, f"partial {partial!r} arrived after an interrupt event"
            partials.append(partial)
        else:
            assert partial is None, "an interrupt event carries no partial"
            interrupts.append(intr)
    return partials, interrupts


@pytest.fixture
def saver() -> MemorySaver:
    """A fresh in-memory checkpointer."""
    return MemorySaver()


@pytest.fixture
def collect() -> Collector:
    """`partials, interrupts = await collect(stream)`."""
    return _collect
