"""The run journal: what a run has recorded, and its plain-data form in a checkpoint.

A checkpoint holds a small `state` blob (the pending interrupts and the deadlines of
unanswered ones), rewritten when the run pauses, and an append-only list of entries,
each encoded once: the input, answers (given, a deadline's default, or a deadline's
timeout), step results, finished children, `patched()` decisions, wait times (a
sleep's wake time, a recv's deadline), received messages, and voids (an answer or child
result withdrawn because the resume that led to it was refused after it was written).
Replay matches them by site id; entries are read in order, so an answer given again after
a void counts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .errors import SerializationError, UnknownTypeError
from .savers.base import FINISHED, Checkpoint
from .serde import Serializer

__all__ = [
    "ChildRecord",
    "Journal",
    "StepRecord",
    "decode_journal",
    "encode_entry",
    "encode_state",
    "journal_entries",
]


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
    # `patched()` decisions by site; not effects: they take no index and are never checked
    # for being reached, so adding or removing a `patched()` call moves no other site.
    patches: dict[str, bool] = field(default_factory=dict)
    # A sleep's wake time, or a recv's deadline, by site (recorded on first reach).
    waits: dict[str, float] = field(default_factory=dict)
    # What each recv received (None on its timeout), by site.
    received: dict[str, Any] = field(default_factory=dict)
    # Interrupts answered by their deadline passing, without a default: site -> deadline.
    timeouts: dict[str, float] = field(default_factory=dict)
    # Deadlines of interrupts not answered yet (in the state blob): site -> (when,
    # has_default, default).
    deadlines: dict[str, tuple[float, bool, Any]] = field(default_factory=dict)
    # Who started the run and who answered each interrupt, where that was recorded
    # (runs started or resumed through the HTTP layer, see `_acting`).
    started_by: Any = None
    answered_by: dict[str, Any] = field(default_factory=dict)


def encode_entry(serde: Serializer, entry: dict[str, Any]) -> bytes:
    """One journal entry as bytes; raises `SerializationError` naming what failed."""
    try:
        encoded: bytes = serde.dumps(entry)
        return encoded
    except SerializationError:
        raise
    except Exception as exc:  # a custom serializer may raise anything
        raise SerializationError(f"cannot serialise {type(exc).__name__}: {exc}") from exc


def encode_state(
    serde: Serializer,
    pending: list[tuple[str, Any]],
    deadlines: dict[str, tuple[float, bool, Any]] | None = None,
) -> bytes:
    """The state blob: the pending interrupts, as `[id, value]` pairs in site order, and
    the deadlines of interrupts not answered yet (`{id: [when, has_default, default]}`)."""
    state: dict[str, Any] = {"pending": [[site, value] for site, value in pending]}
    if deadlines:
        state["deadlines"] = {site: list(deadline) for site, deadline in deadlines.items()}
    return encode_entry(serde, state)


def decode_journal(checkpoint: Checkpoint, serde: Serializer) -> Journal:
    """Rebuild the journal from a stored checkpoint.

    Raises `SerializationError` naming the run when an entry or the state cannot be
    decoded or does not have the shape this code writes (a damaged store).
    """
    run_id = checkpoint.run_id
    journal = Journal()
    answers, steps, children = journal.answers, journal.steps, journal.children
    number = 0
    try:
        # One loop with the checks inline: this runs once per recorded site on every resume.
        for number, entry in enumerate(_decode_entries(serde, checkpoint.entries, run_id)):  # noqa: B007 - read in the except clause
            kind = entry["k"]
            if kind == "input":
                journal.input = entry["v"]
                journal.started_by = entry.get("by")
                continue
            site = entry["s"]
            if site.__class__ is not str:
                raise TypeError(f"a site id of type {type(site).__name__}")
            if kind == "answer":
                if "x" in entry:  # its deadline passed and it has no default
                    journal.timeouts[site] = float(entry["t"])
                else:
                    answers[site] = entry["v"]
                if "by" in entry:
                    journal.answered_by[site] = entry["by"]
            elif kind == "step":
                steps[site] = _step_record(entry)
            elif kind == "child":
                children[site] = _child_record(entry)
            elif kind == "void":  # a refused resume's answer or child result
                answers.pop(site, None)
                children.pop(site, None)
                journal.timeouts.pop(site, None)
                journal.answered_by.pop(site, None)
            elif kind == "wait":
                journal.waits[site] = float(entry["t"])
            elif kind == "recv":
                journal.received[site] = entry["v"]
            elif kind == "patch":
                value = entry["v"]
                if type(value) is not bool:
                    raise TypeError(f"a patch decision of type {type(value).__name__}")
                journal.patches[site] = value
            else:
                raise ValueError(
                    f"unknown entry kind {kind!r}; was the run written by a newer version "
                    "of tiny-tasks?"
                )
    except SerializationError:
        raise  # already names the run and the entry (a SerializationError is a TypeError)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _damaged(run_id, f"journal entry {number}", exc) from exc
    if checkpoint.state and checkpoint.status not in FINISHED:  # finished: an outcome
        state = _load(serde, checkpoint.state, run_id)
        try:
            pending = {}
            for site, value in state["pending"]:
                if type(site) is not str:
                    raise TypeError(f"an interrupt id of type {type(site).__name__}")
                pending[site] = value
            for site, (when, has_default, default) in state.get("deadlines", {}).items():
                journal.deadlines[site] = (float(when), bool(has_default), default)
        except (KeyError, TypeError, ValueError) as exc:
            raise _damaged(run_id, "state", exc) from exc
        journal.pending = pending
    elif checkpoint.status == "paused":
        raise _damaged(run_id, "state", ValueError("a paused run with no pending interrupts"))
    return journal


def journal_entries(checkpoint: Checkpoint, serde: Serializer) -> list[dict[str, Any]]:
    """The run's journal entries as written, in order (for showing a run's timeline).

    Raises `SerializationError` naming the run when an entry cannot be decoded.
    """
    entries = _load_all(serde, checkpoint.entries, checkpoint.run_id)
    return [entry for entry in entries if isinstance(entry, dict)]


def _child_record(entry: dict[str, Any]) -> ChildRecord:
    partials = entry["p"]
    if type(partials) is not list:
        raise TypeError(f"child partials of type {type(partials).__name__}")
    return ChildRecord(partials, entry.get("v"))


def _step_record(entry: dict[str, Any]) -> StepRecord:
    args_hash = entry.get("h")
    if args_hash is not None and type(args_hash) is not str:
        raise TypeError(f"an arguments hash of type {type(args_hash).__name__}")
    error = entry.get("e")
    if error is None:
        return StepRecord(args_hash, entry.get("v"))
    error = tuple(error)
    if len(error) != 4 or not all(type(part) is str for part in error[:3]):
        raise ValueError("a step error that is not [module, name, message, args]")
    return StepRecord(args_hash, None, error)


def _damaged(run_id: str, where: str, exc: Exception) -> SerializationError:
    detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return SerializationError(
        f"the stored {where} is damaged ({detail}). The checkpoint was left as it is: "
        "restore it from a backup, or delete the run and start it again",
        run_id=run_id,
    )


KEPT_RUNS = 256
"""Runs whose decoded entries this process keeps for their next load (least recent out)."""

_SCALARS = frozenset({str, int, float, bool, type(None)})

# run id -> (serde, entries, each entry decoded, or None where it holds a mutable value)
_decoded_lock = threading.Lock()  # event loops in several threads decode
_decoded: OrderedDict[str, tuple[Serializer, tuple[bytes, ...], list[Any]]] = OrderedDict()


def _decode_entries(serde: Serializer, entries: tuple[bytes, ...], run_id: str) -> list[Any]:
    """Every entry decoded, parsing only those this process has not decoded before.

    A run resumed K times by one process would otherwise parse its whole journal on
    every resume (K^2/2 entries in all). The entries are append-only, so a run's next
    load starts with the bytes of its last one: when it does (compared byte for byte,
    with the same serde), those entries are taken from the last decode and only the
    new ones are parsed. An entry whose values are not all immutable scalars is parsed
    again each time: its values are handed to the task, which may change them.
    """
    with _decoded_lock:
        kept = _decoded.get(run_id)
    count = 0
    if kept is not None and kept[0] is serde:
        count = len(kept[1])
        if count > len(entries) or entries[:count] != kept[1]:
            count = 0
    if count:
        previous = kept[2]  # type: ignore[index]
        again = [n for n in range(count) if previous[n] is None]
        try:
            fresh = _load_all(serde, (*(entries[n] for n in again), *entries[count:]), run_id)
        except Exception:  # decoded again whole, to name the bad entry by its number
            fresh = None
    if count and fresh is not None:
        decoded = list(previous)
        for n, entry in zip(again, fresh, strict=False):
            decoded[n] = entry
        decoded.extend(fresh[len(again) :])
        shareable = previous + [_shareable(entry) for entry in fresh[len(again) :]]
    else:
        decoded = _load_all(serde, entries, run_id)
        shareable = [_shareable(entry) for entry in decoded]
    with _decoded_lock:
        _decoded[run_id] = (serde, entries, shareable)
        _decoded.move_to_end(run_id)
        if len(_decoded) > KEPT_RUNS:
            _decoded.popitem(last=False)
    return decoded


def _shareable(entry: Any) -> Any:
    """`entry` if every value in it is an immutable scalar (safe to hand out again)."""
    if entry.__class__ is not dict:
        return None
    for value in entry.values():
        if value.__class__ not in _SCALARS:
            return None
    return entry


def _load_all(serde: Serializer, entries: tuple[bytes, ...], run_id: str) -> list[Any]:
    """Decode every entry, in one parse when the serializer can (`loads_many`)."""
    loads_many = getattr(serde, "loads_many", None)
    if loads_many is not None:
        try:
            decoded: list[Any] = loads_many(entries)
            return decoded
        except Exception:  # decoded again one by one below, to name the bad entry
            pass
    return [_load(serde, raw, run_id, f"journal entry {n}") for n, raw in enumerate(entries)]


def _load(serde: Serializer, raw: bytes, run_id: str, where: str = "state") -> Any:
    try:
        return serde.loads(raw)
    except UnknownTypeError as exc:  # well-formed, but of a type not imported or registered here
        raise UnknownTypeError(
            f"cannot decode the stored {where}: {exc}",
            type_name=exc.type_name,
            module=exc.module,
            run_id=run_id,
        ) from exc
    except Exception as exc:  # bytes that do not decode; a custom serializer may raise anything
        raise _damaged(run_id, where, exc) from exc
