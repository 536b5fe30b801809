"""A read-only view of one stored run, for dry replays (`check_runs`).

The engine replays a run against a `DryView` as it replays any resume, with one
difference (`Run.dry`): a paused run is replayed too, with no answers, so it pauses on its
interrupts again. A resume writes nothing until just before its first new effect (a
step that was never recorded, a partial beyond the delivered count, a new child's
result, a pause, finishing); a dry replay stops at that same first write: the view
refuses every write with `DryStop`, and the run raises it instead of deleting itself.
"""

from __future__ import annotations

from typing import Any

from .savers.base import Checkpoint, CheckpointWrite

__all__ = ["DryStop", "DryView"]


class DryStop(BaseException):
    """A dry replay reached its first write, and stops there.

    A `BaseException`, like the engine's own pause, so `except Exception:` in the task
    cannot swallow it. `kind` is "pause" (the run would pause on `pending`), "end" (it
    would finish, or fail with `failure`) or "write" (anything else new: a step that was
    never recorded, a new partial, a new child's result).
    """

    def __init__(
        self,
        kind: str,
        detail: str,
        pending: tuple[str, ...] = (),
        failure: Exception | None = None,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.pending = pending
        self.failure = failure


class DryView:
    """A saver over one stored checkpoint that never writes anything anywhere."""

    def __init__(self, stored: Checkpoint, serde: Any) -> None:
        self.stored = stored
        self.serde = serde

    def load(self, run_id: str) -> Checkpoint | None:
        return self.stored if run_id == self.stored.run_id else None

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        if write.status in ("paused", "sleeping"):
            raise DryStop("pause", f"the run would pause on {list(write.pending)}", write.pending)
        delivered = self.stored.delivered
        if write.delivered > delivered:
            raise DryStop("write", f"a partial beyond the {delivered} delivered")
        raise DryStop("write", "a step that was never recorded, or a new child's result")

    def delete(self, run_id: str) -> None:
        raise DryStop("end", "the run would end")

    def list_runs(self, **filters: Any) -> list[Any]:
        return []
