"""Fixtures shared by the engine tests, and the one throwaway PostgreSQL server of a session.

`collect` is a fixture (not an importable function) because several test folders
have their own `conftest.py`, and pytest imports each of them as a module named
`conftest`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tiny_tasks import Event, Interrupt, MemorySaver

# This folder is not a package: say explicitly that its helpers are importable.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from postgres_server import PostgresServer

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, deleted afterwards.

    Started only when a test asks for it; if it cannot start, those tests fail with its
    log (they are never skipped).
    """
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server_dsn(postgres_server: PostgresServer) -> str:
    """The connection string of the session server's maintenance database."""
    return postgres_server.dsn()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """The connection string of a fresh, empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    dsn = postgres_server.create_database(name)
    yield dsn
    postgres_server.drop_database(name)
