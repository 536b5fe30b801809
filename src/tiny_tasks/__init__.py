"""tiny-tasks: composable, interrupt-friendly, durable workflows for asyncio.

A task is an ordinary (async) generator or coroutine function that streams partial
results, pauses anywhere with `interrupt(value)`, records its progress per run id through
a checkpointer, and resumes later, in this process or another.
"""

from ._cancel import cancel_run, prune
from ._check import CheckReport, RunCheck, check_runs
from ._clock import Clock, SystemClock, use_clock
from ._context import TaskContext, deprecate_patch, emit, interrupt, patched
from ._inspect import RunState, delete_run, get_run, list_runs
from ._runtime import Runtime, create_runtime
from ._step import RetryPolicy, step
from ._stream import TaskStream
from ._sync import SyncTaskStream
from ._task import Task, task
from ._telemetry import tracing
from ._values import Command, Event, Interrupt, Snapshot
from ._waits import send, sleep, sleep_until
from ._worker import Worker
from .errors import (
    AccessDeniedError,
    AlreadyAnsweredError,
    AmbiguousResumeError,
    AuthenticationError,
    CheckpointerTypeError,
    CsrfTokenError,
    InputMismatchError,
    InterruptAnsweredError,
    InterruptTimeoutError,
    InvalidRequestError,
    InvalidRunIdError,
    MalformedRequestError,
    NoCheckpointError,
    RemoteError,
    ReplayMismatchError,
    RequestTooLargeError,
    RunBusyError,
    RunCancelled,
    RunClosedError,
    RunConflictError,
    RunFailedError,
    SaverConnectionError,
    SerializationError,
    StepFailedError,
    StorageError,
    SwallowedInterruptError,
    TaskDefinitionError,
    TaskInterrupted,
    TaskMismatchError,
    TaskSleeping,
    TinyTasksError,
    UnknownInterruptError,
    UnknownRunError,
    UnknownTaskError,
    UnknownTypeError,
    VersionMismatchError,
)
from .savers import Checkpointer, MemorySaver

__all__ = [
    "AccessDeniedError",
    "AlreadyAnsweredError",
    "AmbiguousResumeError",
    "AuthenticationError",
    "CheckReport",
    "Checkpointer",
    "CheckpointerTypeError",
    "Clock",
    "Command",
    "CsrfTokenError",
    "Event",
    "InputMismatchError",
    "Interrupt",
    "InterruptAnsweredError",
    "InterruptTimeoutError",
    "InvalidRequestError",
    "InvalidRunIdError",
    "MalformedRequestError",
    "MemorySaver",
    "NoCheckpointError",
    "RemoteError",
    "ReplayMismatchError",
    "RequestTooLargeError",
    "RetryPolicy",
    "RunBusyError",
    "RunCancelled",
    "RunCheck",
    "RunClosedError",
    "RunConflictError",
    "RunFailedError",
    "RunState",
    "Runtime",
    "SaverConnectionError",
    "SerializationError",
    "Snapshot",
    "StepFailedError",
    "StorageError",
    "SwallowedInterruptError",
    "SyncTaskStream",
    "SystemClock",
    "Task",
    "TaskContext",
    "TaskDefinitionError",
    "TaskInterrupted",
    "TaskMismatchError",
    "TaskSleeping",
    "TaskStream",
    "TinyTasksError",
    "UnknownInterruptError",
    "UnknownRunError",
    "UnknownTaskError",
    "UnknownTypeError",
    "VersionMismatchError",
    "Worker",
    "cancel_run",
    "check_runs",
    "create_runtime",
    "delete_run",
    "deprecate_patch",
    "emit",
    "get_run",
    "interrupt",
    "list_runs",
    "patched",
    "prune",
    "send",
    "sleep",
    "sleep_until",
    "step",
    "task",
    "tracing",
    "use_clock",
]
