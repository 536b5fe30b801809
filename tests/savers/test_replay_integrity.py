"""A refused resume leaves the stored run exactly as it was; replay that goes somewhere
else is refused, not taken for a new pause; another task cannot take over a stored run.

Every test runs on every saver kind. "Untouched" is checked on the stored checkpoint
itself: the one loaded after the refusal equals, field for field and byte for byte, the
one loaded before it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tiny_tasks import (
    Command,
    Interrupt,
    ReplayMismatchError,
    SerializationError,
    Task,
    TaskContext,
    TaskMismatchError,
    TinyTasksError,
    interrupt,
    step,
    task,
)
from tiny_tasks._journal import Journal, decode_journal
from tiny_tasks._run import resolve
from tiny_tasks.savers.base import Checkpoint
from tiny_tasks.serde import default_serializer


async def stored(saver: Any, run_id: str) -> Checkpoint:
    checkpoint: Checkpoint | None = await resolve(saver.load(run_id))
    assert checkpoint is not None
    return checkpoint


async def journal(saver: Any, run_id: str) -> Journal:
    """The run's journal as any later load reads it."""
    serde = getattr(saver, "serde", None) or default_serializer()
    return decode_journal(await stored(saver, run_id), serde)


# -- one program, edited in every way that moves replay elsewhere ------------------------

# flow/interrupt#0                 answered "ann" before the pause under test
# flow/helper#1/fetch#0            a step, run once
# flow/helper#1/interrupt#1        pending: the resume under test answers it
# flow/interrupt#2                 reached only after it


def flow_program(variant: str, calls: list[int]) -> Task[Any, Any, Any]:
    """The flow as first written ("old"), or edited as `variant` says."""

    def fetch(x: int) -> int:
        calls.append(x)
        return x * 10

    async def fetch_task(x: int) -> int:
        calls.append(x)
        return x * 10

    async def helper_body(x: int, ctx: TaskContext) -> list[Any]:
        if variant == "other arguments":
            value = await ctx.step(fetch, x + 1)
        elif variant == "step became a task":  # same name, so the same site id
            value = await task("fetch", fetch_task).invoke(x)
        else:
            value = await ctx.step(fetch, x)
        if variant == "child stops early":
            return [value, None]
        return [value, interrupt(f"approve {value}?")]

    helper = task("assistant" if variant == "renamed child" else "helper", helper_body)

    async def flow_body(x: int) -> list[Any]:
        name = "?" if variant == "removed interrupt" else interrupt("name?")
        if variant == "inserted interrupt":
            interrupt("extra?")
        result = await helper.invoke(x)
        return [name, result, interrupt("confirm?")]

    return task("flow", flow_body)


REFUSED_AT = {
    "other arguments": "flow/helper#1/fetch#0",
    "renamed child": "flow/assistant#1",
    "child stops early": "flow/helper#1/interrupt#1",
    "step became a task": "flow/helper#1/fetch#0",
    "inserted interrupt": "flow/interrupt#1",
    "removed interrupt": "flow/helper#0",
}


@pytest.mark.parametrize("variant", [*REFUSED_AT, "unstorable answer"])
async def test_a_refused_resume_leaves_the_stored_run_byte_for_byte(
    saver: Any, collect: Any, variant: str
) -> None:
    calls: list[int] = []
    old = flow_program("old", calls)
    opts: dict[str, Any] = {"run_id": f"flow-{variant}", "checkpointer": saver}
    assert await collect(old(1, **opts)) == ([], [Interrupt("name?", "flow/interrupt#0")])
    assert await collect(old.resume("ann", **opts)) == (
        [],
        [Interrupt("approve 10?", "flow/helper#1/interrupt#1")],
    )
    before = await stored(saver, opts["run_id"])

    if variant == "unstorable answer":
        with pytest.raises(SerializationError, match="flow/helper#1/interrupt#1"):
            await collect(old.resume(object(), **opts))
    else:
        edited = flow_program(variant, calls)
        with pytest.raises(ReplayMismatchError) as caught:
            await collect(edited.resume("yes", **opts))
        assert caught.value.site_id == REFUSED_AT[variant]
        assert caught.value.run_id == opts["run_id"]

    assert await stored(saver, opts["run_id"]) == before  # entries, state, version, status
    assert calls == [1]  # nothing ran again, nothing new ran
    # The old code finishes the run as if the refused resume never happened.
    stream = old.resume("yes", **opts)
    assert await collect(stream) == ([], [Interrupt("confirm?", "flow/interrupt#2")])
    assert stream.interrupts[0].id == "flow/interrupt#2"
    assert await old.invoke(Command(resume="ok"), **opts) == ["ann", [10, "yes"], "ok"]
    assert calls == [1]


async def test_a_child_that_now_pauses_before_the_recorded_sites_is_refused(
    saver: Any, collect: Any
) -> None:
    calls: list[int] = []

    def fetch(x: int) -> int:
        calls.append(x)
        return x * 10

    async def helper_body(x: int, ctx: TaskContext) -> list[Any]:
        value = await ctx.step(fetch, x)
        return [value, interrupt("approve?")]

    def program(quiet_asks: bool) -> Task[Any, Any, Any]:
        async def quiet_body(_: Any) -> str:  # not recorded: it re-runs on every replay
            return interrupt("new question?") if quiet_asks else "quiet"

        quiet = task("quiet", quiet_body, record=False)
        helper = task("helper", helper_body)

        async def flow_body(x: int) -> list[Any]:
            return [await quiet.invoke(x), await helper.invoke(x)]

        return task("flow", flow_body)

    opts: dict[str, Any] = {"run_id": "asks-first", "checkpointer": saver}
    old = program(quiet_asks=False)
    assert await collect(old(1, **opts)) == (
        [],
        [Interrupt("approve?", "flow/helper#1/interrupt#1")],
    )
    before = await stored(saver, "asks-first")

    # Pauses at a site with no record while `flow/helper#1` and everything in it is unreached.
    with pytest.raises(ReplayMismatchError, match="paused at 'flow/quiet#0/interrupt#0'") as caught:
        await collect(program(quiet_asks=True).resume("yes", **opts))
    assert caught.value.site_id == "flow/helper#1"
    assert await stored(saver, "asks-first") == before
    assert await old.invoke(Command(resume="yes"), **opts) == ["quiet", [10, "yes"]]
    assert calls == [1]


# -- a refused answer never comes back ---------------------------------------------------

# pair/a#0/interrupt#0 and pair/b#1/interrupt#0 pending together. `a` waits on a gate
# first, so a later attempt can pause on `b`'s next question while `a` has not yet reached
# its recorded one: `a` is cut short by the pause, which is not a mismatch.


def pair_program(gate: asyncio.Event, edit: str = "") -> Task[Any, Any, Any]:
    async def a_body(_: Any) -> Any:
        await gate.wait()
        return interrupt("a?")

    async def b_body(_: Any) -> list[Any]:
        return [interrupt("b?"), interrupt("b2?")]

    async def b_early_body(_: Any) -> str:
        return "no question any more"

    a = task("z" if edit == "renamed" else "a", a_body)
    b = task("b", b_early_body if edit == "sequential, b stops early" else b_body, record=False)

    async def pair_body(_: Any) -> list[Any]:
        if edit == "sequential, b stops early":
            return [await a.invoke(None), await b.invoke(None)]
        return list(await asyncio.gather(a.invoke(None), b.invoke(None)))

    return task("pair", pair_body)


A, B, B2 = "pair/a#0/interrupt#0", "pair/b#1/interrupt#0", "pair/b#1/interrupt#1"


@pytest.mark.parametrize("edit", ["renamed", "sequential, b stops early"])
async def test_answers_of_a_refused_resume_never_count_after_further_answers(
    saver: Any, collect: Any, edit: str
) -> None:
    gate = asyncio.Event()
    gate.set()
    old = pair_program(gate)
    opts: dict[str, Any] = {"run_id": f"pair-{edit}", "checkpointer": saver}
    assert await collect(old(**opts)) == ([], [Interrupt("a?", A), Interrupt("b?", B)])
    before = await stored(saver, opts["run_id"])

    wrong = Command(answers={A: "wrong a", B: "wrong b"})
    with pytest.raises(ReplayMismatchError) as caught:
        await collect(pair_program(gate, edit)(wrong, **opts))
    after = await stored(saver, opts["run_id"])
    if edit == "renamed":  # refused at once: nothing was written
        assert caught.value.site_id == "pair/z#0"
        assert after == before
    else:
        # `a` finished and was recorded (the resume's first write, with both answers)
        # before `b` returned without asking: stored paused again, both answers and
        # `a`'s result withdrawn in the same write.
        assert caught.value.site_id == B
        assert (after.status, after.pending, after.version) == (
            "paused",
            before.pending,
            before.version + 2,
        )
        assert after.entries[: len(before.entries)] == before.entries
    withdrawn = await journal(saver, opts["run_id"])
    assert (withdrawn.answers, withdrawn.children, withdrawn.pending) == (
        {},
        {},
        {A: "a?", B: "b?"},
    )

    # Further answers with the old code: only `b`, while `a` is held before its question.
    gate.clear()
    assert await collect(old(Command(answers={B: "right b"}), **opts)) == (
        [],
        [Interrupt("b2?", B2)],
    )
    assert (await journal(saver, opts["run_id"])).answers == {B: "right b"}
    gate.set()
    # Re-attach, then answer: `a` asks its question again instead of taking "wrong a".
    assert await collect(old(**opts)) == ([], [Interrupt("b2?", B2)])
    assert await collect(old(Command(answers={B2: "right b2"}), **opts)) == (
        [],
        [Interrupt("a?", A)],
    )
    assert await old.invoke(Command(answers={A: "right a"}), **opts) == [
        "right a",
        ["right b", "right b2"],
    ]


async def test_siblings_cut_short_by_a_new_pause_are_not_a_mismatch(
    saver: Any, collect: Any
) -> None:
    gate = asyncio.Event()
    gate.set()
    opts: dict[str, Any] = {"run_id": "siblings", "checkpointer": saver}

    async def a_body(_: Any) -> Any:
        await gate.wait()
        return interrupt("a?")

    async def b_body(_: Any) -> list[Any]:
        return [interrupt("b?"), interrupt("b2?")]

    a, b = task("a", a_body), task("b", b_body, record=False)

    async def grouped(_: Any) -> list[Any]:
        async with asyncio.TaskGroup() as group:
            first = group.create_task(a.invoke(None))
            second = group.create_task(b.invoke(None))
        return [first.result(), second.result()]

    pair = task("pair", grouped)
    assert await collect(pair(**opts)) == ([], [Interrupt("a?", A), Interrupt("b?", B)])
    gate.clear()  # `a` has not reached its recorded question when `b` pauses anew
    assert await collect(pair(Command(answers={B: "b"}), **opts)) == (
        [],
        [Interrupt("b2?", B2)],
    )
    gate.set()
    assert await collect(pair(Command(answers={B2: "b2"}), **opts)) == ([], [Interrupt("a?", A)])
    assert await pair.invoke(Command(answers={A: "a"}), **opts) == ["a", ["b", "b2"]]


# -- another task on a stored run ----------------------------------------------------------


@task("wf")
async def wf(_: Any):  # type: ignore[no-untyped-def]
    yield "wf started"
    yield interrupt("approve?")


@task("other")
async def other(_: Any):  # type: ignore[no-untyped-def]
    yield "other started"
    yield interrupt("other question?")


@pytest.mark.parametrize("status", ["paused", "running"])
async def test_another_task_cannot_call_or_resume_a_stored_run(
    saver: Any, collect: Any, status: str
) -> None:
    opts: dict[str, Any] = {"run_id": "shared", "checkpointer": saver}
    if status == "paused":
        assert await collect(wf(**opts)) == (
            ["wf started"],
            [Interrupt("approve?", "wf/interrupt#0")],
        )
    else:
        stream = wf(**opts)
        assert (await anext(stream)).partial == "wf started"
        await stream.aclose()  # the consumer went away: stored "running"
    before = await stored(saver, "shared")
    assert before.status == status

    attempts = [other.resume("yes", **opts), other(**opts), other("input", **opts)]
    for attempt in attempts:
        with pytest.raises(TaskMismatchError) as caught:
            await collect(attempt)
        assert isinstance(caught.value, TinyTasksError)
        assert (caught.value.stored_task, caught.value.given_task) == ("wf", "other")
        assert "'wf'" in str(caught.value)
        assert "'other'" in str(caught.value)
        assert "'shared'" in str(caught.value)
    assert await stored(saver, "shared") == before

    if status == "running":
        assert await collect(wf(**opts)) == ([], [Interrupt("approve?", "wf/interrupt#0")])
    assert await collect(wf.resume("yes", **opts)) == (["yes"], [])


# -- entries decoded once per process -----------------------------------------------------


async def test_an_answer_the_task_changed_is_replayed_as_it_was_stored(saver: Any) -> None:
    """Decoded entries are kept between resumes; a mutable answer is decoded afresh."""
    seen: list[list[int]] = []

    @task("mutating")
    async def mutating() -> int:
        first = interrupt("a list")
        seen.append(list(first))
        first.append(99)  # the task changes the value it was given
        second = interrupt("a number")
        third = interrupt("another")
        return len(first) + second + third

    await _paused(mutating(run_id="m", checkpointer=saver))
    await _paused(mutating(Command(resume=[1, 2]), run_id="m", checkpointer=saver))
    await _paused(mutating(Command(resume=10), run_id="m", checkpointer=saver))
    assert await mutating.invoke(Command(resume=100), run_id="m", checkpointer=saver) == 113
    assert seen == [[1, 2], [1, 2], [1, 2]]


async def test_a_run_started_again_under_the_same_id_replays_its_own_entries(
    saver: Any,
) -> None:
    """The kept decode of a run is used only while the stored entries begin with the
    same bytes: a new run under a finished run's id is decoded from its own."""
    executions = iter(range(100))

    @step
    async def numbered() -> int:
        return next(executions)

    @task("steps_then_ask")
    async def steps_then_ask(count: int) -> list[int]:
        done = [await numbered() for _ in range(count)]
        return [*done, interrupt("first"), interrupt("second")]

    for count, first_step in ((1, 0), (3, 1), (5, 4)):  # each run longer than the last
        await _paused(steps_then_ask(count, run_id="again", checkpointer=saver))
        await _paused(steps_then_ask(Command(resume=-1), run_id="again", checkpointer=saver))
        result = await steps_then_ask.invoke(
            Command(resume=-2), run_id="again", checkpointer=saver
        )
        assert result == [*range(first_step, first_step + count), -1, -2]


async def _paused(stream: Any) -> None:
    events = [event async for event in stream]
    assert events
    assert events[-1].interrupt is not None
