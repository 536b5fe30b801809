"""A saver wrapper that injects storage faults, and the bookkeeping to check a run after them.

`FaultySaver(inner, every=k)` passes each call to `inner`; every k-th call of each
checkpointer method fails with `ConnectionError`. Faults of a write alternate between
"before" (the call never reaches `inner`: nothing applied) and "after" (`inner` applied
it, then the answer is lost, as when a connection drops during COMMIT).
Counting per method (not over all calls) guarantees progress: a global count can land
every fault on the write each attempt makes first, forever.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tiny_tasks._run import resolve
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite, RunInfo
from tiny_tasks.serde import default_serializer

_SERDE = default_serializer()

WRITES = ("save", "mark_delivered", "append_partial", "delete")


class FaultySaver:
    """Every `every`-th call of each method fails (see the module docstring)."""

    def __init__(self, inner: Any, every: int) -> None:
        self.inner = inner
        self.every = every
        self.calls: Counter[str] = Counter()
        self.faults: list[tuple[str, str]] = []  # (method, "before" or "after")
        self.applied_steps: set[Any] = set()  # values of step records that were stored
        self.lost_positions: list[int] = []  # partials marked delivered, answer lost
        self._delivered = 0
        self.serde = getattr(inner, "serde", None)

    def _fault(self, method: str) -> str | None:
        self.calls[method] += 1
        count = self.calls[method]
        if count % self.every:
            return None
        if method in WRITES and (count // self.every) % 2 == 0:
            return "after"
        return "before"

    def _raise(self, method: str, when: str) -> None:
        self.faults.append((method, when))
        raise ConnectionError(f"injected fault {len(self.faults)} ({method}, {when})")

    async def load(self, run_id: str) -> Checkpoint | None:
        when = self._fault("load")
        if when is not None:
            self._raise("load", when)
        stored: Checkpoint | None = await resolve(self.inner.load(run_id))
        return stored

    async def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        when = self._fault("save")
        if when == "before":
            self._raise("save", when)
        version: int = await resolve(self.inner.save(write, expected_version))
        for entry in write.entries:
            decoded = _SERDE.loads(entry)
            if decoded["k"] == "step":
                self.applied_steps.add(decoded["v"])
        self._applied_delivered("save", write.delivered, when)
        return version

    async def delete(self, run_id: str) -> None:
        when = self._fault("delete")
        if when == "before":
            self._raise("delete", when)
        await resolve(self.inner.delete(run_id))
        self._delivered = 0
        if when is not None:
            self._raise("delete", when)

    async def list_runs(self, **filters: Any) -> list[RunInfo]:
        runs: list[RunInfo] = await resolve(self.inner.list_runs(**filters))
        return runs

    def _applied_delivered(self, method: str, delivered: int, when: str | None) -> None:
        """A write that raised the delivered count, then lost its answer, skips a partial:
        the consumer was not given it, and the store says it was."""
        if when == "after":
            if delivered > self._delivered:
                self.lost_positions.append(delivered)
            self._delivered = delivered
            self._raise(method, when)
        self._delivered = delivered


class FaultyMarkingSaver(FaultySaver):
    """`FaultySaver` over a saver that has `mark_delivered`."""

    async def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        when = self._fault("mark_delivered")
        if when == "before":
            self._raise("mark_delivered", when)
        version: int = await resolve(self.inner.mark_delivered(run_id, delivered, expected_version))
        self._applied_delivered("mark_delivered", delivered, when)
        return version


class FaultyLoggingSaver(FaultyMarkingSaver):
    """`FaultyMarkingSaver` over a saver that also keeps the stream log."""

    async def append_partial(
        self, run_id: str, seq: int, data: bytes, expected_version: int
    ) -> int:
        when = self._fault("append_partial")
        if when == "before":
            self._raise("append_partial", when)
        version: int = await resolve(self.inner.append_partial(run_id, seq, data, expected_version))
        self._applied_delivered("append_partial", seq + 1, when)
        return version

    async def load_partials(
        self, run_id: str, after: int = -1, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        # Never faulted here (test_storage_faults' BrokenSaver fails it, and the run is
        # kept). A fault schedule per method is periodic: with k = 2, one more faultable
        # call per re-attach locks the attempts into a cycle where the re-attach's write
        # succeeds and the step record right after it always fails, and no run ends.
        self.calls["load_partials"] += 1
        rows: list[tuple[int, bytes]] = await resolve(
            self.inner.load_partials(run_id, after, limit)
        )
        return rows


def faulty(inner: Any, every: int) -> FaultySaver:
    """The wrapper that offers exactly the methods `inner` offers."""
    if hasattr(inner, "append_partial"):
        return FaultyLoggingSaver(inner, every)
    if hasattr(inner, "mark_delivered"):
        return FaultyMarkingSaver(inner, every)
    return FaultySaver(inner, every)
