"""The public surface: what `tiny_tasks` exports, and that each name is documented."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

import tiny_tasks
import tiny_tasks.errors
import tiny_tasks.savers
from tiny_tasks import MemorySaver, TinyTasksError, task

# Names that API.md and the README promise, importable from the top-level package.
REQUIRED = {
    "AmbiguousResumeError",
    "CheckReport",
    "Checkpointer",
    "Command",
    "Event",
    "InputMismatchError",
    "Interrupt",
    "MemorySaver",
    "NoCheckpointError",
    "ReplayMismatchError",
    "RetryPolicy",
    "RunCheck",
    "SerializationError",
    "Snapshot",
    "StorageError",
    "Task",
    "TaskContext",
    "TaskInterrupted",
    "TaskStream",
    "TinyTasksError",
    "UnknownInterruptError",
    "cancel_run",
    "check_runs",
    "create_runtime",
    "deprecate_patch",
    "emit",
    "interrupt",
    "patched",
    "prune",
    "send",
    "sleep",
    "sleep_until",
    "step",
    "task",
}


def test_all_is_sorted_and_unique() -> None:
    assert tiny_tasks.__all__ == sorted(set(tiny_tasks.__all__))


def test_all_holds_the_required_names() -> None:
    assert set(tiny_tasks.__all__) >= REQUIRED


@pytest.mark.parametrize("name", tiny_tasks.__all__)
def test_every_exported_name_is_importable_and_documented(name: str) -> None:
    module = importlib.import_module("tiny_tasks")
    value = getattr(module, name)
    doc = inspect.getdoc(value)
    assert doc, f"tiny_tasks.{name} has no docstring"
    assert doc.strip().splitlines()[0], f"tiny_tasks.{name}'s docstring starts with a blank line"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from tiny_tasks import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(tiny_tasks.__all__)


@pytest.mark.parametrize("name", tiny_tasks.errors.__all__)
def test_every_error_derives_from_the_one_base(name: str) -> None:
    error = getattr(tiny_tasks.errors, name)
    assert issubclass(error, TinyTasksError)
    assert inspect.getdoc(error)
    assert getattr(tiny_tasks, name) is error


@pytest.mark.parametrize(
    "method", ["invoke", "resume", "invoke_sync", "resume_sync", "stream_sync"]
)
def test_task_methods_are_documented(method: str) -> None:
    assert inspect.getdoc(getattr(tiny_tasks.Task, method))


def test_the_package_is_typed() -> None:
    assert (Path(tiny_tasks.__file__).parent / "py.typed").is_file()


def test_memory_saver_is_a_checkpointer() -> None:
    saver = MemorySaver()
    assert isinstance(saver, tiny_tasks.Checkpointer)
    assert tiny_tasks.savers.Checkpointer is tiny_tasks.Checkpointer
    assert tiny_tasks.savers.MemorySaver is MemorySaver
    assert repr(saver) == "MemorySaver(runs=0)"


def test_pausing_is_not_an_exception() -> None:
    from tiny_tasks._context import PauseRun

    assert issubclass(PauseRun, BaseException)
    assert not issubclass(PauseRun, Exception)


async def test_task_stream_repr_shows_its_state() -> None:
    @task("workflow")
    async def workflow(_: Any):
        yield 1

    stream = workflow(run_id="demo")
    assert repr(stream) == "<TaskStream 'workflow' run_id='demo' new>"
    [event async for event in stream]
    assert repr(stream) == "<TaskStream 'workflow' run_id='demo' closed>"


def test_the_task_keeps_the_functions_docstring() -> None:
    @task
    async def documented(_: Any):
        """Say hello."""
        yield "hello"

    assert documented.__doc__ == "Say hello."
    assert documented.__wrapped__.__name__ == "documented"  # type: ignore[attr-defined]
