"""`MemorySaver`: checkpoints in a dict, for tests, notebooks and single-process use."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from ._scan import Cursor, scan_checkpoints
from .base import (
    FINISHED,
    Checkpoint,
    CheckpointWrite,
    Lease,
    Mailbox,
    RunInfo,
    RunStatus,
    check_partials_limit,
    check_version,
    due_runs,
    filter_runs,
    prunable,
    stamp,
    with_cancel_request,
    with_lease,
    woken_by_message,
)

__all__ = ["MemorySaver"]


class MemorySaver:
    """Keeps checkpoints in memory; they are gone when the process exits.

    Values are stored as the engine's encoded bytes, so mutating a value after it
    was saved cannot change the checkpoint; so are the partials of the stream log.
    Safe to share between threads. It has the runtime protocol (`RuntimeSaver`: leases,
    claims, cancel requests, messages, pruning), so a `Worker` can drive its runs within
    the process.

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
        self._mailbox = Mailbox()
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
            now = stamp()
            old = self._runs.get(run_id)
            if old is None:
                self._entries[run_id] = list(write.entries)
                self._partials[run_id] = []
                version, created_at, cancel_requested = 1, now, False
            else:
                # Entries live in a list beside the checkpoint: a write appends to it and
                # never copies the journal, so a run with n steps stays O(n), not O(n²).
                self._entries[run_id].extend(write.entries)
                log = self._partials[run_id]
                if len(log) > write.delivered:  # a shorter re-run: cut the stream log
                    del log[write.delivered :]
                version, created_at = expected_version + 1, old.created_at  # type: ignore[operator]
                cancel_requested = old.cancel_requested
            self._runs[run_id] = self._mailbox.on_save(
                write,
                Checkpoint(
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
                    write.lease_owner,
                    write.lease_expires,
                    write.wake_at,
                    cancel_requested,
                    write.waits,
                ),
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
            counter[2] = stamp()
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
            counter[2] = stamp()
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
            self._mailbox.forget(run_id)

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

    def claim_runs(
        self,
        owner: str,
        task_names: Sequence[str],
        now: float,
        lease_expires: float,
        limit: int,
    ) -> list[RunInfo]:
        """Lease up to `limit` due runs of `task_names` to `owner` (see `RuntimeSaver`)."""
        with self._lock:
            rows = [self._row(run_id) for run_id in self._runs]
            claimed = [
                self._put(with_lease(run, owner, lease_expires))
                for run in due_runs(rows, task_names, now, limit)
            ]
            return [run.info() for run in claimed]

    def renew_lease(self, run_id: str, owner: str, lease_expires: float) -> Lease:
        """Extend `owner`'s lease on `run_id` (see `RuntimeSaver`)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.lease_owner != owner:
                return Lease(held=False)
            self._runs[run_id] = replace(run, lease_expires=lease_expires)
            return Lease(held=True, cancel_requested=run.cancel_requested)

    def release_lease(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on `run_id` (see `RuntimeSaver`)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run.lease_owner == owner:
                self._runs[run_id] = replace(run, lease_owner=None, lease_expires=None)

    def request_cancel(self, run_id: str, now: float) -> RunInfo | None:
        """Ask for `run_id` to be cancelled (see `RuntimeSaver`)."""
        with self._lock:
            if run_id not in self._runs:
                return None
            return self._put(with_cancel_request(self._row(run_id), now)).info()

    def send_message(self, run_id: str, topic: str, data: bytes, now: float) -> int | None:
        """Store a message for `run_id`; `None` if it is missing or finished."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.status in FINISHED:
                return None
            self._runs[run_id] = woken_by_message(run, topic, now)
            return self._mailbox.send(run_id, topic, data, now)

    def next_message(self, run_id: str, topic: str) -> tuple[int, bytes] | None:
        """The oldest untaken message of `topic` for `run_id`, as `(id, data)`."""
        with self._lock:
            return self._mailbox.next(run_id, topic)

    def prune(self, finished_before: float, limit: int | None = None) -> int:
        """Delete finished runs last updated before `finished_before` (see `RuntimeSaver`)."""
        with self._lock:
            old = prunable((self._row(run_id) for run_id in self._runs), finished_before, limit)
        for run_id in old:
            self.delete(run_id)
        return len(old)

    # -- scan_runs (the HTTP layer's listing) ---------------------------------------

    def scan_runs(
        self,
        *,
        status: RunStatus | None = None,
        task_name: str | None = None,
        after: Cursor | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[Checkpoint]:
        """Stored runs with their state (without entries), keyset-paginated; see
        `Checkpointer`. Raises `ValueError` for a negative `limit` or a bad `after`."""
        with self._lock:
            runs = [self._row(run_id) for run_id in self._runs]
        return scan_checkpoints(
            runs,
            status=status,
            task_name=task_name,
            after=after,
            limit=limit,
            oldest_first=oldest_first,
        )

    def _row(self, run_id: str) -> Checkpoint:
        """The stored row of `run_id`, its counters applied, without its entries."""
        stored = self._runs[run_id]
        delivered, version, updated_at = self._counters[run_id]
        if version != stored.version:
            stored = replace(
                stored, delivered=int(delivered), version=int(version), updated_at=updated_at
            )
            self._runs[run_id] = stored
        return stored

    def _put(self, run: Checkpoint) -> Checkpoint:
        self._runs[run.run_id] = run
        self._counters[run.run_id] = [run.delivered, run.version, run.updated_at]
        return run

    def _current(self, run_id: str) -> Checkpoint | None:
        if run_id not in self._runs:
            return None
        return replace(self._row(run_id), entries=tuple(self._entries[run_id]))

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return f"MemorySaver(runs={len(self._runs)})"
