"""Every exception tiny-tasks raises, under one base class.

Each message names the run, the site or task involved, and what to do next.
Pausing is not an error: `TaskInterrupted` is raised by `invoke` only, to tell the
caller the run is waiting for an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._values import Interrupt

__all__ = [
    "AccessDeniedError",
    "AlreadyAnsweredError",
    "AmbiguousResumeError",
    "AuthenticationError",
    "CsrfTokenError",
    "InterruptAnsweredError",
    "InvalidRequestError",
    "MalformedRequestError",
    "RemoteError",
    "RequestTooLargeError",
    "UnknownRunError",
    "UnknownTaskError",
    "VersionMismatchError",
    "CheckpointerTypeError",
    "InputMismatchError",
    "InvalidRunIdError",
    "NoCheckpointError",
    "ReplayMismatchError",
    "RunClosedError",
    "RunConflictError",
    "SaverConnectionError",
    "SerializationError",
    "StepFailedError",
    "StorageError",
    "SwallowedInterruptError",
    "TaskDefinitionError",
    "InterruptTimeoutError",
    "RunBusyError",
    "RunCancelled",
    "RunFailedError",
    "TaskInterrupted",
    "TaskSleeping",
    "TaskMismatchError",
    "TinyTasksError",
    "UnknownInterruptError",
    "UnknownTypeError",
]


class TinyTasksError(Exception):
    """Base class of every error tiny-tasks raises."""


class TaskDefinitionError(TinyTasksError, TypeError):
    """A function given to `task` (or `step`) is not of a supported kind."""


class InvalidRunIdError(TinyTasksError, ValueError):
    """A `run_id` that is not a valid run id, or none where one is required.

    A run id is a non-empty `str` of at most 255 characters, without NUL, that can be
    encoded as UTF-8 (no lone surrogates); the same rules hold on every saver.
    """


class CheckpointerTypeError(TinyTasksError, TypeError):
    """Something that is not a checkpointer was passed as `checkpointer`."""


class SaverConnectionError(TinyTasksError, ConnectionError):
    """A saver could not open its connection to the database (the message says why).

    `target` names the database without its password; the driver's error is the
    `__cause__`.
    """

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        super().__init__(
            f"cannot connect to the checkpoint database {target}: {reason}. Check the "
            "connection string (host or socket directory, port, database name, user, "
            "password) and that the server is running"
        )


class NoCheckpointError(TinyTasksError, LookupError):
    """`resume` was asked for a run that has nothing to resume."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        self.run_id = run_id
        detail = reason or (
            f"no checkpoint is stored for run {run_id!r}: it never paused, it already "
            "finished, or a different checkpointer was passed"
        )
        super().__init__(f"cannot resume run {run_id!r}: {detail}")


class InputMismatchError(TinyTasksError, ValueError):
    """A task was called with a run id whose stored run has a different input."""

    def __init__(self, run_id: str, stored: Any, given: Any) -> None:
        self.run_id = run_id
        self.stored = stored
        self.given = given
        super().__init__(
            f"run {run_id!r} already exists with input {_short(stored)}, but was called "
            f"with {_short(given)}; call it without an input (or with the same one) to "
            "continue it, use another run_id to start a new run, or delete the run first"
        )


class RunConflictError(TinyTasksError):
    """Another worker wrote the run since this one read it (compare-and-swap failed)."""

    def __init__(self, run_id: str, detail: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} was changed by another worker: "
            + (detail or "its stored version is not the one this worker read")
            + "; only one worker may drive a run at a time, so this one stopped. "
            "Load the run again to see its current state."
        )


class AlreadyAnsweredError(RunConflictError):
    """An answer to an interrupt that is no longer pending: someone else answered it
    first, or its deadline passed (and its default, or a timeout, answered it). The
    message says what won. Answering again the same way is not an error (a retried
    resume of a kept run returns its outcome)."""

    def __init__(self, run_id: str, detail: str) -> None:
        super().__init__(run_id, detail)


class RunClosedError(TinyTasksError):
    """Work of a run went on after the run stopped (paused, finished, failed or closed).

    A run stops everything it started before it writes its last state, so this reaches
    only code left running in an asyncio task that nobody awaited (or one that ignored
    its cancellation). Nothing it tried was stored.
    """

    def __init__(self, run_id: str, what: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} has already stopped (it paused, finished, failed or was "
            f"closed), so {what} was refused and nothing was stored. It came from an "
            "asyncio task still running after the run stopped: await every task you "
            "start inside a task (asyncio.gather, a TaskGroup) and let cancellation through"
        )


class SwallowedInterruptError(TinyTasksError):
    """A run went on while one of its interrupts was pending: its pause was swallowed.

    `interrupt()` pauses by raising a `BaseException`; a bare `except:` or an
    `except BaseException:` that does not re-raise it lets the task carry on as if the
    question had been answered. Raised when the run completes, or reaches its next
    step, task call or interrupt, with such an interrupt pending. The stored run is
    left as it was.
    """

    def __init__(self, run_id: str, site_ids: Sequence[str]) -> None:
        self.run_id = run_id
        self.site_ids = list(site_ids)
        sites = ", ".join(repr(s) for s in self.site_ids)
        super().__init__(
            f"run {run_id!r} went on while interrupt {sites} was pending: a bare `except:` "
            "or `except BaseException:` around interrupt() (or around a task call that "
            "pauses) swallowed the pause, or the interrupt was raised in an asyncio task "
            "that nobody awaited. Re-raise it in that handler (`raise`), or catch "
            "`Exception` instead. The stored run was left as it was: call the task again "
            "once the code is fixed to continue it"
        )


class ReplayMismatchError(TinyTasksError):
    """Replay does not line up with the run's journal (the code changed, or is not
    deterministic): it reached another effect where one is recorded, or left a recorded
    one behind (a task that ended, or a run that paused, before reaching it)."""

    def __init__(self, run_id: str, site_id: str, recorded: str, found: str) -> None:
        self.run_id = run_id
        self.site_id = site_id
        self.recorded = recorded
        self.found = found
        super().__init__(
            f"replay of run {run_id!r} does not match its journal at site {site_id!r}: "
            f"recorded {recorded}, found {found}. The task's code changed between the "
            "pause and the resume (or it is not deterministic); restore the old code to "
            "finish this run, or delete the run and start it again. A paused run stays "
            "paused on the same interrupts, and answers given with this resume do not count."
        )


class TaskMismatchError(TinyTasksError, ValueError):
    """A task was called or resumed with the run id of a stored run of another task."""

    def __init__(self, run_id: str, stored_task: str, given_task: str) -> None:
        self.run_id = run_id
        self.stored_task = stored_task
        self.given_task = given_task
        super().__init__(
            f"run {run_id!r} belongs to task {stored_task!r}, not to task {given_task!r}; "
            f"call or resume {stored_task!r} to continue it, give {given_task!r} another "
            "run_id, or delete the run first. The stored run was not changed."
        )


class SerializationError(TinyTasksError, TypeError):
    """A value that must be stored cannot be serialised (or a stored one decoded)."""

    def __init__(self, message: str, *, run_id: str | None = None, site: str | None = None):
        self.run_id = run_id
        self.site = site
        where = ""
        if run_id is not None:
            where = f" in run {run_id!r}" + (f" at {site}" if site else "")
        super().__init__(message + where)


class UnknownTypeError(SerializationError):
    """A stored value names a type this process cannot find; the store is not damaged.

    `type_name` is the name it was stored under (``"module:qualname"`` or a registered
    name) and `module` the module to import (`None` for a registered name): import the
    code that defines the type, or register it on the serializer, before loading.
    """

    def __init__(
        self, message: str, *, type_name: str, module: str | None, run_id: str | None = None
    ) -> None:
        self.type_name = type_name
        self.module = module
        super().__init__(message, run_id=run_id)


class UnknownInterruptError(TinyTasksError, LookupError):
    """An answer names an interrupt id that the run is not waiting on."""

    def __init__(self, run_id: str, unknown: Sequence[str], pending: Sequence[str]) -> None:
        self.run_id = run_id
        self.unknown = list(unknown)
        self.pending = list(pending)
        waiting = ", ".join(repr(p) for p in pending) or "nothing"
        super().__init__(
            f"run {run_id!r} is not waiting on interrupt(s) "
            f"{', '.join(repr(u) for u in unknown)}; it is waiting on {waiting}"
        )


class AmbiguousResumeError(TinyTasksError, ValueError):
    """`resume(value)` was used while several interrupts are pending."""

    def __init__(self, run_id: str, pending: Sequence[str]) -> None:
        self.run_id = run_id
        self.pending = list(pending)
        super().__init__(
            f"run {run_id!r} is waiting on {len(self.pending)} interrupts "
            f"({', '.join(repr(p) for p in self.pending)}); resume(value) answers only one. "
            "Answer them by id with Command(answers={interrupt_id: value, ...})"
        )


class StepFailedError(TinyTasksError):
    """A recorded step failed with an exception that cannot be rebuilt as its own type."""

    def __init__(self, site_id: str, type_name: str, message: str) -> None:
        self.site_id = site_id
        self.type_name = type_name
        super().__init__(f"step {site_id!r} failed with {type_name}: {message}")


class StorageError(TinyTasksError):
    """The checkpointer failed (after its own retries); the stored run was left as it was.

    A storage failure is never the task's failure: the engine stops the run without
    deleting or rewriting what is stored, and the run continues when the task is called
    again with the same run id once storage is back. `error` is the saver's exception
    (also the `__cause__`), `operation` the checkpointer method that raised it.
    """

    def __init__(self, run_id: str, operation: str, error: BaseException) -> None:
        self.run_id = run_id
        self.operation = operation
        self.error = error
        super().__init__(
            f"storage failed for run {run_id!r}: the checkpointer's {operation}() raised "
            f"{type(error).__module__}.{type(error).__qualname__}: {error}. The run was "
            "stopped and its stored state was neither deleted nor rewritten; once storage "
            f"is back, call the task again with run_id={run_id!r} to continue it (recorded "
            "steps are not run again, answers are kept, a paused run reports its "
            "interrupts again)"
        )


class TaskInterrupted(TinyTasksError):
    """Raised by `invoke` when the run paused on one or more interrupts.

    The run's checkpoint is saved; answer with `resume(value)` or
    `Command(resume=value)` to continue it.
    """

    def __init__(self, run_id: str, interrupts: Sequence[Interrupt]) -> None:
        self.run_id = run_id
        self.interrupts: list[Interrupt] = list(interrupts)
        ids = ", ".join(repr(i.id) for i in self.interrupts)
        super().__init__(
            f"run {run_id!r} paused on interrupt {ids} with value {_short(self.value)}; "
            "resume it with task.resume(value, run_id=...) or Command(resume=value)"
        )

    @property
    def value(self) -> Any:
        """The first interrupt's value."""
        return self.interrupts[0].value if self.interrupts else None


class RunBusyError(TinyTasksError):
    """Another driver holds a live lease on the run: re-attaching or resuming it now
    would run its current step a second time. Nothing was replayed or written."""

    def __init__(self, run_id: str, owner: str, expires: float, now: float) -> None:
        self.run_id = run_id
        self.owner = owner
        self.expires = expires
        super().__init__(
            f"run {run_id!r} is being driven by {owner!r} (its lease runs for another "
            f"{max(0.0, expires - now):.1f} s and is renewed while it runs). Wait for it to "
            "finish or pause (watch it with get_run), or cancel it with cancel_run; if its "
            "process died, the run can be taken over once the lease has expired"
        )


class RunCancelled(TinyTasksError):
    """The run was cancelled (`cancel_run`).

    Raised inside the task at its next effect, so that its `finally` blocks and
    `except RunCancelled:` compensation code run (steps called while unwinding are
    still recorded); raised to whoever calls or re-attaches a cancelled run.
    """

    def __init__(self, run_id: str, detail: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(detail or f"run {run_id!r} was cancelled")


class RunFailedError(TinyTasksError):
    """A kept run failed earlier: its outcome is this error's type and message (the
    exception itself is not stored). Raised when the run is called or awaited again."""

    def __init__(self, run_id: str, type_name: str, message: str) -> None:
        self.run_id = run_id
        self.type_name = type_name
        self.error_message = message
        super().__init__(f"run {run_id!r} failed earlier with {type_name}: {message}")


class TaskSleeping(TinyTasksError):
    """Raised by `invoke` when the run went to sleep (`ctx.sleep`) or waits for a message
    (`ctx.recv`) and is stored as `sleeping`: a `Worker` continues it when it is due."""

    def __init__(self, run_id: str, wake_at: float | None, waits: Sequence[str] = ()) -> None:
        self.run_id = run_id
        self.wake_at = wake_at
        self.waits = tuple(waits)
        when = "until a message arrives" if wake_at is None else f"until {wake_at:.3f}"
        super().__init__(
            f"run {run_id!r} is sleeping {when}; a Worker on the same store continues it "
            "when it is due (or call the task again with its run_id then)"
        )


class InterruptTimeoutError(TinyTasksError):
    """An interrupt's deadline passed without an answer and it has no `default`.

    Raised inside the task at the `interrupt(...)` call (catch it there to go another
    way), and to a caller that tries to answer the interrupt after its deadline.
    """

    def __init__(self, run_id: str, site_id: str, deadline: float) -> None:
        self.run_id = run_id
        self.site_id = site_id
        self.deadline = deadline
        super().__init__(
            f"interrupt {site_id!r} of run {run_id!r} was not answered before its deadline "
            f"({deadline:.3f}, seconds since the epoch)"
        )


# --- the HTTP layer (tiny_tasks.http) -------------------------------------------------


class UnknownTaskError(TinyTasksError, LookupError):
    """A request named a task the `TaskApp` does not serve (HTTP 404)."""

    def __init__(self, task_name: str, known: Sequence[str]) -> None:
        self.task_name = task_name
        self.known = list(known)
        names = ", ".join(repr(name) for name in self.known) or "none"
        super().__init__(
            f"no task {task_name!r} is served here (served: {names}); pass one of them as "
            "'task', or add the task to TaskApp(tasks=[...])"
        )


class UnknownRunError(TinyTasksError, LookupError):
    """A request named a run that is not stored (HTTP 404)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"no run {run_id!r} is stored (it was never started, was deleted, or finished "
            "without keeping its outcome); GET /runs lists the stored runs"
        )


class MalformedRequestError(TinyTasksError, ValueError):
    """A request body that is not JSON, or not the JSON object the endpoint takes (HTTP 400)."""


class InvalidRequestError(TinyTasksError, ValueError):
    """A request whose fields have the wrong types or values, or whose input does not fit
    the task's declared input type (HTTP 422). The message names the field."""


class RequestTooLargeError(TinyTasksError, ValueError):
    """A request body larger than the `TaskApp`'s `max_body_bytes` (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the request body is larger than {limit} bytes; send a smaller input, or "
            "raise TaskApp(max_body_bytes=...)"
        )


class InterruptAnsweredError(TinyTasksError):
    """An answer arrived for an interrupt that another request answered first (HTTP 409).

    `answered` maps each interrupt id that was already answered to `(value, principal)`:
    what won and who sent it (`None` when nobody was recorded).
    """

    def __init__(self, run_id: str, answered: dict[str, tuple[Any, Any]]) -> None:
        self.run_id = run_id
        self.answered = dict(answered)
        won = "; ".join(
            f"{site!r} with {_short(value)} by {who!r}" for site, (value, who) in answered.items()
        )
        super().__init__(
            f"run {run_id!r} was answered by another request first: "
            f"{won or 'it is no longer paused'}. Read the run again (GET /runs/{run_id}) to "
            "see where it is now"
        )


class VersionMismatchError(TinyTasksError):
    """`If-Match` named another version than the stored run's (HTTP 412)."""

    def __init__(self, run_id: str, expected: str, stored: int) -> None:
        self.run_id = run_id
        self.expected = expected
        self.stored = stored
        super().__init__(
            f"run {run_id!r} is at version {stored}, not {expected}: it changed since you "
            "read it. Read it again (GET /runs/{id}) and answer what it waits on now"
        )


class AuthenticationError(TinyTasksError):
    """The `TaskApp`'s `auth` hook refused the request (HTTP 401); the message is the
    hook's. Raise `AccessDeniedError` from the hook for a 403 instead."""


class AccessDeniedError(TinyTasksError, PermissionError):
    """Raised by an `auth` hook (or returned as HTTP 403): the caller is known but may not
    do this."""


class CsrfTokenError(AccessDeniedError):
    """A form posted to the inbox (`/ui`) without this browser's CSRF token (HTTP 403):
    it expired, or the form came from another site."""

    def __init__(self) -> None:
        super().__init__(
            "this form's security token does not match this browser's (it expired, or the "
            "form came from another site): reload the page and send the form again"
        )


class RemoteError(TinyTasksError):
    """An error response from a `TaskApp`, seen by `tiny_tasks.http.Client`.

    `status` is the HTTP status, `type` the server's stable error type (the name of the
    exception class there, such as `"InputMismatchError"`), `body` the whole JSON body.
    """

    def __init__(self, status: int, type: str, message: str, body: dict[str, Any]) -> None:
        self.status = status
        self.type = type
        self.body = body
        super().__init__(f"{type} (HTTP {status}): {message}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
