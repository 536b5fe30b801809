"""`check_runs` / `tiny-tasks check`, `patched` and `deprecate_patch`.

Real stored runs, on SQLite and PostgreSQL, are made by version 1 of an order workflow;
each later version (a renamed child, an inserted step, a removed step, changed step
arguments, a reordered gather, a patched branch, a deprecated patch) is checked against
them, and then resumes them: the check's verdict must be what the resume does, and the
check must leave every stored byte as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "savers"))

from dict_saver import DictSaver

from tiny_tasks import (
    Checkpointer,
    Command,
    MemorySaver,
    ReplayMismatchError,
    RunCheck,
    Task,
    TaskContext,
    TaskInterrupted,
    check_runs,
    deprecate_patch,
    interrupt,
    patched,
    task,
)
from tiny_tasks._step import _hash_arguments
from tiny_tasks.savers import PostgresSaver, SqliteSaver
from tiny_tasks.savers.base import Checkpoint, CheckpointWrite
from tiny_tasks.serde import default_serializer

SOURCE = Path(__file__).parents[1] / "src"

# -- the workflow, version by version ----------------------------------------------------

CALLS: list[str] = []


async def fetch(item: str) -> dict[str, Any]:
    CALLS.append(f"fetch {item}")
    return {"item": item, "price": 10}


async def label_for(item: str) -> str:
    CALLS.append(f"label {item}")
    return f"label-{item}"


async def quote_for(item: str) -> int:
    CALLS.append(f"quote {item}")
    return 7


async def audit(item: str) -> str:
    CALLS.append(f"audit {item}")
    return "clean"


GATES: list[tuple[asyncio.Event, asyncio.Event]] = []  # (entered, released) for charge


async def charge(amount: int) -> str:
    CALLS.append(f"charge {amount}")
    if GATES:
        entered, released = GATES[0]
        entered.set()
        await released.wait()
    return f"charged {amount}"


async def wrap(item: str) -> str:
    CALLS.append(f"wrap {item}")
    return "wrapped"


async def pack(item: str) -> str:
    CALLS.append(f"pack {item}")
    return "packed"


async def _label(item: str, ctx: TaskContext) -> str:
    return await ctx.step(label_for, item)


async def _quote(item: str, ctx: TaskContext) -> int:
    return await ctx.step(quote_for, item)


async def _review(order: dict[str, Any], ctx: TaskContext) -> bool:
    await ctx.step(audit, order["item"])
    return bool(ctx.interrupt({"approve": order["item"]}))


label = task("label", _label)
quote = task("quote", _quote)
review = task("review", _review)
inspect_ = task("inspect", _review)  # the review child under another name


def version(
    *,
    reviewer: Task[Any, Any, Any] = review,
    before_gather: bool = False,
    gather_order: str = "label-quote",
    charge_step: str = "once",
    after_charge: str = "",
    at_end: bool = False,
) -> Task[Any, Any, Any]:
    """Version 1 of the order workflow, or a later one with one edit."""

    async def order(item: str, ctx: TaskContext) -> str:
        placed = await ctx.step(fetch, item)  # order/fetch#0
        if before_gather:
            await ctx.step(pack, item)  # inserted: every later site moves
        if gather_order == "label-quote":
            tag, price = await asyncio.gather(label.invoke(item), quote.invoke(item))
        else:
            price, tag = await asyncio.gather(quote.invoke(item), label.invoke(item))
        if not await reviewer.invoke(placed):  # order/review#3
            return "rejected"
        if charge_step == "once":
            await ctx.step(charge, placed["price"])  # order/charge#4
        elif charge_step == "double":
            await ctx.step(charge, placed["price"] * 2)
        if after_charge == "unpatched" or (after_charge == "patched" and ctx.patched("gift-wrap")):
            await ctx.step(wrap, item)
        elif after_charge == "deprecated":
            ctx.deprecate_patch("gift-wrap")
            await ctx.step(wrap, item)
        confirmed = ctx.interrupt("ship it?")  # order/interrupt#5
        if at_end:
            await ctx.step(pack, item)
        return f"{tag}/{price}/{confirmed}"

    return task("order", order)


V1 = version()
VERSIONS: dict[str, Task[Any, Any, Any]] = {
    "unchanged": V1,
    "renamed child": version(reviewer=inspect_),
    "inserted step": version(before_gather=True),
    "step added at the end": version(at_end=True),
    "removed step": version(charge_step="none"),
    "changed arguments": version(charge_step="double"),
    "reordered gather": version(gather_order="quote-label"),
    "inserted step, no patch": version(after_charge="unpatched"),
    "patched branch": version(after_charge="patched"),
    "deprecated patch": version(after_charge="deprecated"),
}

# What check says of each stored run (None: compatible; else the mismatching site), and
# what the resume then does ("paused" again, "done", or the mismatch).
AT_REVIEW, AT_CONFIRM, PATCHED_RUN = "at-review", "at-confirm", "patched-new"
EXPECTED: dict[str, dict[str, str | None]] = {
    "unchanged": {AT_REVIEW: None, AT_CONFIRM: None},
    # Position order#3 holds the task order/review#3 for both runs: recorded as a whole
    # (at-confirm), or as the ancestor of the interrupt the run is paused in (at-review).
    "renamed child": {AT_REVIEW: "order/inspect#3", AT_CONFIRM: "order/inspect#3"},
    "inserted step": {AT_REVIEW: "order/pack#1", AT_CONFIRM: "order/pack#1"},
    "step added at the end": {AT_REVIEW: None, AT_CONFIRM: None},
    "removed step": {AT_REVIEW: None, AT_CONFIRM: "order/interrupt#4"},
    "changed arguments": {AT_REVIEW: None, AT_CONFIRM: "order/charge#4"},
    "reordered gather": {AT_REVIEW: "order/quote#1", AT_CONFIRM: "order/quote#1"},
    "inserted step, no patch": {AT_REVIEW: None, AT_CONFIRM: "order/wrap#5"},
    "patched branch": {AT_REVIEW: None, AT_CONFIRM: None},
    "deprecated patch": {
        AT_REVIEW: None,
        AT_CONFIRM: "order/patch:gift-wrap#5",
        PATCHED_RUN: None,
    },
}


# -- stores ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh SQLite file or PostgreSQL database, as an open saver."""
    if request.param == "sqlite":
        saver: Any = SqliteSaver(tmp_path / "checkpoints.db")
        yield saver
        await saver.close()
        return
    saver = PostgresSaver(request.getfixturevalue("postgres_dsn"), max_size=2)
    await saver.setup()
    yield saver
    await saver.close()


async def make_v1_runs(saver: Checkpointer) -> None:
    """at-review: paused in the review child; at-confirm: reviewed, paused on shipping."""
    for run_id in (AT_REVIEW, AT_CONFIRM):
        with pytest.raises(TaskInterrupted):
            await V1.invoke("book", run_id=run_id, checkpointer=saver)
    with pytest.raises(TaskInterrupted) as paused:
        await V1.invoke(Command(resume=True), run_id=AT_CONFIRM, checkpointer=saver)
    assert [i.id for i in paused.value.interrupts] == ["order/interrupt#5"]


async def stored_runs(saver: Checkpointer) -> dict[str, Checkpoint]:
    """Every stored checkpoint, whole (entries, state, version, timestamps)."""
    infos = await _maybe(saver.list_runs(limit=10_000))
    runs = {info.run_id: await _maybe(saver.load(info.run_id)) for info in infos}
    return runs


async def _maybe(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def resume(code: Task[Any, Any, Any], saver: Checkpointer, run_id: str) -> str:
    """Resume `run_id` with `code`, answering its interrupt; what it then did."""
    try:
        result = await code.invoke(Command(resume=True), run_id=run_id, checkpointer=saver)
    except TaskInterrupted as paused:
        return f"paused on {[i.id for i in paused.interrupts]}"
    except ReplayMismatchError as error:
        return f"mismatch at {error.site_id}: recorded {error.recorded}, found {error.found}"
    return f"done: {result}"


# -- check's verdict is what the resume does -----------------------------------------------


@pytest.mark.parametrize("edit", list(VERSIONS))
async def test_check_verdict_is_what_the_resume_does(store: Any, edit: str) -> None:
    await make_v1_runs(store)
    code = VERSIONS[edit]
    if edit == "deprecated patch":  # a run made by the patched version, new branch taken
        with pytest.raises(TaskInterrupted):
            await VERSIONS["patched branch"].invoke("cup", run_id=PATCHED_RUN, checkpointer=store)
        with pytest.raises(TaskInterrupted):
            await VERSIONS["patched branch"].invoke(
                Command(resume=True), run_id=PATCHED_RUN, checkpointer=store
            )
    before = await stored_runs(store)
    seen: list[RunCheck] = []

    report = await check_runs(store, [code, label, quote, review], jobs=2, on_result=seen.append)

    assert await stored_runs(store) == before  # not one byte changed
    verdicts = {result.run_id: result for result in seen}
    expected = EXPECTED[edit]
    assert {run: v.site if not v.compatible else None for run, v in verdicts.items()} == expected
    bad = sorted(run for run, site in expected.items() if site is not None)
    assert [r.run_id for r in report.incompatible] == bad
    assert (report.checked, report.compatible, report.skipped) == (
        len(expected),
        len(expected) - len(bad),
        0,
    )
    for run_id in sorted(expected):
        verdict = verdicts[run_id]
        outcome = await resume(code, store, run_id)
        if verdict.compatible:
            assert not outcome.startswith("mismatch"), (run_id, verdict, outcome)
        else:
            assert verdict.status == "paused"
            assert outcome == (
                f"mismatch at {verdict.site}: recorded {verdict.recorded}, found {verdict.found}"
            )
            # Refused before its first write, as check stopped before it: nothing written.
            assert (await stored_runs(store))[run_id] == before[run_id]


async def test_resumes_after_a_compatible_check_take_the_branch_the_journal_says(
    store: Any,
) -> None:
    await make_v1_runs(store)
    patched_code = VERSIONS["patched branch"]
    report = await check_runs(store, [patched_code])
    assert report.old_patches == {"gift-wrap": 1}
    assert report.ok
    CALLS.clear()
    # at-confirm went past the patch point with version 1: the old branch, no wrap.
    assert await resume(patched_code, store, AT_CONFIRM) == "done: label-book/7/True"
    assert CALLS == []
    # at-review reaches the patch point for the first time: the new branch.
    assert await resume(patched_code, store, AT_REVIEW) == "paused on ['order/interrupt#6']"
    assert CALLS == ["charge 10", "wrap book"]
    # Its decision is in the journal: the deprecated version accepts it, and check agrees.
    deprecated = VERSIONS["deprecated patch"]
    again = await check_runs(store, [deprecated])
    assert (again.checked, again.compatible, again.old_patches) == (1, 1, {})
    CALLS.clear()
    assert await resume(deprecated, store, AT_REVIEW) == "done: label-book/7/True"
    assert CALLS == []


async def test_running_runs_are_checked_only_when_asked(store: Any) -> None:
    await make_v1_runs(store)
    with pytest.raises(TaskInterrupted):
        await V1.invoke("mug", run_id="live", checkpointer=store)
    entered, released = asyncio.Event(), asyncio.Event()
    GATES.append((entered, released))
    try:  # resumed, then its worker stops in the charge step, as a killed one would
        worker = asyncio.ensure_future(
            V1.invoke(Command(resume=True), run_id="live", checkpointer=store)
        )
        await entered.wait()
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    finally:
        GATES.clear()
    before = await stored_runs(store)
    assert before["live"].status == "running"

    default = await check_runs(store, [VERSIONS["inserted step"]])
    with_running = await check_runs(store, [VERSIONS["inserted step"]], running=True)
    unchanged: list[RunCheck] = []
    await check_runs(store, [V1, label, quote, review], running=True, on_result=unchanged.append)

    assert (default.checked, default.skipped) == (2, 1)
    assert (with_running.checked, with_running.skipped) == (3, 0)
    assert [(r.run_id, r.status, r.site) for r in with_running.incompatible] == [
        (AT_CONFIRM, "paused", "order/pack#1"),
        (AT_REVIEW, "paused", "order/pack#1"),
        ("live", "running", "order/pack#1"),
    ]
    live = next(r for r in unchanged if r.run_id == "live")
    assert (live.compatible, live.reached) == (
        True,
        "new ground: a step that was never recorded, or a new child's result",
    )
    assert await stored_runs(store) == before
    CALLS.clear()  # the live run goes on with compatible code: the charge step runs once
    with pytest.raises(TaskInterrupted) as paused:
        await V1.invoke(run_id="live", checkpointer=store)
    assert [i.id for i in paused.value.interrupts] == ["order/interrupt#5"]
    assert CALLS == ["charge 10"]


# -- more verdicts, on a plain saver -----------------------------------------------------


async def test_a_paused_run_must_reach_every_one_of_its_interrupts() -> None:
    async def both(_: Any, ctx: TaskContext) -> list[Any]:
        return list(await asyncio.gather(ask.invoke("a"), ask.invoke("b")))

    async def one(_: Any, ctx: TaskContext) -> list[Any]:
        return [await ask.invoke("a")]

    ask = task("ask", lambda question: interrupt(question))
    saver = MemorySaver()
    with pytest.raises(TaskInterrupted):
        await task("pair", both).invoke(None, run_id="r", checkpointer=saver)
    pending = ["pair/ask#0/interrupt#0", "pair/ask#1/interrupt#0"]
    before = saver.load("r")

    result = await check_stored(saver, task("pair", one), ask)

    assert not result.compatible
    assert result.site == "pair/ask#1"
    assert result.recorded == "task 'pair/ask#1' in the journal"
    assert result.found == "the run paused at 'pair/ask#0/interrupt#0' before reaching it"
    fine = await check_stored(saver, task("pair", both), ask)
    assert (fine.compatible, fine.reached) == (True, f"paused on {pending}")
    assert saver.load("r") == before
    # What the resumes do: refused at that site. Only after its first write (the replayed
    # child's result), so it stores the run paused again on the same interrupts, its
    # answers and that result voided. The unchanged code finishes.
    answers = Command(answers=dict.fromkeys(pending, "yes"))
    with pytest.raises(ReplayMismatchError) as refused:
        await task("pair", one).invoke(answers, run_id="r", checkpointer=saver)
    assert refused.value.site_id == "pair/ask#1"
    after = saver.load("r")
    assert (after.status, list(after.pending)) == ("paused", pending)
    assert after.entries[: len(before.entries)] == before.entries
    serde = default_serializer()
    written = [serde.loads(raw) for raw in after.entries[len(before.entries) :]]
    # Answers and children say when they were made (for the inbox's timeline).
    assert [type(entry.pop("at", None)).__name__ for entry in written] == [
        *["float"] * 3,
        *["NoneType"] * 3,
    ]
    assert written == [
        {"k": "answer", "s": pending[0], "v": "yes"},
        {"k": "answer", "s": pending[1], "v": "yes"},
        {"k": "child", "s": "pair/ask#0", "p": [], "v": "yes"},
        {"k": "void", "s": pending[0]},
        {"k": "void", "s": pending[1]},
        {"k": "void", "s": "pair/ask#0"},
    ]
    assert await task("pair", both).invoke(answers, run_id="r", checkpointer=saver) == [
        "yes",
        "yes",
    ]


async def test_unknown_task_undecodable_journal_and_a_failing_replay_are_incompatible() -> None:
    saver = DictSaver()
    with pytest.raises(TaskInterrupted):
        await V1.invoke("book", run_id="r", checkpointer=saver)

    gone = await check_runs(saver, [label])
    assert [(r.site, r.recorded, r.found) for r in gone.incompatible] == [
        (
            None,
            "a run of task 'order'",
            "no task of that name in the code checked (renamed or removed?)",
        )
    ]

    async def broken(item: str, ctx: TaskContext) -> str:
        await ctx.step(fetch, item)
        raise KeyError("no such field")

    # Raising before the recorded sites it reached before: replay gone elsewhere.
    failing = await check_runs(saver, [task("order", broken), label, quote, review])
    assert [(r.site, r.recorded, r.found) for r in failing.incompatible] == [
        (
            "order/review#3",
            "task 'order/review#3' in the journal",
            "task 'order' raised before reaching it",
        )
    ]
    before = saver.runs["r"]
    with pytest.raises(ReplayMismatchError) as refused:
        await task("order", broken).invoke(Command(resume=True), run_id="r", checkpointer=saver)
    assert refused.value.site_id == "order/review#3"
    assert saver.runs["r"] == before

    # Raising past every recorded site (a queued run recorded nothing): the run would fail,
    # as the real call then does.
    async def at_once(item: str, ctx: TaskContext) -> str:
        raise KeyError("no such field")

    entry = default_serializer().dumps({"k": "input", "v": "cup"})
    state = default_serializer().dumps({"pending": []})
    saver.save(CheckpointWrite("q", "order", "queued", 0, (), state, (entry,)), None)  # type: ignore[arg-type]
    raising = await check_runs(saver, [task("order", at_once)])
    assert [(r.run_id, r.site, r.found) for r in raising.incompatible] == [
        ("q", None, "the task raised KeyError: 'no such field'"),
        ("r", "order/review#3", "task 'order' raised before reaching it"),
    ]
    with pytest.raises(KeyError):
        await task("order", at_once).invoke(run_id="q", checkpointer=saver)
    assert "q" not in saver.runs
    stored = saver.runs["r"]
    saver.runs["r"] = Checkpoint(**{**_fields(stored), "entries": (b"{not json",)})
    damaged = await check_runs(saver, [V1])
    assert len(damaged.incompatible) == 1
    assert damaged.incompatible[0].recorded == "a journal this code can decode"


async def test_statuses_the_engine_does_not_know_yet_are_checked_by_default() -> None:
    saver = MemorySaver()
    entry = default_serializer().dumps({"k": "input", "v": "book"})
    state = default_serializer().dumps({"pending": []})
    for run_id, status in [("q", "queued"), ("s", "sleeping"), ("d", "done"), ("f", "failed")]:
        saver.save(CheckpointWrite(run_id, "order", status, 0, (), state, (entry,)), None)  # type: ignore[arg-type]

    report = await check_runs(saver, [V1, label, quote, review])

    assert (report.checked, report.compatible, report.skipped) == (2, 2, 2)


async def test_check_refuses_two_tasks_of_one_name_and_bad_limits() -> None:
    with pytest.raises(ValueError, match="two different tasks are named 'order'"):
        await check_runs(MemorySaver(), [V1, VERSIONS["inserted step"]])
    with pytest.raises(ValueError, match="at least 1"):
        await check_runs(MemorySaver(), [V1], jobs=0)


async def test_results_have_useful_reprs() -> None:
    saver = MemorySaver()
    with pytest.raises(TaskInterrupted):
        await V1.invoke("book", run_id="r", checkpointer=saver)
    good = await check_runs(saver, [V1, label, quote, review])
    bad = await check_runs(saver, [VERSIONS["inserted step"], label, quote, review])
    patches = await check_runs(saver, [VERSIONS["patched branch"], label, quote, review])
    results: list[RunCheck] = []
    await check_runs(saver, [V1, label, quote, review], on_result=results.append)
    assert repr(good) == (
        "CheckReport(checked=1, compatible=1, incompatible=0, skipped=0, old_patches={})"
    )
    assert repr(patches) == (
        "CheckReport(checked=1, compatible=1, incompatible=0, skipped=0, old_patches={})"
    )
    assert repr(bad.incompatible[0]) == (
        "RunCheck('r', task='order', paused: incompatible at 'order/pack#1': recorded "
        "task 'order/label#1', found step 'order/pack#1')"
    )
    assert repr(results[0]) == (
        "RunCheck('r', task='order', paused: compatible, paused on ['order/review#3/interrupt#1'])"
    )


async def check_stored(saver: MemorySaver, *tasks: Task[Any, Any, Any]) -> RunCheck:
    results: list[RunCheck] = []
    await check_runs(saver, list(tasks), on_result=results.append)
    assert len(results) == 1
    return results[0]


def _fields(checkpoint: Checkpoint) -> dict[str, Any]:
    return {name: getattr(checkpoint, name) for name in Checkpoint.__slots__}


# -- patched / deprecate_patch -------------------------------------------------------------


async def test_patched_is_true_for_new_runs_and_recorded_in_the_journal() -> None:
    decisions: list[bool] = []

    async def flow(_: Any, ctx: TaskContext) -> str:
        decisions.append(patched("p"))  # ambient and on the context alike
        decisions.append(ctx.patched("q"))
        return str(interrupt("go?"))

    saver = DictSaver()
    with pytest.raises(TaskInterrupted) as paused:
        await task("flow", flow).invoke(None, run_id="r", checkpointer=saver)
    # The patch decisions take no index: the interrupt is still the first effect.
    assert [i.id for i in paused.value.interrupts] == ["flow/interrupt#0"]
    serde = default_serializer()
    entries = [serde.loads(raw) for raw in saver.runs["r"].entries]
    assert entries[1:] == [
        {"k": "patch", "s": "flow/patch:p#0", "v": True},
        {"k": "patch", "s": "flow/patch:q#0", "v": True},
    ]
    resumed = await task("flow", flow).invoke(Command(resume="yes"), run_id="r", checkpointer=saver)
    assert resumed == "yes"
    assert decisions == [True, True, True, True]


class WriteLog(MemorySaver):
    """A MemorySaver that keeps each save's status and decoded new entries."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, list[Any]]] = []

    def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
        serde = default_serializer()
        entries = [serde.loads(raw) for raw in write.entries]
        for entry in entries:  # when each was made (for the inbox's timeline) varies
            entry.pop("at", None)
            entry.pop("ran", None)
        self.writes.append((write.status, entries))
        return super().save(write, expected_version)


async def test_a_resumes_patch_decision_goes_with_its_first_write() -> None:
    async def old(_: Any, ctx: TaskContext) -> str:
        return f"{ctx.interrupt('one')} {ctx.interrupt('two')}"

    async def new(_: Any, ctx: TaskContext) -> str:
        first = ctx.interrupt("one")
        if ctx.patched("extra"):
            await ctx.step(wrap, "x")
        return f"{first} {ctx.interrupt('two')}"

    async def refused(_: Any, ctx: TaskContext) -> str:
        assert not ctx.patched("extra")  # the run went past index 0: decided False
        return await ctx.step(wrap, "x")  # a step where the journal holds an interrupt

    saver = WriteLog()
    with pytest.raises(TaskInterrupted):
        await task("flow", old).invoke(None, run_id="r", checkpointer=saver)
    before = saver.load("r")
    saver.writes.clear()
    with pytest.raises(ReplayMismatchError) as mismatch:
        await task("flow", refused).invoke(Command(resume=1), run_id="r", checkpointer=saver)
    assert mismatch.value.site_id == "flow/wrap#0"
    assert (saver.writes, saver.load("r")) == ([], before)  # the decision was not written

    with pytest.raises(TaskInterrupted) as paused:
        await task("flow", new).invoke(Command(resume=1), run_id="r", checkpointer=saver)

    assert [i.id for i in paused.value.interrupts] == ["flow/interrupt#2"]
    hashed = _hash_arguments(default_serializer(), ("x",), {})
    assert saver.writes == [
        (  # the first write, before the new step: the answer and the decision
            "running",
            [
                {"k": "answer", "s": "flow/interrupt#0", "v": 1},
                {"k": "patch", "s": "flow/patch:extra#1", "v": True},
            ],
        ),
        ("running", [{"k": "step", "s": "flow/wrap#1", "h": hashed, "v": "wrapped"}]),
        ("paused", []),
    ]


async def test_a_run_recorded_before_the_patch_takes_the_old_branch_on_every_replay() -> None:
    async def old(_: Any, ctx: TaskContext) -> str:
        first = ctx.interrupt("one")
        second = ctx.interrupt("two")
        return f"{first} {second}"

    branches: list[str] = []

    async def new(_: Any, ctx: TaskContext) -> str:
        first = ctx.interrupt("one")
        if ctx.patched("extra"):
            branches.append("new")
            await ctx.step(wrap, "x")
        else:
            branches.append("old")
        second = ctx.interrupt("two")
        return f"{first} {second}"

    saver = MemorySaver()
    with pytest.raises(TaskInterrupted):
        await task("flow", old).invoke(None, run_id="early", checkpointer=saver)
    with pytest.raises(TaskInterrupted):
        await task("flow", old).invoke(None, run_id="late", checkpointer=saver)
    with pytest.raises(TaskInterrupted):
        await task("flow", old).invoke(Command(resume=1), run_id="late", checkpointer=saver)

    new_task = task("flow", new)
    with pytest.raises(TaskInterrupted) as paused:  # "early" never went past: new branch
        await new_task.invoke(Command(resume=1), run_id="early", checkpointer=saver)
    assert [i.id for i in paused.value.interrupts] == ["flow/interrupt#2"]
    assert await new_task.invoke(Command(resume=2), run_id="late", checkpointer=saver) == "1 2"
    assert await new_task.invoke(Command(resume=2), run_id="early", checkpointer=saver) == "1 2"
    assert branches == ["new", "old", "new"]


async def test_patched_needs_a_running_task_and_a_string_id() -> None:
    with pytest.raises(RuntimeError, match="patched\\(\\) was called outside a running task"):
        patched("p")
    with pytest.raises(RuntimeError, match="deprecate_patch\\(\\) was called outside"):
        deprecate_patch("p")

    async def bad(_: Any, ctx: TaskContext) -> bool:
        return ctx.patched("")

    with pytest.raises(TypeError, match="non-empty str"):
        await task("bad", bad).invoke(None)


# -- the command line --------------------------------------------------------------------

APP = """
    import asyncio
    from tiny_tasks import task

    async def fetch(item):
        return item.upper()

    @task("order")
    async def order(item, ctx):
        got = await ctx.step(fetch, item)
        {extra}
        return ctx.interrupt(got)
"""


def write_app(folder: Path, name: str, extra: str = "pass") -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(APP.format(extra=extra)))


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    return subprocess.run(
        [sys.executable, "-m", "tiny_tasks", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli_store(tmp_path: Path) -> Path:
    write_app(tmp_path, "app_v1")
    write_app(tmp_path, "app_v2", "await ctx.step(fetch, 'again')")
    write_app(tmp_path, "app_v3", "pass\n        return 'early'")
    store = tmp_path / "store.db"
    script = textwrap.dedent(
        f"""
        import asyncio
        from tiny_tasks.savers import SqliteSaver
        from app_v1 import order

        async def main():
            async with SqliteSaver({str(store)!r}) as saver:
                for n in range(3):
                    async for _ in order(f"item{{n}}", run_id=f"run-{{n}}", checkpointer=saver):
                        pass

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)
    return store


def dump(store: Path) -> list[str]:
    """Every row of every table of a SQLite store, as SQL (the file's header aside)."""
    with contextlib.closing(sqlite3.connect(store)) as connection:
        return list(connection.iterdump())


def test_cli_check_passes_compatible_code(cli_store: Path) -> None:
    before = dump(cli_store)
    done = cli(cli_store.parent, "check", str(cli_store), "--app", "app_v1", "--jobs", "2")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "checked 3 runs: 3 compatible, 0 incompatible, 0 not checked (running, finished or "
        "failed)\n"
    )
    assert dump(cli_store) == before


def test_cli_check_names_each_incompatible_run_and_fails(cli_store: Path) -> None:
    before = dump(cli_store)
    done = cli(cli_store.parent, "check", str(cli_store), "--app", "app_v2")
    assert done.returncode == 1
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert sorted(lines[:3]) == [
        f"INCOMPATIBLE run-{n} (task order, paused): at order/fetch#1: recorded "
        "interrupt 'order/interrupt#1', found step 'order/fetch#1'"
        for n in range(3)
    ]
    assert lines[3:] == [
        "checked 3 runs: 0 compatible, 3 incompatible, 0 not checked (running, finished or failed)"
    ]
    assert dump(cli_store) == before


def test_cli_check_a_run_that_would_finish_without_its_interrupt(cli_store: Path) -> None:
    done = cli(cli_store.parent, "check", str(cli_store), "--app", "app_v3", "--running")
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 4
    assert done.stdout.splitlines()[-1] == (
        "checked 3 runs: 0 compatible, 3 incompatible, 0 not checked (finished or failed)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["nowhere.db", "--app", "app_v1"],
            "tiny-tasks: no SQLite store at 'nowhere.db' (the file does not exist)\n",
        ),
        (
            ["store.db", "--app", "missing_module"],
            "tiny-tasks: cannot import --app "
            "'missing_module': ModuleNotFoundError: No module named 'missing_module'\n",
        ),
        (
            ["store.db", "--app", "json"],
            "tiny-tasks: --app 'json' defines no task (no Task among its names)\n",
        ),
        (
            ["store.db", "--app", "app_v1", "--jobs", "0"],
            "tiny-tasks check: argument --jobs: must be at least 1, not 0 (see tiny-tasks "
            "check --help)\n",
        ),
    ],
)
def test_cli_check_usage_errors_exit_2(cli_store: Path, args: list[str], message: str) -> None:
    done = cli(cli_store.parent, "check", *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)


# -- sync task bodies ----------------------------------------------------------------------


def double(number: int) -> int:
    return number * 2


def sync_v1(number: int, ctx: TaskContext) -> int:
    first = ctx.step_sync(double, number)
    return first + int(ctx.interrupt("ok?"))


def sync_v2(number: int, ctx: TaskContext) -> int:
    first = ctx.step_sync(double, number)
    ctx.step_sync(double, first)  # inserted
    return first + int(ctx.interrupt("ok?"))


async def test_sync_bodies_are_dry_replayed_in_their_threads_too() -> None:
    saver = MemorySaver()
    with pytest.raises(TaskInterrupted):
        await task("s", sync_v1).invoke(3, run_id="p", checkpointer=saver)
    entry = default_serializer().dumps({"k": "input", "v": 3})
    state = default_serializer().dumps({"pending": []})
    saver.save(CheckpointWrite("q", "s", "queued", 0, (), state, (entry,)), None)  # type: ignore[arg-type]
    before = {run_id: saver.load(run_id) for run_id in ("p", "q")}

    same: list[RunCheck] = []
    await check_runs(saver, [task("s", sync_v1)], on_result=same.append)
    changed = await check_runs(saver, [task("s", sync_v2)])

    assert sorted((r.run_id, r.reached) for r in same) == [
        ("p", "paused on ['s/interrupt#1']"),
        ("q", "new ground: a step that was never recorded, or a new child's result"),
    ]
    assert [(r.run_id, r.site, r.recorded) for r in changed.incompatible] == [
        ("p", "s/double#1", "interrupt 's/interrupt#1'")
    ]
    assert {run_id: saver.load(run_id) for run_id in ("p", "q")} == before
    with pytest.raises(ReplayMismatchError) as refused:
        await task("s", sync_v2).invoke(Command(resume=1), run_id="p", checkpointer=saver)
    assert refused.value.site_id == "s/double#1"
    assert await task("s", sync_v1).invoke(Command(resume=1), run_id="p", checkpointer=saver) == 7
