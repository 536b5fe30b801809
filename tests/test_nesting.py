"""Tasks inside tasks: one run, interrupts at any depth, concurrent children, recording."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tiny_tasks import (
    AmbiguousResumeError,
    Command,
    Interrupt,
    MemorySaver,
    SerializationError,
    TaskContext,
    TaskInterrupted,
    TinyTasksError,
    UnknownInterruptError,
    emit,
    interrupt,
    task,
)

# -- nested streaming and interrupts ----------------------------------------------------


async def test_a_parent_streams_its_childs_partials(collect: Any) -> None:
    @task
    async def child(q: str):
        yield f"processing {q}"
        yield f"done: {q}"

    @task
    async def parent(q: str) -> list[str]:
        state: list[str] = []
        async for msg, _, intr in child(q):
            assert intr is None
            state.append(msg)
            emit(list(state))
        return [*state, "parent done"]

    stream = parent("task")
    assert await collect(stream) == (
        [["processing task"], ["processing task", "done: task"]],
        [],
    )
    assert stream.result == ["processing task", "done: task", "parent done"]


async def test_a_child_stream_has_a_result_too() -> None:
    @task
    def child(q: str):
        yield q
        return q.upper()

    @task
    async def parent(q: str) -> str:
        stream = child(q)
        async for _ in stream:
            pass
        return f"child returned {stream.result}"

    assert await parent.invoke("x") == "child returned X"


async def test_a_nested_interrupt_pauses_the_whole_run(saver: MemorySaver, collect: Any) -> None:
    @task
    async def inner(_: Any, ctx: TaskContext):
        answer = ctx.interrupt("stop")
        yield f"resumed with {answer}"

    @task
    async def outer(_: Any):
        async for msg, _, _ in inner():
            yield msg

    opts: dict[str, Any] = {"run_id": "nested", "checkpointer": saver}
    assert await collect(outer(**opts)) == ([], [Interrupt("stop", "outer/inner#0/interrupt#0")])
    stored = saver.load("nested")
    assert stored is not None
    assert stored.pending == ("outer/inner#0/interrupt#0",)
    assert await collect(outer.resume("go", **opts)) == (["resumed with go"], [])


async def test_interrupt_ids_name_the_path_at_any_depth(saver: MemorySaver, collect: Any) -> None:
    @task
    async def leaf(_: Any):
        yield interrupt("leaf?")

    @task
    async def middle(_: Any):
        interrupt("middle?")
        async for partial, _, _ in leaf():
            yield partial

    @task("root")
    async def root(_: Any):
        async for partial, _, _ in middle():
            yield partial
        async for partial, _, _ in middle():
            yield partial

    opts: dict[str, Any] = {"run_id": "paths", "checkpointer": saver}
    ids = []
    _, intrs = await collect(root(**opts))
    while intrs:
        ids.append(intrs[0].id)
        _, intrs = await collect(root.resume(len(ids), **opts))
    assert ids == [
        "root/middle#0/interrupt#0",
        "root/middle#0/leaf#1/interrupt#0",
        "root/middle#1/interrupt#0",
        "root/middle#1/leaf#1/interrupt#0",
    ]


async def test_a_child_given_its_own_run_options_is_still_part_of_the_run(
    saver: MemorySaver, collect: Any
) -> None:
    other = MemorySaver()

    @task
    async def inner(q: str, ctx: TaskContext):
        assert ctx.run_id == "outer-run"
        yield f"(inner) {q} {ctx.interrupt('stop')}"

    @task
    async def outer(q: str):
        async for msg, _, _ in inner(q, run_id="inner-run", checkpointer=other):
            yield msg

    opts: dict[str, Any] = {"run_id": "outer-run", "checkpointer": saver}
    assert await collect(outer("q", **opts)) == (
        [],
        [Interrupt("stop", "outer/inner#0/interrupt#0")],
    )
    assert saver.load("inner-run") is None
    assert len(other) == 0
    assert await collect(outer.resume("go", **opts)) == (["(inner) q go"], [])


async def test_handling_a_nested_interrupt_in_the_parent_is_never_reached(
    saver: MemorySaver, collect: Any
) -> None:
    reached: list[Any] = []

    @task
    async def inner(_: Any, ctx: TaskContext):
        yield "before"
        yield ctx.interrupt("stop")

    @task
    async def outer(_: Any, ctx: TaskContext):
        async for msg, _, intr in inner():
            if msg:
                yield msg
            if intr:  # the seed's idiom: the nested interrupt already paused the run
                reached.append(intr)
                ctx.interrupt(intr)

    opts: dict[str, Any] = {"run_id": "handled", "checkpointer": saver}
    assert await collect(outer(**opts)) == (
        ["before"],
        [Interrupt("stop", "outer/inner#0/interrupt#0")],
    )
    assert await collect(outer.resume("go", **opts)) == (["go"], [])
    assert reached == []


async def test_a_parent_catching_exception_cannot_swallow_a_nested_pause(
    saver: MemorySaver, collect: Any
) -> None:
    @task
    async def child(_: Any) -> str:
        return interrupt("approve?")

    @task
    async def parent(_: Any):
        try:
            verdict = await child.invoke()
        except Exception:
            verdict = "swallowed"
        yield verdict

    opts: dict[str, Any] = {"run_id": "swallow", "checkpointer": saver}
    assert await collect(parent(**opts)) == (
        [],
        [Interrupt("approve?", "parent/child#0/interrupt#0")],
    )
    assert await collect(parent.resume("yes", **opts)) == (["yes"], [])


async def test_a_parent_can_handle_its_childs_failure(saver: MemorySaver, collect: Any) -> None:
    @task
    async def child(_: Any):
        yield "child started"
        raise ValueError("child failed")

    @task
    async def parent(_: Any):
        try:
            async for partial, _, _ in child():
                yield partial
        except ValueError as exc:
            yield f"handled: {exc}"
        yield f"then {interrupt('continue?')}"

    opts: dict[str, Any] = {"run_id": "handles", "checkpointer": saver}
    assert await collect(parent(**opts)) == (
        ["child started", "handled: child failed"],
        [Interrupt("continue?", "parent/interrupt#1")],
    )
    assert await collect(parent.resume("yes", **opts)) == (["then yes"], [])


async def test_finally_blocks_of_nested_tasks_run_on_pause(collect: Any) -> None:
    log: list[str] = []

    @task
    async def leaf(_: Any) -> None:
        try:
            interrupt("deep")
        finally:
            log.append("leaf")

    @task
    async def middle(_: Any) -> None:
        try:
            await leaf.invoke()
        finally:
            log.append("middle")

    @task
    async def root(_: Any):
        try:
            await middle.invoke()
            yield "unreachable"
        finally:
            log.append("root")

    assert await collect(root()) == ([], [Interrupt("deep", "root/middle#0/leaf#0/interrupt#0")])
    assert log == ["leaf", "middle", "root"]


# -- children running concurrently -----------------------------------------------------


async def test_children_under_gather_stream_and_return(collect: Any) -> None:
    @task
    async def child(name: str) -> str:
        emit(f"({name}) 1")
        await asyncio.sleep(0)
        emit(f"({name}) 2")
        return f"({name}) done"

    @task
    async def parent(_: Any) -> list[str]:
        results = await asyncio.gather(child.invoke("a"), child.invoke("b"))
        return [*results, "parent done"]

    stream = parent()
    assert await collect(stream) == ([], [])
    assert stream.result == ["(a) done", "(b) done", "parent done"]


async def test_children_in_a_task_group(saver: MemorySaver, collect: Any) -> None:
    @task
    async def child(name: str) -> str:
        await asyncio.sleep(0)
        return name.upper()

    @task
    async def parent(names: list[str]):
        async with asyncio.TaskGroup() as group:
            jobs = [group.create_task(child.invoke(name)) for name in names]
        yield [job.result() for job in jobs]
        yield interrupt("more?")

    opts: dict[str, Any] = {"run_id": "group", "checkpointer": saver}
    assert await collect(parent(["a", "b", "c"], **opts)) == (
        [["A", "B", "C"]],
        [Interrupt("more?", "parent/interrupt#3")],
    )
    assert await collect(parent.resume("no", **opts)) == (["no"], [])


@task
async def approve(item: str) -> bool:
    return interrupt(f"approve {item}?") == "yes"


@task
async def review(items: list[str]):
    verdicts = await asyncio.gather(*(approve.invoke(item) for item in items))
    yield dict(zip(items, verdicts, strict=True))


INVOICE = Interrupt("approve invoice?", "review/approve#0/interrupt#0")
REFUND = Interrupt("approve refund?", "review/approve#1/interrupt#0")


async def test_parallel_pauses_end_the_stream_with_one_event_each(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "review", "checkpointer": saver}
    events = [event async for event in review(["invoice", "refund"], **opts)]

    assert [(event.partial, event.interrupt) for event in events] == [
        (None, INVOICE),
        (None, REFUND),
    ]
    assert events[-1].snapshot.pending == (INVOICE, REFUND)
    stored = saver.load("review")
    assert stored is not None
    assert stored.pending == (INVOICE.id, REFUND.id)


async def test_resume_with_two_pending_is_ambiguous(saver: MemorySaver, collect: Any) -> None:
    opts: dict[str, Any] = {"run_id": "review", "checkpointer": saver}
    await collect(review(["invoice", "refund"], **opts))

    with pytest.raises(AmbiguousResumeError, match="'review'") as caught:
        await collect(review.resume("yes", **opts))
    assert caught.value.pending == [INVOICE.id, REFUND.id]
    assert isinstance(caught.value, TinyTasksError)

    # nothing was recorded: the run still waits on both
    assert await collect(review(**opts)) == ([], [INVOICE, REFUND])


async def test_answers_by_id_any_subset_at_a_time(saver: MemorySaver, collect: Any) -> None:
    opts: dict[str, Any] = {"run_id": "review", "checkpointer": saver}
    await collect(review(["invoice", "refund"], **opts))

    assert await collect(review(Command(answers={REFUND.id: "no"}), **opts)) == ([], [INVOICE])
    assert await collect(review.resume("yes", **opts)) == (
        [{"invoice": True, "refund": False}],
        [],
    )


async def test_answering_every_pending_interrupt_at_once(saver: MemorySaver) -> None:
    opts: dict[str, Any] = {"run_id": "review", "checkpointer": saver}
    [event async for event in review(["invoice", "refund"], **opts)]
    answers = {INVOICE.id: "no", REFUND.id: "yes"}
    events = [event async for event in review(Command(answers=answers), **opts)]
    assert [event.partial for event in events] == [{"invoice": False, "refund": True}]
    assert events[0].snapshot.resume == ["no", "yes"]


async def test_an_unknown_interrupt_id_is_refused(saver: MemorySaver, collect: Any) -> None:
    opts: dict[str, Any] = {"run_id": "review", "checkpointer": saver}
    await collect(review(["invoice", "refund"], **opts))

    with pytest.raises(UnknownInterruptError, match="'review/nope#0'") as caught:
        await collect(review(Command(answers={"review/nope#0": "yes"}), **opts))
    assert caught.value.run_id == "review"
    assert caught.value.unknown == ["review/nope#0"]
    assert caught.value.pending == [INVOICE.id, REFUND.id]
    assert await collect(review(**opts)) == ([], [INVOICE, REFUND])


async def test_parallel_pauses_are_reported_in_site_order_not_completion_order(
    saver: MemorySaver, collect: Any
) -> None:
    second_asked = asyncio.Event()

    @task
    async def first(_: Any) -> str:
        await second_asked.wait()  # asks after its sibling
        return interrupt("first?")

    @task
    async def second(_: Any) -> str:
        second_asked.set()
        return interrupt("second?")

    @task("both")
    async def both(_: Any):
        yield await asyncio.gather(first.invoke(), second.invoke())

    opts: dict[str, Any] = {"run_id": "order", "checkpointer": saver}
    assert await collect(both(**opts)) == (
        [],
        [
            Interrupt("first?", "both/first#0/interrupt#0"),
            Interrupt("second?", "both/second#1/interrupt#0"),
        ],
    )
    answers = {"both/first#0/interrupt#0": 1, "both/second#1/interrupt#0": 2}
    assert await collect(both(Command(answers=answers), **opts)) == ([[1, 2]], [])


async def test_parallel_pauses_in_a_task_group(saver: MemorySaver, collect: Any) -> None:
    @task
    async def ask(question: str) -> str:
        return interrupt(question)

    @task("group")
    async def group(_: Any):
        async with asyncio.TaskGroup() as tg:
            left = tg.create_task(ask.invoke("left?"))
            right = tg.create_task(ask.invoke("right?"))
        yield [left.result(), right.result()]

    opts: dict[str, Any] = {"run_id": "tg", "checkpointer": saver}
    left = Interrupt("left?", "group/ask#0/interrupt#0")
    right = Interrupt("right?", "group/ask#1/interrupt#0")
    assert await collect(group(**opts)) == ([], [left, right])
    assert await collect(group(Command(answers={right.id: "R"}), **opts)) == ([], [left])
    assert await collect(group.resume("L", **opts)) == ([["L", "R"]], [])


async def test_one_child_pausing_stops_its_running_siblings(
    saver: MemorySaver, collect: Any
) -> None:
    log: list[str] = []
    never = asyncio.Event()
    waiting = asyncio.Event()

    @task
    async def slow(_: Any) -> None:
        try:
            waiting.set()
            await never.wait()
        finally:
            log.append("slow finally")

    @task
    async def asks(_: Any) -> str:
        await waiting.wait()
        return interrupt("?")

    @task("parent")
    async def parent(_: Any):
        yield await asyncio.gather(slow.invoke(), asks.invoke())

    opts: dict[str, Any] = {"run_id": "siblings", "checkpointer": saver}
    assert await collect(parent(**opts)) == ([], [Interrupt("?", "parent/asks#1/interrupt#0")])
    assert log == ["slow finally"]


# -- recorded children ------------------------------------------------------------------


async def test_a_finished_child_is_not_executed_again_on_resume(
    saver: MemorySaver, collect: Any
) -> None:
    executions: list[str] = []

    @task
    async def child(q: str):
        executions.append(q)
        yield f"child {q} 1"
        yield f"child {q} 2"

    @task
    async def parent(q: str):
        seen = []
        async for partial, _, _ in child(q):
            seen.append(partial)
            yield partial
        answer = interrupt("?")
        yield f"{answer} after {seen}"

    opts: dict[str, Any] = {"run_id": "recorded", "checkpointer": saver}
    assert await collect(parent("x", **opts)) == (
        ["child x 1", "child x 2"],
        [Interrupt("?", "parent/interrupt#1")],
    )
    assert await collect(parent.resume("ok", **opts)) == (
        ["ok after ['child x 1', 'child x 2']"],
        [],
    )
    assert executions == ["x"]


async def test_a_finished_childs_result_is_replayed(saver: MemorySaver) -> None:
    executions = 0

    @task
    async def child(q: str) -> str:
        nonlocal executions
        executions += 1
        emit("working")
        return q.upper()

    @task
    async def parent(q: str) -> list[str]:
        results = [await child.invoke(q)]
        results.append(interrupt("more?"))
        results.append(await child.invoke(q + "!"))
        return results

    opts: dict[str, Any] = {"run_id": "results", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        await parent.invoke("x", **opts)
    assert executions == 1
    assert await parent.invoke(Command(resume="yes"), **opts) == ["X", "yes", "X!"]
    assert executions == 2


async def test_a_child_with_record_false_is_executed_again(
    saver: MemorySaver, collect: Any
) -> None:
    executions: list[str] = []

    @task(record=False)
    async def child(q: str):
        executions.append(q)
        yield f"child {q}"

    @task
    async def parent(q: str):
        async for partial, _, _ in child(q):
            yield partial
        yield f"parent {interrupt('?')}"

    opts: dict[str, Any] = {"run_id": "unrecorded", "checkpointer": saver}
    assert await collect(parent("x", **opts)) == (
        ["child x"],
        [Interrupt("?", "parent/interrupt#1")],
    )
    assert await collect(parent.resume("ok", **opts)) == (["parent ok"], [])
    assert executions == ["x", "x"]


async def test_finished_children_under_gather_are_replayed_by_site(
    saver: MemorySaver, collect: Any
) -> None:
    executions: list[str] = []
    b_done = asyncio.Event()

    @task
    async def child(name: str) -> str:
        if name == "a":
            await b_done.wait()  # finishes second on the first run
        executions.append(name)
        if name == "b":
            b_done.set()
        return f"result {name}"

    @task
    async def parent(_: Any):
        results = await asyncio.gather(child.invoke("a"), child.invoke("b"))
        yield results
        yield interrupt("?")

    opts: dict[str, Any] = {"run_id": "gathered", "checkpointer": saver}
    assert await collect(parent(**opts)) == (
        [["result a", "result b"]],
        [Interrupt("?", "parent/interrupt#2")],
    )
    assert executions == ["b", "a"]
    assert await collect(parent.resume("done", **opts)) == (["done"], [])
    assert executions == ["b", "a"]


async def test_a_child_paused_mid_stream_runs_again_but_delivers_once(
    saver: MemorySaver, collect: Any
) -> None:
    entries = 0

    @task
    async def child(_: Any):
        nonlocal entries
        entries += 1
        yield "t0"
        yield "t1"
        yield interrupt("confirm?")
        yield "t2"

    @task
    async def parent(_: Any, ctx: TaskContext):
        async for token, _, intr in child():
            if token:
                yield token
            if intr:
                ctx.interrupt(intr)

    opts: dict[str, Any] = {"run_id": "mid", "checkpointer": saver}
    assert await collect(parent(**opts)) == (
        ["t0", "t1"],
        [Interrupt("confirm?", "parent/child#0/interrupt#0")],
    )
    assert await collect(parent.resume("yes", **opts)) == (["yes", "t2"], [])
    assert entries == 2


class Handle:
    """A partial the default codec refuses to store."""

    def __init__(self, n: int) -> None:
        self.n = n


async def test_a_child_with_unstorable_partials_suggests_record_false(
    saver: MemorySaver, collect: Any
) -> None:
    @task("child")
    async def child(_: Any):
        yield Handle(1)

    @task("parent")
    async def parent(_: Any):
        async for handle, _, _ in child():
            yield handle.n

    with pytest.raises(SerializationError, match="record=False") as caught:
        await collect(parent(run_id="handles", checkpointer=saver))
    assert "'parent/child#0'" in str(caught.value)
    assert "Handle" in str(caught.value)


async def test_a_child_with_record_false_may_stream_anything(
    saver: MemorySaver, collect: Any
) -> None:
    @task("child", record=False)
    async def child(_: Any):
        yield Handle(1)
        yield Handle(2)

    @task("parent")
    async def parent(_: Any):
        async for handle, _, _ in child():
            yield handle.n
        yield interrupt("?")

    opts: dict[str, Any] = {"run_id": "unrecorded-handles", "checkpointer": saver}
    assert await collect(parent(**opts)) == ([1, 2], [Interrupt("?", "parent/interrupt#1")])
    assert await collect(parent.resume("ok", **opts)) == (["ok"], [])


async def test_aclose_stops_children_running_under_gather() -> None:
    log: list[str] = []
    never = asyncio.Event()
    both_waiting = asyncio.Barrier(3)

    @task
    async def child(name: str) -> None:
        try:
            await both_waiting.wait()
            await never.wait()
        finally:
            log.append(f"{name} finally")

    @task
    async def parent(_: Any) -> None:
        try:
            emit("started")
            await asyncio.gather(child.invoke("a"), child.invoke("b"))
        finally:
            log.append("parent finally")

    stream = parent()
    assert (await anext(stream)).partial == "started"
    await both_waiting.wait()
    await stream.aclose()
    assert sorted(log) == ["a finally", "b finally", "parent finally"]
