"""The runtime protocol (`RuntimeSaver`: leases, claims, cancel requests, messages,
pruning) against every saver, through the conformance checks a custom saver's author
runs too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from saver_kinds import make_saver

from tiny_tasks.savers.conformance import RUNTIME_CHECKS


# SQLite and PostgreSQL get the runtime protocol next (schema v3); until then only the
# in-memory savers run these.
@pytest.fixture(params=["memory", "dict", "sqlite", "postgres"])
async def runtime_saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    saver = await make_saver(request.param, request, tmp_path)
    yield saver
    close = getattr(saver, "close", None)
    if close is not None:
        await close()


@pytest.mark.parametrize("check", RUNTIME_CHECKS, ids=[check.__name__ for check in RUNTIME_CHECKS])
async def test_runtime_contract(runtime_saver: Any, check: Any) -> None:
    await check(runtime_saver)
