"""The custom saver from the `tiny_tasks.savers.base` docstring, copied verbatim.

`test_contract.py` checks that this copy still matches the docstring and runs it
through the whole contract (and `test_runtime_contract.py` through the runtime's), so
the documented example is known to work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tiny_tasks.savers.base import (
    FINISHED,
    Checkpoint,
    CheckpointWrite,
    Lease,
    Mailbox,
    RunInfo,
    check_version,
    due_runs,
    filter_runs,
    prunable,
    with_cancel_request,
    with_lease,
    woken_by_message,
)


class DictSaver:
    def __init__(self) -> None:
        self.runs: dict[str, Checkpoint] = {}
        self.mailbox = Mailbox()

    def load(self, run_id: str) -> Checkpoint | None:
        return self.runs.get(run_id)

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        old = self.runs.get(write.run_id)
        check_version(write.run_id, old, expected_version)
        self.runs[write.run_id] = self.mailbox.on_save(write, write.apply(old))
        return self.runs[write.run_id].version

    def delete(self, run_id: str) -> None:
        self.runs.pop(run_id, None)
        self.mailbox.forget(run_id)

    def list_runs(self, **filters: Any) -> list[RunInfo]:
        return filter_runs(self.runs.values(), **filters)

    def claim_runs(
        self, owner: str, task_names: Sequence[str], now: float, expires: float, limit: int
    ) -> list[RunInfo]:
        due = due_runs(self.runs.values(), task_names, now, limit)
        claimed = [with_lease(run, owner, expires) for run in due]
        self.runs.update((run.run_id, run) for run in claimed)
        return [run.info() for run in claimed]

    def renew_lease(self, run_id: str, owner: str, expires: float) -> Lease:
        run = self.runs.get(run_id)
        if run is None or run.lease_owner != owner:
            return Lease(held=False)
        self.runs[run_id] = replace(run, lease_expires=expires)
        return Lease(held=True, cancel_requested=run.cancel_requested)

    def release_lease(self, run_id: str, owner: str) -> None:
        run = self.runs.get(run_id)
        if run is not None and run.lease_owner == owner:
            self.runs[run_id] = replace(run, lease_owner=None, lease_expires=None)

    def request_cancel(self, run_id: str, now: float) -> RunInfo | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        self.runs[run_id] = with_cancel_request(run, now)
        return self.runs[run_id].info()

    def send_message(self, run_id: str, topic: str, data: bytes, now: float) -> int | None:
        run = self.runs.get(run_id)
        if run is None or run.status in FINISHED:
            return None
        self.runs[run_id] = woken_by_message(run, topic, now)
        return self.mailbox.send(run_id, topic, data, now)

    def next_message(self, run_id: str, topic: str) -> tuple[int, bytes] | None:
        return self.mailbox.next(run_id, topic)

    def prune(self, finished_before: float, limit: int | None = None) -> int:
        old = prunable(self.runs.values(), finished_before, limit)
        for run_id in old:
            self.delete(run_id)
        return len(old)
