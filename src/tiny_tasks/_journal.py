"""The run journal: what a run has recorded, and its plain-data form in a checkpoint.

A checkpoint holds a small `state` blob (the pending interrupts), rewritten on every
write, and an append-only list of entries, each encoded once: the input, answers,
step results and finished children. Replay matches them by site id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SerializationError
from .savers.base import Checkpoint
from .serde import Serializer

__all__ = ["ChildRecord", "Journal", "StepRecord", "decode_journal", "encode_entry", "encode_state"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A finished step: its result, or the error that survived its retries."""

    args_hash: str | None
    value: Any = None
    error: tuple[str, str, str, Any] | None = None  # module, qualname, message, args


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """A nested task that finished: the partials it gave its parent, and its result."""

    partials: list[Any]
    result: Any


@dataclass(slots=True)
class Journal:
    """Everything a run has recorded, keyed by site id."""

    input: Any = None
    answers: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    children: dict[str, ChildRecord] = field(default_factory=dict)
    pending: dict[str, Any] = field(default_factory=dict)

    def recorded_sites(self) -> list[str]:
        """Every site id the journal holds something for, pending interrupts included."""
        return [*self.answers, *self.steps, *self.children, *self.pending]


def encode_entry(serde: Serializer, entry: dict[str, Any]) -> bytes:
    """One journal entry as bytes; raises `SerializationError` naming what failed."""
    try:
        encoded: bytes = serde.dumps(entry)
        return encoded
    except SerializationError:
        raise
    except Exception as exc:  # a custom serializer may raise anything
        raise SerializationError(f"cannot serialise {type(exc).__name__}: {exc}") from exc


def encode_state(serde: Serializer, pending: list[tuple[str, Any]]) -> bytes:
    """The state blob: the pending interrupts, as `[id, value]` pairs in site order."""
    return encode_entry(serde, {"pending": [[site, value] for site, value in pending]})


def decode_journal(checkpoint: Checkpoint, serde: Serializer) -> Journal:
    """Rebuild the journal from a stored checkpoint; raises `SerializationError`."""
    journal = Journal()
    for entry in _load_all(serde, checkpoint.entries, checkpoint.run_id):
        kind = entry["k"]
        if kind == "answer":
            journal.answers[entry["s"]] = entry["v"]
        elif kind == "step":
            error = entry.get("e")
            journal.steps[entry["s"]] = StepRecord(
                entry.get("h"), entry.get("v"), tuple(error) if error is not None else None
            )
        elif kind == "child":
            journal.children[entry["s"]] = ChildRecord(list(entry["p"]), entry.get("v"))
        elif kind == "input":
            journal.input = entry["v"]
        else:
            raise SerializationError(
                f"unknown journal entry kind {kind!r}; was the run written by a newer "
                "version of tiny-tasks?",
                run_id=checkpoint.run_id,
            )
    if checkpoint.state:
        state = _load(serde, checkpoint.state, checkpoint.run_id)
        journal.pending = {site: value for site, value in state["pending"]}
    return journal


def _load_all(serde: Serializer, entries: tuple[bytes, ...], run_id: str) -> list[Any]:
    """Decode every entry, in one parse when the serializer can (`loads_many`)."""
    loads_many = getattr(serde, "loads_many", None)
    if loads_many is None:
        return [_load(serde, raw, run_id) for raw in entries]
    try:
        decoded: list[Any] = loads_many(entries)
    except Exception as exc:
        raise SerializationError(f"cannot decode the stored journal: {exc}", run_id=run_id) from exc
    return decoded


def _load(serde: Serializer, raw: bytes, run_id: str) -> Any:
    try:
        return serde.loads(raw)
    except SerializationError as exc:
        raise SerializationError(f"cannot decode the stored journal: {exc}", run_id=run_id) from exc
    except Exception as exc:
        raise SerializationError(
            f"cannot decode the stored journal ({type(exc).__name__}: {exc})", run_id=run_id
        ) from exc
