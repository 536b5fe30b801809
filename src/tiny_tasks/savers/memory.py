"""`MemorySaver`: checkpoints in a dict, for tests, notebooks and single-process use."""

from __future__ import annotations

import threading
import time

from ..errors import RunConflictError
from .base import Checkpoint, CheckpointWrite, RunInfo, RunStatus, check_version, filter_runs

__all__ = ["MemorySaver"]


class MemorySaver:
    """Keeps checkpoints in memory; they are gone when the process exits.

    Values are stored as the engine's encoded bytes, so mutating a value after it
    was saved cannot change the checkpoint. Safe to share between threads.
    """

    def __init__(self) -> None:
        self._runs: dict[str, Checkpoint] = {}
        self._lock = threading.Lock()

    def load(self, run_id: str) -> Checkpoint | None:
        """The stored checkpoint of `run_id`, or `None`."""
        return self._runs.get(run_id)

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        """Apply `write` if the run is at `expected_version`; raises `RunConflictError`."""
        with self._lock:
            old = self._runs.get(write.run_id)
            check_version(write.run_id, old, expected_version)
            new = write.apply(old)
            self._runs[write.run_id] = new
            return new.version

    def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        """Record how many partials the consumer has been given; raises `RunConflictError`."""
        with self._lock:
            old = self._runs.get(run_id)
            if old is None or old.version != expected_version:
                check_version(run_id, old, expected_version)
                raise RunConflictError(run_id)  # pragma: no cover - check_version raised
            version = expected_version + 1
            self._runs[run_id] = Checkpoint(
                run_id,
                old.task_name,
                old.status,
                version,
                delivered,
                old.pending,
                old.state,
                old.entries,
                old.created_at,
                time.time(),
            )
            return version

    def delete(self, run_id: str) -> None:
        """Forget `run_id` (no error if it is not stored)."""
        with self._lock:
            self._runs.pop(run_id, None)

    def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunInfo]:
        """Stored runs, newest first, filtered by status and task name."""
        with self._lock:
            runs = list(self._runs.values())
        return filter_runs(runs, status=status, task_name=task_name, limit=limit, offset=offset)

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return f"MemorySaver(runs={len(self._runs)})"
