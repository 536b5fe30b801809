"""Run inspection: get_run, list_runs, delete_run (the CLI on top: test_cli.py)."""

from __future__ import annotations

import pytest
from approval_task import approval, pause

from tiny_tasks import (
    Interrupt,
    MemorySaver,
    UnknownTypeError,
    delete_run,
    get_run,
    list_runs,
)
from tiny_tasks.savers.base import CheckpointWrite


async def test_get_run_shows_status_input_pending_and_counts() -> None:
    saver = MemorySaver()
    await pause(saver, "r1", "memo")
    state = await get_run(saver, "r1")
    assert state is not None
    assert (state.run_id, state.task_name, state.status) == ("r1", "approval", "paused")
    assert state.input == "memo"
    assert state.pending == (Interrupt({"approve": "memo"}, "approval/interrupt#0"),)
    assert (state.delivered, state.answers, state.steps, state.children) == (1, 0, 0, 0)
    assert state.created_at <= state.updated_at
    assert await get_run(saver, "missing") is None


async def test_list_runs_filters_and_pages_newest_first() -> None:
    saver = MemorySaver()
    for number in range(5):
        await pause(saver, f"r{number}", f"doc{number}")
    async for _ in approval.resume("yes", run_id="r2", checkpointer=saver):
        pass  # r2 finishes and is removed
    listed = await list_runs(saver, status="paused")
    assert [run.run_id for run in listed] == ["r4", "r3", "r1", "r0"]
    page = await list_runs(saver, status="paused", limit=2, offset=1)
    assert [run.run_id for run in page] == ["r3", "r1"]
    assert await list_runs(saver, task_name="other") == []
    with pytest.raises(ValueError, match="must not be negative"):
        await list_runs(saver, limit=-1)


async def test_delete_run_says_whether_there_was_one() -> None:
    saver = MemorySaver()
    await pause(saver, "r1", "memo")
    assert await delete_run(saver, "r1") is True
    assert await delete_run(saver, "r1") is False
    assert saver.load("r1") is None


async def test_a_type_that_is_not_imported_is_named_not_called_damaged() -> None:
    saver = MemorySaver()
    await pause(saver, "r1", "memo")
    stored = saver.load("r1")
    assert stored is not None
    unknown = b'{"$":"dataclass","v":["shop.models:Order",{"id":1}]}'
    entries = (b'{"k":"input","v":' + unknown + b"}", *stored.entries[1:])
    saver.delete("r1")
    saver.save(
        CheckpointWrite("r1", "approval", "paused", 1, stored.pending, stored.state, entries),
        None,
    )
    with pytest.raises(UnknownTypeError) as caught:
        await get_run(saver, "r1")
    assert (caught.value.type_name, caught.value.module, caught.value.run_id) == (
        "shop.models:Order",
        "shop.models",
        "r1",
    )
    assert "damaged" not in str(caught.value)
    assert str(caught.value).startswith(
        "cannot decode the stored journal entry 0: cannot load a value of type "
        "'shop.models:Order': module 'shop.models' is not imported"
    )
