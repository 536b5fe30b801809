"""Run inspection for operators: list runs, look at one, delete one.

Built on the checkpointer protocol alone, so it works with every saver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._journal import decode_journal
from ._outcome import read_outcome
from ._run import resolve
from ._values import Interrupt
from .savers.base import Checkpointer, RunInfo, RunStatus, check_checkpointer, check_run_id
from .serde import default_serializer

__all__ = ["RunState", "delete_run", "get_run", "list_runs"]


@dataclass(frozen=True, slots=True)
class RunState:
    """One stored run as an operator sees it.

    `started_by` and `answered_by` (interrupt id -> principal) name who started the run
    and who answered its interrupts, when they were recorded (runs started or answered
    through `tiny_tasks.http` with an `auth` hook); `None` / `{}` otherwise.
    """

    run_id: str
    task_name: str
    status: RunStatus
    version: int
    input: Any
    pending: tuple[Interrupt, ...]
    delivered: int
    answers: int
    steps: int
    children: int
    created_at: float
    updated_at: float
    lease_owner: str | None = None
    lease_expires: float | None = None
    wake_at: float | None = None
    cancel_requested: bool = False
    outcome: RunStatus | None = None
    result: Any = None
    error: tuple[str, str] | None = None
    started_by: Any = None
    answered_by: dict[str, Any] = field(default_factory=dict)


async def get_run(checkpointer: Checkpointer, run_id: str) -> RunState | None:
    """The stored state of `run_id`, or `None`; raises `SerializationError` on bad data.

    Shows the lease (owner, expiry), the wake time and the cancel flag, and for a kept,
    finished run its `outcome` (`done`, `failed`, `cancelled`) with its `result` or
    `error` (type name and message).

    Raises `InvalidRunIdError` (a `ValueError`) for an invalid run id and
    `CheckpointerTypeError` for something that is not a checkpointer.
    """
    check_checkpointer(checkpointer)
    stored = await resolve(checkpointer.load(check_run_id(run_id)))
    if stored is None:
        return None
    serde = getattr(checkpointer, "serde", None) or default_serializer()
    journal = decode_journal(stored, serde)
    outcome = read_outcome(stored, serde)
    return RunState(
        run_id=stored.run_id,
        task_name=stored.task_name,
        status=stored.status,
        version=stored.version,
        input=journal.input,
        pending=tuple(Interrupt(value, site) for site, value in journal.pending.items()),
        delivered=stored.delivered,
        answers=len(journal.answers),
        steps=len(journal.steps),
        children=len(journal.children),
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        lease_owner=stored.lease_owner,
        lease_expires=stored.lease_expires,
        wake_at=stored.wake_at,
        cancel_requested=stored.cancel_requested,
        outcome=None if outcome is None else outcome.status,
        result=None if outcome is None else outcome.result,
        error=None if outcome is None else outcome.error,
        started_by=journal.started_by,
        answered_by=dict(journal.answered_by),
    )


async def list_runs(
    checkpointer: Checkpointer,
    *,
    status: RunStatus | None = None,
    task_name: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[RunInfo]:
    """Stored runs, newest first, filtered by status and task name, one page at a time."""
    check_checkpointer(checkpointer)
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative (got {limit}, {offset})")
    runs: list[RunInfo] = await resolve(
        checkpointer.list_runs(status=status, task_name=task_name, limit=limit, offset=offset)
    )
    return runs


async def delete_run(checkpointer: Checkpointer, run_id: str) -> bool:
    """Delete `run_id`; returns whether it was stored.

    Raises `InvalidRunIdError` (a `ValueError`) for an invalid run id and
    `CheckpointerTypeError` for something that is not a checkpointer.
    """
    check_checkpointer(checkpointer)
    check_run_id(run_id)
    existed = await resolve(checkpointer.load(run_id)) is not None
    await resolve(checkpointer.delete(run_id))
    return existed
