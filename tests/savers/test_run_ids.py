"""Run ids and checkpointers are checked where they are given, by the same rules on every
saver: a bad run id is a `ValueError` (`InvalidRunIdError`) before anything is stored, a
saver whose runs outlive the process needs an explicit run id, and something that is not
a checkpointer is a `TypeError` (`CheckpointerTypeError`) that says what to pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dict_saver import DictSaver

from tiny_tasks import (
    CheckpointerTypeError,
    Command,
    Interrupt,
    InvalidRunIdError,
    MemorySaver,
    TaskContext,
    delete_run,
    get_run,
    interrupt,
    list_runs,
    task,
)
from tiny_tasks.savers import SqliteSaver
from tiny_tasks.savers.base import MAX_RUN_ID_LENGTH


@task("asker")
async def asker(value: int, ctx: TaskContext) -> str:
    doubled = await ctx.step(lambda v: v * 2, value)
    ctx.emit(doubled)
    return f"{doubled}: {interrupt('ok?')}"


async def _resolve(value: Any) -> Any:
    return await value if hasattr(value, "__await__") else value


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


def _calls(run_id: Any, saver: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Every way of giving a run id; each returns an awaitable to await (or nothing)."""
    opts: dict[str, Any] = {"run_id": run_id, "checkpointer": saver}

    async def nothing() -> None:
        return None

    def sync(call: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            call()
            return nothing()

        return run

    return [
        ("call", lambda: _drain(asker(1, **opts))),
        ("command", lambda: _drain(asker(Command(resume="x"), **opts))),
        ("invoke", lambda: asker.invoke(1, **opts)),
        ("resume", lambda: _drain(asker.resume("x", **opts))),
        ("invoke_sync", sync(lambda: asker.invoke_sync(1, **opts))),
        ("resume_sync", sync(lambda: asker.resume_sync("x", **opts))),
        ("stream_sync", sync(lambda: asker.stream_sync(1, **opts))),
        ("get_run", lambda: get_run(saver, run_id)),
        ("delete_run", lambda: delete_run(saver, run_id)),
    ]


BAD_RUN_IDS = [
    (123, "of type int"),
    (12.5, "of type float"),
    (b"bytes", "of type bytes"),
    (("a",), "of type tuple"),
    ("", "empty"),
    ("a\0b", "NUL"),
    ("\ud800", "lone surrogate"),
    ("x" * (MAX_RUN_ID_LENGTH + 1), f"{MAX_RUN_ID_LENGTH + 1} characters"),
]


@pytest.mark.parametrize(("run_id", "problem"), BAD_RUN_IDS, ids=lambda v: repr(v)[:12])
async def test_a_bad_run_id_is_refused_where_it_is_given_on_every_saver(
    saver: Any, run_id: Any, problem: str
) -> None:
    for name, call in _calls(run_id, saver):
        with pytest.raises(InvalidRunIdError) as caught:
            await call()
        message = str(caught.value)
        assert isinstance(caught.value, ValueError), name
        assert problem in message, (name, message)
        assert "non-empty str of at most 255 characters, without NUL" in message, name
    assert await _resolve(saver.list_runs()) == []


LIMIT_RUN_IDS = [
    "😀" * MAX_RUN_ID_LENGTH,  # the longest, 4 bytes a character in UTF-8
    "line\nbreak\ttab and space",
    "ünïcödé/with#separators",
    "1",
]


@pytest.mark.parametrize("run_id", LIMIT_RUN_IDS, ids=lambda v: repr(v)[:12])
async def test_every_valid_run_id_pauses_and_resumes_on_every_saver(
    saver: Any, run_id: str
) -> None:
    opts: dict[str, Any] = {"run_id": run_id, "checkpointer": saver}
    stream = asker(4, **opts)
    await _drain(stream)
    assert stream.interrupts == [Interrupt("ok?", "asker/interrupt#1")]
    stored = await get_run(saver, run_id)
    assert stored is not None
    assert (stored.run_id, stored.status) == (run_id, "paused")
    assert [info.run_id for info in await _resolve(saver.list_runs())] == [run_id]
    assert await asker.invoke(Command(resume="yes"), **opts) == "8: yes"
    assert await delete_run(saver, run_id) is False


async def test_a_number_and_its_text_are_never_one_run(saver: Any) -> None:
    with pytest.raises(InvalidRunIdError):
        await asker.invoke(1, run_id=123, checkpointer=saver)  # type: ignore[arg-type]
    await _drain(asker(1, run_id="123", checkpointer=saver))
    assert [info.run_id for info in await _resolve(saver.list_runs())] == ["123"]


async def test_a_durable_saver_requires_a_run_id(saver: Any) -> None:
    if isinstance(saver, MemorySaver):
        await _drain(asker(1, checkpointer=saver))
        stored = await get_run(saver, "default")
        assert stored is not None
        assert stored.status == "paused"
        return
    for name, call in _calls(None, saver)[:7]:
        with pytest.raises(InvalidRunIdError) as caught:
            await call()
        message = str(caught.value)
        assert "without run_id" in message, name
        assert "share the run 'default'" in message, name
        assert "Pass run_id=" in message, name
    assert await _resolve(saver.list_runs()) == []


async def test_a_saver_that_allows_the_default_run_id_says_so() -> None:
    class ScratchSaver(DictSaver):
        allows_default_run_id = True

    saver = ScratchSaver()
    await _drain(asker(3, checkpointer=saver))
    assert list(saver.runs) == ["default"]
    assert await asker.invoke(Command(resume="fine"), checkpointer=saver) == "6: fine"
    with pytest.raises(InvalidRunIdError, match="without run_id"):
        await asker.invoke(3, checkpointer=DictSaver())


async def test_a_nested_call_needs_no_run_id_its_options_are_not_used(saver: Any) -> None:
    @task("outer")
    async def outer(value: int) -> str:
        # Part of the enclosing run: the options a nested call is given are ignored.
        return await asker.invoke(value, checkpointer=saver)

    opts: dict[str, Any] = {"run_id": "outer-run", "checkpointer": saver}
    await _drain(outer(5, **opts))
    assert await outer.invoke(Command(resume="ok"), **opts) == "10: ok"


NOT_CHECKPOINTERS = [
    ("runs.sqlite", "pass SqliteSaver('runs.sqlite')"),
    (42, "int, which has no load, save, delete method"),
    (object(), "object, which has no load, save, delete method"),
    ({"load": 1}, "dict, which has no load, save, delete method"),
    (SqliteSaver, "a class, not an instance; pass SqliteSaver(...)"),
]


@pytest.mark.parametrize(("value", "problem"), NOT_CHECKPOINTERS, ids=lambda v: repr(v)[:12])
async def test_something_that_is_not_a_checkpointer_says_what_to_pass(
    value: Any, problem: str
) -> None:
    for name, call in [*_calls("r", value), ("list_runs", lambda: list_runs(value))]:
        with pytest.raises(CheckpointerTypeError) as caught:
            await call()
        assert isinstance(caught.value, TypeError), name
        message = str(caught.value)
        assert problem in message, (name, message)
        assert "MemorySaver(), SqliteSaver(path) or PostgresSaver(conninfo)" in message
