"""The custom saver from the `tiny_tasks.savers.base` docstring, copied verbatim.

`test_contract.py` checks that this copy still matches the docstring and runs it
through the whole contract, so the documented example is known to work.
"""

from __future__ import annotations

from typing import Any

from tiny_tasks.savers.base import (
    Checkpoint,
    CheckpointWrite,
    RunInfo,
    check_version,
    filter_runs,
)


class DictSaver:
    def __init__(self) -> None:
        self.runs: dict[str, Checkpoint] = {}

    def load(self, run_id: str) -> Checkpoint | None:
        return self.runs.get(run_id)

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        old = self.runs.get(write.run_id)
        check_version(write.run_id, old, expected_version)
        self.runs[write.run_id] = write.apply(old)
        return self.runs[write.run_id].version

    def delete(self, run_id: str) -> None:
        self.runs.pop(run_id, None)

    def list_runs(self, **filters: Any) -> list[RunInfo]:
        return filter_runs(self.runs.values(), **filters)
