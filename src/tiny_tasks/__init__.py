"""tiny-tasks: composable, interrupt-friendly, durable workflows for asyncio.

A task is an ordinary (async) generator or coroutine function that streams partial
results, pauses anywhere with `interrupt(value)`, records its progress per run id through
a checkpointer, and resumes later, in this process or another.
"""

from ._check import CheckReport, RunCheck, check_runs
from ._context import TaskContext, deprecate_patch, emit, interrupt, patched
from ._inspect import RunState, delete_run, get_run, list_runs
from ._runtime import Runtime, create_runtime
from ._step import RetryPolicy, step
from ._stream import TaskStream
from ._sync import SyncTaskStream
from ._task import Task, task
from ._values import Command, Event, Interrupt, Snapshot
from .errors import (
    AmbiguousResumeError,
    CheckpointerTypeError,
    InputMismatchError,
    InvalidRunIdError,
    NoCheckpointError,
    ReplayMismatchError,
    RunClosedError,
    RunConflictError,
    SaverConnectionError,
    SerializationError,
    StepFailedError,
    StorageError,
    SwallowedInterruptError,
    TaskDefinitionError,
    TaskInterrupted,
    TaskMismatchError,
    TinyTasksError,
    UnknownInterruptError,
    UnknownTypeError,
)
from .savers import Checkpointer, MemorySaver

__all__ = [
    "AmbiguousResumeError",
    "CheckReport",
    "Checkpointer",
    "CheckpointerTypeError",
    "Command",
    "Event",
    "InputMismatchError",
    "Interrupt",
    "InvalidRunIdError",
    "MemorySaver",
    "NoCheckpointError",
    "ReplayMismatchError",
    "RetryPolicy",
    "RunCheck",
    "RunClosedError",
    "RunConflictError",
    "RunState",
    "Runtime",
    "SaverConnectionError",
    "SerializationError",
    "Snapshot",
    "StepFailedError",
    "StorageError",
    "SwallowedInterruptError",
    "SyncTaskStream",
    "Task",
    "TaskContext",
    "TaskDefinitionError",
    "TaskInterrupted",
    "TaskMismatchError",
    "TaskStream",
    "TinyTasksError",
    "UnknownInterruptError",
    "UnknownTypeError",
    "check_runs",
    "create_runtime",
    "delete_run",
    "deprecate_patch",
    "emit",
    "get_run",
    "interrupt",
    "list_runs",
    "patched",
    "step",
    "task",
]
