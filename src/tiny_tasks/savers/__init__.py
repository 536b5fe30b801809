"""Checkpoint storage: the protocol and the built-in savers.

`SqliteSaver` and `PostgresSaver` are imported lazily so that importing this package
never needs an optional dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    Checkpoint,
    Checkpointer,
    CheckpointWrite,
    Lease,
    RunInfo,
    RunStatus,
    RuntimeSaver,
    check_version,
    filter_runs,
)
from .memory import MemorySaver

if TYPE_CHECKING:
    from .postgres import PostgresSaver
    from .sqlite import SqliteSaver

__all__ = [
    "Checkpoint",
    "CheckpointWrite",
    "Checkpointer",
    "Lease",
    "MemorySaver",
    "PostgresSaver",
    "RunInfo",
    "RunStatus",
    "RuntimeSaver",
    "SqliteSaver",
    "check_version",
    "filter_runs",
]


def __getattr__(name: str) -> Any:
    if name == "SqliteSaver":
        from .sqlite import SqliteSaver

        return SqliteSaver
    if name == "PostgresSaver":
        from .postgres import PostgresSaver

        return PostgresSaver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
