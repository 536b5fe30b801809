"""The plain values a run hands its consumer: events, snapshots, interrupts, commands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

P = TypeVar("P")

__all__ = ["Command", "Event", "Interrupt", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A pause request: the value passed to `interrupt(value)` and its site id.

    `id` names the interrupt's place in the task tree (for example
    `"workflow/inner#0/interrupt#1"`) and stays the same across replays, so it can be
    used to answer this interrupt with `Command(answers={id: value})`.
    """

    value: Any
    id: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run's state as seen by its consumer at one event.

    `resume` lists the answers recorded so far, in the order they were given;
    `pending` the interrupts the run is waiting on (empty unless it paused).

    `rewind` is `None` unless this attempt at the run streams something else than
    what an earlier attempt delivered (a re-run task answered differently): then it is
    the position `k` (0-based, in the run's whole stream) of the first partial that
    differs, on every event of this attempt from that partial on. The partials from
    position `k` on replace those the consumer received before: keep the first `k`,
    drop the rest, and append what follows. Only with `delivery="exactly_once"` and a
    checkpointer that keeps the stream log (all built-in savers do).
    """

    resume: list[Any] = field(default_factory=list)
    run_id: str = "default"
    pending: tuple[Interrupt, ...] = ()
    rewind: int | None = None


class Event(NamedTuple, Generic[P]):
    """One item of a task's stream; unpacks as `partial, snapshot, interrupt`.

    A partial event is `(value, snapshot, None)`; an interrupt event is
    `(None, snapshot, Interrupt)` and ends its stream.
    """

    partial: P | None
    snapshot: Snapshot
    interrupt: Interrupt | None


@dataclass(frozen=True, slots=True, init=False)
class Command:
    """Input that resumes a paused run instead of starting one.

    `Command(resume=value)` answers the one pending interrupt (as `task.resume(value)`);
    `Command(answers={interrupt_id: value, ...})` answers any subset of several pending
    interrupts by id; those left unanswered pause the run again.
    """

    resume: Any
    answers: Mapping[str, Any] | None

    def __init__(self, resume: Any = None, *, answers: Mapping[str, Any] | None = None):
        object.__setattr__(self, "resume", resume)
        object.__setattr__(self, "answers", dict(answers) if answers is not None else None)
