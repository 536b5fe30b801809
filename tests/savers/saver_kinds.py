"""Every saver kind the contract runs on, and how to make a fresh one of each.

A module of its own (not `conftest.py`), so tests can import it by a unique name.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from dict_saver import DictSaver

from tiny_tasks.savers import MemorySaver, PostgresSaver, SqliteSaver

SAVER_KINDS = ("memory", "dict", "sqlite", "postgres")


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
