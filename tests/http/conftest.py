"""Fixtures of the HTTP tests: every saver kind through `saver`, as in tests/savers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

for _folder in (
    Path(__file__).parent,
    Path(__file__).parents[1],
    Path(__file__).parents[1] / "savers",
):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from saver_kinds import SAVER_KINDS, make_saver  # noqa: E402


@pytest.fixture(params=SAVER_KINDS)
async def saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh saver of each kind, closed after the test."""
    saver = await make_saver(request.param, request, tmp_path)
    yield saver
    close = getattr(saver, "close", None)
    if close is not None:
        await close()
