"""Kept outcomes: a finished run stored with its result or error instead of deleted.

A run kept (`keep=True`, the default for submitted runs and under a `Worker`) ends with
one write that stores its status (`done`, `failed`, `cancelled`) and, as its state blob,
its outcome: `{"outcome": "done", "result": value}` or `{"outcome": "failed" |
"cancelled", "error": [type_name, message]}`. Its journal entries stay (the input among
them, so a later call can be checked against it). Calling the run again returns that
outcome and runs nothing; `submit` stores a queued run for a worker to start.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._acting import current_acting
from ._clock import current_clock
from ._journal import Journal, decode_journal, encode_entry
from ._values import Command
from .errors import (
    AlreadyAnsweredError,
    InputMismatchError,
    RunCancelled,
    RunConflictError,
    RunFailedError,
    SerializationError,
    TaskMismatchError,
)
from .savers.base import FINISHED, Checkpoint, Checkpointer, CheckpointWrite, RunStatus
from .serde import Serializer

if TYPE_CHECKING:
    from ._run import Run

__all__ = [
    "Outcome",
    "keep_outcome",
    "late_answer",
    "read_outcome",
    "reattach_finished",
    "submit_run",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a kept run ended: its status, and its result or its error's type and message."""

    status: RunStatus
    result: Any = None
    error: tuple[str, str] | None = None


def read_outcome(stored: Checkpoint, serde: Serializer) -> Outcome | None:
    """The outcome of a finished run (`None` for one that is not finished)."""
    if stored.status not in FINISHED:
        return None
    state: Any = serde.loads(stored.state) if stored.state else {}
    if not isinstance(state, dict) or "outcome" not in state:
        # Cancelled by the saver while queued: it never ran, so it has no outcome blob.
        return Outcome(
            stored.status, None, ("RunCancelled", f"run {stored.run_id!r} was cancelled")
        )
    error = state.get("error")
    return Outcome(stored.status, state.get("result"), None if error is None else tuple(error))


def late_answer(run_id: str, journal: Journal, command: Command) -> AlreadyAnsweredError | None:
    """The error for a `Command` that answers interrupts of a run no longer paused on
    them (answered by someone else, or by a deadline), or `None` if it repeats exactly
    the answers recorded (a retried resume: nothing to refuse)."""
    if command.answers is not None:
        given = dict(command.answers)
    else:
        answered = [*journal.answers, *journal.timeouts]
        if not answered:
            return None
        given = {answered[-1]: command.resume}
    problems = []
    for site, value in given.items():
        if site in journal.timeouts:
            problems.append(f"interrupt {site!r} timed out (its deadline passed unanswered)")
        elif site not in journal.answers:
            return None  # not an interrupt this run answered: the caller says what is wrong
        elif journal.answers[site] != value:
            problems.append(
                f"interrupt {site!r} was answered already, with {_short(journal.answers[site])}"
                " (by another caller, or by its deadline's default)"
            )
    if not problems:
        return None
    return AlreadyAnsweredError(run_id, "; ".join(problems) + "; this answer lost")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reattach_finished(run: Run, stored: Checkpoint, given: Any, no_input: Any) -> Any:
    """A call on a kept, finished run: check its input, then return its result, or
    raise `RunFailedError` / `RunCancelled` as it ended. Nothing runs.

    A `Command` (a resume) that repeats the recorded answers gets the outcome too (a
    retried resume); one that answers otherwise gets `AlreadyAnsweredError` saying what won.
    """
    journal = decode_journal(stored, run.serde)
    if isinstance(given, Command):
        conflict = late_answer(run.run_id, journal, given)
        if conflict is not None:
            raise conflict
    elif given is not no_input and given != journal.input:
        raise InputMismatchError(run.run_id, journal.input, given)
    outcome = read_outcome(stored, run.serde)
    assert outcome is not None
    if outcome.status == "done":
        return outcome.result
    type_name, message = outcome.error or ("Exception", "")
    if outcome.status == "cancelled":
        raise RunCancelled(run.run_id, f"run {run.run_id!r} was cancelled earlier: {message}")
    raise RunFailedError(run.run_id, type_name, message)


async def keep_outcome(run: Run, failure: BaseException | None, result: Any) -> None:
    """The run's last write, storing its outcome (after `settle`)."""
    from ._cancel import is_cancel

    status: RunStatus
    if failure is None:
        status, blob = "done", {"outcome": "done", "result": result}
    else:
        status = "cancelled" if is_cancel(failure) else "failed"
        shown = failure
        if isinstance(failure, BaseExceptionGroup) and status == "cancelled":
            shown = failure.subgroup(RunCancelled).exceptions[0]  # type: ignore[union-attr]
        blob = {"outcome": status, "error": [type(shown).__name__, str(shown)]}
    try:
        run.set_state(encode_entry(run.serde, blob))
    except SerializationError as error:
        # The result cannot be stored: the run is kept as failed, saying why.
        message = f"its result could not be stored: {error}"
        run.set_state(
            encode_entry(
                run.serde,
                {"outcome": "failed", "error": ["SerializationError", message]},
            )
        )
        await run.final_write("failed")
        raise SerializationError(
            f"run {run.run_id!r} finished, but its result cannot be kept: {error}. It is "
            "stored as failed; return a serialisable value (see tiny_tasks.serde), or run "
            "it with keep=False",
            run_id=run.run_id,
        ) from error
    await run.final_write(status)


async def submit_run(
    saver: Checkpointer,
    run_id: str | None,
    task_name: str,
    value: Any,
    keep: bool,
    serde: Serializer,
) -> str:
    """Store a queued run (its input, no lease) unless one with this id is stored;
    return its run id. An existing run with the same input is the same submission."""
    from ._run import resolve

    run_id = run_id or uuid.uuid4().hex
    entry: dict[str, Any] = {"k": "input", "v": value, "at": current_clock().now()}
    principal = current_acting().principal
    if principal is not None:  # who submitted it (see `_acting`)
        entry["by"] = principal
    encoded = encode_entry(serde, entry)
    state = encode_entry(serde, {"pending": [], "keep": keep})
    write = CheckpointWrite(run_id, task_name, "queued", 0, (), state, (encoded,))
    try:
        await resolve(saver.save(write, None))
        return run_id
    except RunConflictError:
        stored: Checkpoint | None = await resolve(saver.load(run_id))
        if stored is None:  # deleted just now: submit again
            await resolve(saver.save(write, None))
            return run_id
    if stored.task_name != task_name:
        raise TaskMismatchError(run_id, stored.task_name, task_name)
    journal = decode_journal(stored, serde)
    if journal.input != value:
        raise InputMismatchError(run_id, journal.input, value)
    return run_id


def stored_keep(stored: Checkpoint, serde: Serializer) -> bool | None:
    """The `keep` a queued run was submitted with (`None` if it says nothing)."""
    if stored.status != "queued" or not stored.state:
        return None
    state = serde.loads(stored.state)
    keep = state.get("keep") if isinstance(state, dict) else None
    return keep if isinstance(keep, bool) else None
