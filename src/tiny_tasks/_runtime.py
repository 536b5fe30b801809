"""`create_runtime()`: the seed's browser entry point, kept for parity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._context import emit, interrupt
from ._step import step
from ._task import task
from ._values import Command
from .savers.memory import MemorySaver

__all__ = ["Runtime", "create_runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """The names a runtime offers: `task`, `interrupt`, `emit`, `step`, `MemorySaver`, `Command`."""

    task: Any
    interrupt: Any
    emit: Any
    step: Any
    MemorySaver: type[MemorySaver]
    Command: type[Command]


def create_runtime() -> Runtime:
    """A runtime whose names behave exactly like the module-level ones.

    Runs never share state through a runtime (each run's state is its own), so every
    runtime is isolated; this exists so code ported from the TypeScript original reads
    the same: `rt = create_runtime(); rt.task("name", fn)`.
    """
    return Runtime(task, interrupt, emit, step, MemorySaver, Command)
