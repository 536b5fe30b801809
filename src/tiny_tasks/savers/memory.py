"""`MemorySaver`: checkpoints in a dict, for tests, notebooks and single-process use."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from .base import (
    Checkpoint,
    CheckpointWrite,
    RunInfo,
    RunStatus,
    check_partials_limit,
    check_version,
    filter_runs,
)

__all__ = ["MemorySaver"]


class MemorySaver:
    """Keeps checkpoints in memory; they are gone when the process exits.

    Values are stored as the engine's encoded bytes, so mutating a value after it
    was saved cannot change the checkpoint; so are the partials of the stream log.
    Safe to share between threads.

    Its runs end with the process, so a call without `run_id` may use the run id
    `"default"` with it, as without a checkpointer (`allows_default_run_id`).
    """

    allows_default_run_id = True
    """Calls without `run_id` use `"default"` (see `Checkpointer`)."""

    def __init__(self) -> None:
        self._runs: dict[str, Checkpoint] = {}
        # Per run: [delivered, version, updated_at], changed in place so that counting a
        # delivered partial (once per partial) costs two assignments.
        self._counters: dict[str, list[float]] = {}
        self._entries: dict[str, list[bytes]] = {}
        # Per run: the stream log, partial `seq` at index `seq` (`None`: never stored,
        # as when an earlier attempt recorded only the count). Read up to `delivered`.
        self._partials: dict[str, list[bytes | None]] = {}
        self._lock = threading.Lock()

    def load(self, run_id: str) -> Checkpoint | None:
        """The stored checkpoint of `run_id`, or `None`."""
        with self._lock:
            return self._current(run_id)

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        """Apply `write` if the run is at `expected_version`; raises `RunConflictError`."""
        with self._lock:
            run_id = write.run_id
            counter = self._counters.get(run_id)
            if counter is None or expected_version is None or counter[1] != expected_version:
                check_version(run_id, self._current(run_id), expected_version)
            now = time.time()
            old = self._runs.get(run_id)
            if old is None:
                self._entries[run_id] = list(write.entries)
                self._partials[run_id] = []
                version, created_at = 1, now
            else:
                # Entries live in a list beside the checkpoint: a write appends to it and
                # never copies the journal, so a run with n steps stays O(n), not O(n²).
                self._entries[run_id].extend(write.entries)
                log = self._partials[run_id]
                if len(log) > write.delivered:  # a shorter re-run: cut the stream log
                    del log[write.delivered :]
                version, created_at = expected_version + 1, old.created_at  # type: ignore[operator]
            self._runs[run_id] = Checkpoint(
                run_id,
                write.task_name,
                write.status,
                version,
                write.delivered,
                write.pending,
                write.state,
                (),
                created_at,
                now,
            )
            self._counters[run_id] = [write.delivered, version, now]
            return version

    def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        """Record how many partials the consumer has been given; raises `RunConflictError`."""
        with self._lock:
            counter = self._counters.get(run_id)
            if counter is None or counter[1] != expected_version:
                check_version(run_id, self._current(run_id), expected_version)
                raise AssertionError("unreachable")  # pragma: no cover
            counter[0] = delivered
            counter[1] = version = expected_version + 1
            counter[2] = time.time()
            return version

    def append_partial(self, run_id: str, seq: int, data: bytes, expected_version: int) -> int:
        """Store partial `seq` (replacing it and any after it) and set `delivered` to
        `seq + 1`, if the run is at `expected_version`; raises `RunConflictError`."""
        with self._lock:
            counter = self._counters.get(run_id)
            if counter is None or counter[1] != expected_version:
                check_version(run_id, self._current(run_id), expected_version)
                raise AssertionError("unreachable")  # pragma: no cover
            log = self._partials[run_id]
            if seq == len(log):
                log.append(data)
            elif seq < len(log):
                del log[seq:]
                log.append(data)
            else:
                log.extend([None] * (seq - len(log)))
                log.append(data)
            counter[0] = seq + 1
            counter[1] = version = expected_version + 1
            counter[2] = time.time()
            return version

    def load_partials(
        self, run_id: str, after: int = -1, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """The stored partials with `after < seq < delivered`, in order, at most `limit`.

        `[]` for a missing run. Raises `ValueError` for a negative `limit`.
        """
        check_partials_limit(limit)
        with self._lock:
            counter = self._counters.get(run_id)
            if counter is None:
                return []
            log = self._partials[run_id]
            start = max(after + 1, 0)
            found: list[tuple[int, bytes]] = []
            for seq in range(start, min(int(counter[0]), len(log))):
                if limit is not None and len(found) >= limit:
                    break
                data = log[seq]
                if data is not None:
                    found.append((seq, data))
            return found

    def delete(self, run_id: str) -> None:
        """Forget `run_id` and its partials (no error if it is not stored)."""
        with self._lock:
            self._runs.pop(run_id, None)
            self._counters.pop(run_id, None)
            self._entries.pop(run_id, None)
            self._partials.pop(run_id, None)

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
            runs = [self._current(run_id) for run_id in self._runs]
        return filter_runs(
            [run for run in runs if run is not None],
            status=status,
            task_name=task_name,
            limit=limit,
            offset=offset,
        )

    def _current(self, run_id: str) -> Checkpoint | None:
        stored = self._runs.get(run_id)
        if stored is None:
            return None
        delivered, version, updated_at = self._counters[run_id]
        if version != stored.version:
            stored = replace(
                stored, delivered=int(delivered), version=int(version), updated_at=updated_at
            )
            self._runs[run_id] = stored
        return replace(stored, entries=tuple(self._entries[run_id]))

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return f"MemorySaver(runs={len(self._runs)})"
