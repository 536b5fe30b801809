"""A run's timeline, read from its journal: what it recorded, in the order it did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._journal import journal_entries
from ..._outcome import read_outcome
from ...savers.base import Checkpoint
from ...serde import Serializer

__all__ = ["Moment", "timeline"]


@dataclass(frozen=True, slots=True)
class Moment:
    """One line of a timeline: its `kind` (input, step, child, answer, wait, recv, patch,
    void, pending, sleeping, outcome), its site, when (`at`), how long (`seconds`),
    who, a value to show, and an error (type, message)."""

    kind: str
    title: str
    site: str | None = None
    at: float | None = None
    seconds: float | None = None
    by: Any = None
    value: Any = None
    has_value: bool = False
    error: tuple[str, str] | None = None


def timeline(stored: Checkpoint, serde: Serializer, pending: dict[str, Any]) -> list[Moment]:
    """The moments of run `stored`: its journal's entries, then what it waits on now,
    then its outcome if it finished (kept)."""
    moments = [_moment(entry) for entry in journal_entries(stored, serde)]
    for site in pending:
        moments.append(Moment("pending", "Waiting on an answer", site, stored.updated_at))
    if stored.status == "sleeping":
        moments.append(Moment("sleeping", "Sleeping", None, stored.wake_at))
    outcome = read_outcome(stored, serde)
    if outcome is not None:
        if outcome.status == "done":  # its result is shown above the timeline
            moments.append(Moment("outcome", "Done", None, stored.updated_at))
        else:
            title = "Cancelled" if outcome.status == "cancelled" else "Failed"
            moments.append(Moment("outcome", title, at=stored.updated_at, error=outcome.error))
    return moments


def _moment(entry: dict[str, Any]) -> Moment:
    kind = str(entry.get("k"))
    site = entry.get("s") if isinstance(entry.get("s"), str) else None
    at = _number(entry.get("at"))
    if kind == "input":
        return Moment(kind, "Started", None, at, by=entry.get("by"), value=entry.get("v"),
                      has_value=True)  # fmt: skip
    if kind == "answer":
        if entry.get("x") == "timeout":
            return Moment(kind, "Deadline passed, no answer", site, _number(entry.get("t")))
        title = "Answered with its default (deadline passed)" if entry.get("d") else "Answered"
        return Moment(kind, title, site, at, by=entry.get("by"), value=entry.get("v"),
                      has_value=True)  # fmt: skip
    if kind == "step":
        ran = entry.get("ran")
        began = ended = None
        if isinstance(ran, list) and len(ran) == 2:
            began, ended = _number(ran[0]), _number(ran[1])
        seconds = ended - began if began is not None and ended is not None else None
        error = entry.get("e")
        if isinstance(error, list) and len(error) == 4:
            return Moment(kind, "Step failed", site, ended, seconds,
                          error=(str(error[1]), str(error[2])))  # fmt: skip
        return Moment(kind, "Step", site, ended, seconds, value=entry.get("v"), has_value=True)
    if kind == "child":
        count = len(entry.get("p") or [])
        title = f"Task finished ({count} partial{'s' if count != 1 else ''})"
        return Moment(kind, title, site, at, value=entry.get("v"), has_value=True)
    if kind == "wait":
        return Moment(kind, "Waits until", site, _number(entry.get("t")))
    if kind == "recv":
        value = entry.get("v")
        title = "Received a message" if value is not None else "No message before its deadline"
        return Moment(kind, title, site, value=value, has_value=value is not None)
    if kind == "patch":
        title = "New code path taken" if entry.get("v") else "Old code path kept"
        return Moment(kind, title, site)
    if kind == "void":
        return Moment(kind, "Withdrawn (its resume was refused)", site)
    return Moment(kind, f"Recorded {kind!r}", site, at)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
