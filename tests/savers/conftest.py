"""Fixtures for the saver tests: every saver kind through one `saver` fixture.

Each test gets a fresh store: a new dict, a new SQLite file in `tmp_path`, or a new
PostgreSQL database on one throwaway server started for the whole session. The server
is started only when a PostgreSQL test runs; if it cannot start, those tests fail with
its log (they are never skipped).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest puts this folder and tests/ on sys.path (neither is a package); say so
# explicitly so these imports do not depend on which conftest was loaded first.
for _folder in (Path(__file__).parent, Path(__file__).parents[1]):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from postgres_server import PostgresServer  # noqa: E402
from saver_kinds import SAVER_KINDS, make_saver  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, deleted afterwards."""
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


@pytest.fixture(params=SAVER_KINDS)
async def saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh saver of each kind, closed after the test."""
    saver = await make_saver(request.param, request, tmp_path)
    yield saver
    close = getattr(saver, "close", None)
    if close is not None:
        await close()
