"""Steps: calls recorded once per run, replayed afterwards, retried, timed out, checked."""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
import threading
from typing import Any

import pytest

from tiny_tasks import (
    Command,
    Interrupt,
    MemorySaver,
    ReplayMismatchError,
    RetryPolicy,
    SerializationError,
    StepFailedError,
    TaskContext,
    TaskDefinitionError,
    TaskInterrupted,
    TinyTasksError,
    get_run,
    interrupt,
    step,
    task,
)


class PaymentDeclined(Exception):
    """A module-level error type: replay rebuilds it as itself."""


NO_WAIT = RetryPolicy(attempts=3, initial_delay=0, jitter=False)


# -- once per run ---------------------------------------------------------------------


async def test_ctx_step_runs_once_across_pause_and_resume(saver: MemorySaver, collect: Any) -> None:
    calls: list[int] = []

    async def charge(amount: int) -> str:
        calls.append(amount)
        return f"receipt-{len(calls)}"

    @task
    async def checkout(amount: int, ctx: TaskContext):
        receipt = await ctx.step(charge, amount)
        yield f"charged {amount}: {receipt}"
        yield f"shipping to {interrupt('address?')}"

    opts: dict[str, Any] = {"run_id": "order", "checkpointer": saver}
    assert await collect(checkout(30, **opts)) == (
        ["charged 30: receipt-1"],
        [Interrupt("address?", "checkout/interrupt#1")],
    )
    assert await collect(checkout.resume("1 Main St", **opts)) == (["shipping to 1 Main St"], [])
    assert calls == [30]


async def test_ctx_step_with_a_sync_function_and_keyword_arguments(
    saver: MemorySaver, collect: Any
) -> None:
    calls: list[tuple[int, int]] = []

    def power(base: int, *, exponent: int) -> int:
        calls.append((base, exponent))
        return base**exponent

    @task
    async def compute(_: Any, ctx: TaskContext):
        value = await ctx.step(power, 2, exponent=10)
        yield value + interrupt("add?")

    opts: dict[str, Any] = {"run_id": "power", "checkpointer": saver}
    await collect(compute(**opts))
    assert await collect(compute.resume(1, **opts)) == ([1025], [])
    assert calls == [(2, 10)]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_step_decorator_runs_once(kind: str, saver: MemorySaver, collect: Any) -> None:
    calls: list[str] = []

    async def fetch_async(url: str) -> dict[str, str]:
        calls.append(url)
        return {"url": url, "body": "hello"}

    def fetch_sync(url: str) -> dict[str, str]:
        calls.append(url)
        return {"url": url, "body": "hello"}

    fetch = step(fetch_async if kind == "async" else fetch_sync)

    @task
    async def crawl(url: str):
        page = await fetch(url)
        yield page["body"]
        yield interrupt("next?")

    opts: dict[str, Any] = {"run_id": "crawl", "checkpointer": saver}
    assert await collect(crawl("https://example.org", **opts)) == (
        ["hello"],
        [Interrupt("next?", "crawl/interrupt#1")],
    )
    assert await collect(crawl.resume("stop", **opts)) == (["stop"], [])
    assert calls == ["https://example.org"]


async def test_step_decorator_keeps_the_function_name_and_doc() -> None:
    @step
    async def lookup(key: str) -> str:
        """Look a key up."""
        return key

    assert lookup.__name__ == "lookup"
    assert lookup.__doc__ == "Look a key up."


async def test_a_step_outside_a_task_simply_runs() -> None:
    calls: list[int] = []

    @step
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert await double(4) == 8
    assert await double(4) == 8
    assert calls == [4, 4]


async def test_steps_without_a_checkpointer_run_every_time(collect: Any) -> None:
    calls: list[int] = []

    @step
    def record(x: int) -> int:
        calls.append(x)
        return x

    @task
    async def job(_: Any):
        yield await record(1)

    await collect(job())
    await collect(job())
    assert calls == [1, 1]


async def test_a_re_attached_run_does_not_run_its_steps_again(
    saver: MemorySaver, collect: Any
) -> None:
    calls = 0

    @step
    def side_effect() -> int:
        nonlocal calls
        calls += 1
        return calls

    @task
    async def job(_: Any):
        for _ in range(3):
            yield await side_effect()

    opts: dict[str, Any] = {"run_id": "steps-attach", "checkpointer": saver}
    stream = job(**opts)
    assert (await anext(stream)).partial == 1
    await stream.aclose()
    assert await collect(job(**opts)) == ([2, 3], [])
    assert calls == 3


# -- retries, failures, timeouts ------------------------------------------------------------


async def test_retries_until_success_and_records_the_result(
    saver: MemorySaver, collect: Any
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"attempt {calls} failed")
        return "ok"

    @task
    async def job(_: Any, ctx: TaskContext):
        yield await ctx.step(flaky, retry=NO_WAIT)
        yield interrupt("again?")

    opts: dict[str, Any] = {"run_id": "retry", "checkpointer": saver}
    assert await collect(job(**opts)) == (["ok"], [Interrupt("again?", "job/interrupt#1")])
    assert calls == 3
    assert await collect(job.resume("no", **opts)) == (["no"], [])
    assert calls == 3


async def test_step_decorator_with_a_retry_policy() -> None:
    calls = 0

    @step(retry=NO_WAIT)
    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError("not yet")
        return calls

    @task
    async def job(_: Any) -> int:
        return await flaky()

    assert await job.invoke() == 3


async def test_an_error_that_survives_retries_is_recorded_and_replayed(
    saver: MemorySaver, collect: Any
) -> None:
    calls = 0

    async def charge(amount: int) -> str:
        nonlocal calls
        calls += 1
        raise PaymentDeclined(f"card declined for {amount}")

    failures: list[BaseException] = []

    @task
    async def checkout(amount: int, ctx: TaskContext):
        try:
            await ctx.step(charge, amount, retry=NO_WAIT)
        except PaymentDeclined as exc:
            failures.append(exc)
        yield f"retry with another card? {interrupt('card?')}"

    opts: dict[str, Any] = {"run_id": "declined", "checkpointer": saver}
    await collect(checkout(30, **opts))
    assert calls == 3

    assert await collect(checkout.resume("yes", **opts)) == (
        ["retry with another card? yes"],
        [],
    )
    assert calls == 3
    assert [(type(exc), str(exc)) for exc in failures] == [
        (PaymentDeclined, "card declined for 30"),
        (PaymentDeclined, "card declined for 30"),
    ]


async def test_a_builtin_error_is_replayed_as_itself(saver: MemorySaver, collect: Any) -> None:
    calls = 0

    def parse(text: str) -> int:
        nonlocal calls
        calls += 1
        return int(text)

    caught: list[tuple[type[BaseException], str]] = []

    @task
    async def job(text: str, ctx: TaskContext):
        try:
            await ctx.step(parse, text)
        except ValueError as exc:
            caught.append((type(exc), str(exc)))
        yield interrupt("?")

    opts: dict[str, Any] = {"run_id": "builtin", "checkpointer": saver}
    await collect(job("seven", **opts))
    await collect(job.resume(1, **opts))
    assert calls == 1
    message = "invalid literal for int() with base 10: 'seven'"
    assert caught == [(ValueError, message), (ValueError, message)]


async def test_an_error_of_an_unimportable_type_replays_as_step_failed(
    saver: MemorySaver, collect: Any
) -> None:
    class LocalError(Exception):
        pass

    def explode() -> None:
        raise LocalError("local trouble")

    caught: list[BaseException] = []

    @task("job")
    async def job(_: Any, ctx: TaskContext):
        try:
            await ctx.step(explode)
        except Exception as exc:
            caught.append(exc)
        yield interrupt("?")

    opts: dict[str, Any] = {"run_id": "local", "checkpointer": saver}
    await collect(job(**opts))
    await collect(job.resume(1, **opts))

    first, replayed = caught
    assert isinstance(first, LocalError)
    assert isinstance(replayed, StepFailedError)
    assert isinstance(replayed, TinyTasksError)
    assert replayed.site_id == "job/explode#0"
    assert "LocalError" in str(replayed)
    assert "local trouble" in str(replayed)


async def test_an_error_not_in_retry_on_is_not_retried() -> None:
    calls = 0

    def strict() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("missing")

    @task
    async def job(_: Any, ctx: TaskContext) -> None:
        policy = RetryPolicy(attempts=5, initial_delay=0, jitter=False, retry_on=(ConnectionError,))
        await ctx.step(strict, retry=policy)

    with pytest.raises(KeyError):
        await job.invoke()
    assert calls == 1


async def test_a_failed_step_that_is_not_caught_fails_the_run(saver: MemorySaver) -> None:
    @step(retry=NO_WAIT)
    def broken() -> None:
        raise PaymentDeclined("no")

    @task
    async def job(_: Any) -> None:
        await broken()

    with pytest.raises(PaymentDeclined, match="no"):
        await job.invoke(run_id="fails", checkpointer=saver)
    assert saver.load("fails") is None


async def test_retry_policy_delays() -> None:
    policy = RetryPolicy(attempts=4, initial_delay=0.5, multiplier=2, max_delay=1.5, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    jittered = RetryPolicy(initial_delay=1, jitter=True)
    assert all(0 <= jittered.delay(1) <= 1 for _ in range(20))
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


async def test_a_step_timeout_raises_timeout_error() -> None:
    never = asyncio.Event()
    cancelled: list[bool] = []

    async def hangs() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    @task
    async def job(_: Any, ctx: TaskContext) -> None:
        await ctx.step(hangs, timeout=0.01)

    with pytest.raises(TimeoutError):
        await job.invoke()
    assert cancelled == [True]


async def test_a_timeout_applies_to_each_attempt() -> None:
    calls = 0
    never = asyncio.Event()

    @step(retry=NO_WAIT, timeout=0.01)
    async def slow_then_fast() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            await never.wait()
        return "fast"

    @task
    async def job(_: Any) -> str:
        return await slow_then_fast()

    assert await job.invoke() == "fast"
    assert calls == 3


# -- concurrency -----------------------------------------------------------------------------


async def test_concurrent_steps_keep_their_identity_whatever_order_they_finish(
    saver: MemorySaver, collect: Any
) -> None:
    calls: list[str] = []
    b_finished = asyncio.Event()

    async def fetch(name: str) -> str:
        if name == "a":
            await b_finished.wait()  # "a" finishes after "b"
        calls.append(name)
        if name == "b":
            b_finished.set()
        return f"page {name}"

    @task
    async def crawl(_: Any, ctx: TaskContext):
        pages = await asyncio.gather(ctx.step(fetch, "a"), ctx.step(fetch, "b"))
        yield pages
        yield interrupt("more?")

    opts: dict[str, Any] = {"run_id": "crawl", "checkpointer": saver}
    assert await collect(crawl(**opts)) == (
        [["page a", "page b"]],
        [Interrupt("more?", "crawl/interrupt#2")],
    )
    assert calls == ["b", "a"]
    assert await collect(crawl.resume("no", **opts)) == (["no"], [])
    assert calls == ["b", "a"]


async def test_concurrent_steps_in_concurrent_children(saver: MemorySaver, collect: Any) -> None:
    calls: list[str] = []

    @step
    async def work(name: str) -> str:
        await asyncio.sleep(0)
        calls.append(name)
        return name.upper()

    @task
    async def child(name: str) -> str:
        return await work(name) + interrupt(f"{name}?")

    @task("parent")
    async def parent(_: Any):
        yield await asyncio.gather(child.invoke("x"), child.invoke("y"))

    opts: dict[str, Any] = {"run_id": "children", "checkpointer": saver}
    _, pending = await collect(parent(**opts))
    assert [intr.id for intr in pending] == [
        "parent/child#0/interrupt#1",
        "parent/child#1/interrupt#1",
    ]
    from tiny_tasks import Command

    answers = {pending[0].id: "1", pending[1].id: "2"}
    assert await collect(parent(Command(answers=answers), **opts)) == ([["X1", "Y2"]], [])
    assert sorted(calls) == ["x", "y"]


# -- what cannot be replayed --------------------------------------------------------------


async def test_a_step_replayed_with_other_arguments_is_a_mismatch(
    saver: MemorySaver, collect: Any
) -> None:
    amounts = iter([30, 40])
    calls: list[int] = []

    def charge(amount: int) -> str:
        calls.append(amount)
        return "receipt"

    @task("checkout")
    async def checkout(_: Any, ctx: TaskContext):
        await ctx.step(charge, next(amounts))  # not deterministic: the code is wrong
        yield interrupt("?")

    opts: dict[str, Any] = {"run_id": "args", "checkpointer": saver}
    await collect(checkout(**opts))

    with pytest.raises(ReplayMismatchError, match="'checkout/charge#0'") as caught:
        await collect(checkout.resume("x", **opts))
    assert caught.value.run_id == "args"
    assert caught.value.site_id == "checkout/charge#0"
    assert calls == [30]
    # the stored run is left untouched: still paused on the same interrupt
    stored = saver.load("args")
    assert stored is not None
    assert (stored.status, stored.pending) == ("paused", ("checkout/interrupt#1",))


async def test_a_non_serialisable_step_result_names_the_step_and_type(
    saver: MemorySaver, collect: Any
) -> None:
    class Connection:
        pass

    def connect() -> Connection:
        return Connection()

    @task("job")
    async def job(_: Any, ctx: TaskContext):
        yield "started"
        await ctx.step(connect)
        yield "unreachable"

    opts: dict[str, Any] = {"run_id": "unstorable", "checkpointer": saver}
    with pytest.raises(SerializationError) as caught:
        await collect(job(**opts))
    message = str(caught.value)
    assert "job/connect#0" in message
    assert "Connection" in message
    assert "'unstorable'" in message
    assert saver.load("unstorable") is not None


async def test_a_non_serialisable_step_result_is_fine_without_a_checkpointer() -> None:
    class Connection:
        pass

    @task
    async def job(_: Any, ctx: TaskContext) -> str:
        conn = await ctx.step(Connection)
        return type(conn).__name__

    assert await job.invoke() == "Connection"


def _fetch() -> str:
    return "data"


async def _step_then_interrupt(_: Any, ctx: TaskContext):  # type: ignore[no-untyped-def]
    yield await ctx.step(_fetch, name="fetch")
    yield interrupt("approve?")


async def _interrupt_then_step(_: Any, ctx: TaskContext):  # type: ignore[no-untyped-def]
    yield interrupt("approve first?")  # where the step used to be
    yield await ctx.step(_fetch, name="fetch")


async def test_a_step_site_now_holding_an_interrupt_is_a_mismatch(
    saver: MemorySaver, collect: Any
) -> None:
    old_code, new_code = _step_then_interrupt, _interrupt_then_step
    opts: dict[str, Any] = {"run_id": "edited", "checkpointer": saver}
    assert await collect(task("job", old_code)(**opts)) == (
        ["data"],
        [Interrupt("approve?", "job/interrupt#1")],
    )

    with pytest.raises(ReplayMismatchError, match="'job/interrupt#0'") as caught:
        await collect(task("job", new_code).resume("yes", **opts))
    assert "'job/fetch#0'" in str(caught.value)

    # the stored run is left untouched: the old code can still finish it
    stored = saver.load("edited")
    assert stored is not None
    assert (stored.status, stored.pending) == ("paused", ("job/interrupt#1",))
    assert await collect(task("job", old_code).resume("yes", **opts)) == (["yes"], [])


async def test_the_answer_of_a_refused_resume_does_not_count(
    saver: MemorySaver, collect: Any
) -> None:
    old_code, new_code = _step_then_interrupt, _interrupt_then_step
    opts: dict[str, Any] = {"run_id": "refused", "checkpointer": saver}
    await collect(task("job", old_code)(**opts))
    with pytest.raises(ReplayMismatchError):
        await collect(task("job", new_code).resume("wrong", **opts))

    events = [event async for event in task("job", old_code).resume("right", **opts)]
    assert [event.partial for event in events] == ["right"]
    assert events[0].snapshot.resume == ["right"]  # not ["wrong", "right"]


async def test_a_recorded_site_never_reached_again_is_a_mismatch(
    saver: MemorySaver, collect: Any
) -> None:
    def fetch() -> str:
        return "data"

    async def old_code(_: Any, ctx: TaskContext):
        yield await ctx.step(fetch)
        yield "more"

    async def new_code(_: Any, ctx: TaskContext):
        yield "no step any more"
        yield "more"

    opts: dict[str, Any] = {"run_id": "removed", "checkpointer": saver}
    stream = task("job", old_code)(**opts)
    assert (await anext(stream)).partial == "data"
    await stream.aclose()  # the consumer went away; the run is stored

    with pytest.raises(ReplayMismatchError, match="'job/fetch#0'"):
        await collect(task("job", new_code)(**opts))
    assert saver.load("removed") is not None


async def test_interrupt_inside_a_step_says_that_steps_cannot_pause() -> None:
    # A step is opaque (its result is recorded whole), so it cannot pause the run. The
    # error should say so, not that no task is running: the task is running.
    def asks() -> str:
        return interrupt("inside a step")

    @task
    async def job(_: Any, ctx: TaskContext) -> str:
        return await ctx.step(asks)

    with pytest.raises(RuntimeError, match="step"):
        await job.invoke()


# -- what a step is given is checked where it is given ----------------------------------------


async def test_step_with_a_name_names_the_site(saver: MemorySaver) -> None:
    calls: list[str] = []

    @step("fetch")
    async def get_page(url: str) -> str:
        calls.append(url)
        return f"<{url}>"

    @task
    async def crawl(url: str, ctx: TaskContext) -> str:
        page = await get_page(url)
        return f"{page} {ctx.interrupt('more?')}"

    opts: dict[str, Any] = {"run_id": "named", "checkpointer": saver}
    with pytest.raises(TaskInterrupted):
        await crawl.invoke("a.org", **opts)
    stored = await get_run(saver, "named")
    assert stored is not None
    assert stored.steps == 1
    assert await crawl.invoke(Command(resume="no"), **opts) == "<a.org> no"
    assert calls == ["a.org"]
    assert get_page.__name__ == "get_page"
    assert await get_page("outside") == "<outside>"  # outside a task it simply runs
    assert calls == ["a.org", "outside"]


async def test_step_options_of_a_decorated_function_hold_in_ctx_step(saver: MemorySaver) -> None:
    @step("lookup", retry=NO_WAIT)
    def flaky(key: str) -> str:
        attempts.append(key)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return key.upper()

    attempts: list[str] = []

    @task
    async def job(key: str, ctx: TaskContext) -> str:
        return await ctx.step(flaky, key)

    assert await job.invoke("k", run_id="opts", checkpointer=saver) == "K"
    assert attempts == ["k", "k", "k"]


@pytest.mark.parametrize("value", [42, "", None, [1]])
async def test_step_refuses_what_is_not_a_function(value: Any) -> None:
    if isinstance(value, str) or value is None:  # a name: the decorator form
        decorator = step(value)
        with pytest.raises(TaskDefinitionError, match="not callable"):
            decorator(42)  # type: ignore[call-overload]
        return
    with pytest.raises(TaskDefinitionError, match=r"step expects a function.*not callable"):
        step(value)


async def test_ctx_step_refuses_what_is_not_a_function() -> None:
    @task
    async def job(_: Any, ctx: TaskContext) -> None:
        await ctx.step("not a function")  # type: ignore[arg-type]

    with pytest.raises(TaskDefinitionError, match="not callable"):
        await job.invoke()


async def test_step_refuses_a_name_given_twice() -> None:
    with pytest.raises(TypeError, match="name twice"):
        step("one", name="two")  # type: ignore[call-overload]


BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"attempts": 0}, "RetryPolicy.attempts"),
    ({"attempts": 2.5}, "RetryPolicy.attempts"),
    ({"initial_delay": -0.1}, "RetryPolicy.initial_delay"),
    ({"initial_delay": math.inf}, "RetryPolicy.initial_delay"),
    ({"initial_delay": math.nan}, "RetryPolicy.initial_delay"),
    ({"max_delay": -1}, "RetryPolicy.max_delay"),
    ({"max_delay": math.inf}, "RetryPolicy.max_delay"),
    ({"multiplier": -2}, "RetryPolicy.multiplier"),
    ({"multiplier": 0.5}, "RetryPolicy.multiplier"),
    ({"multiplier": math.nan}, "RetryPolicy.multiplier"),
    ({"multiplier": math.inf}, "RetryPolicy.multiplier"),
    ({"initial_delay": "1"}, "RetryPolicy.initial_delay"),
]


@pytest.mark.parametrize(("fields", "named"), BAD_POLICIES, ids=lambda v: str(v))
def test_a_retry_policy_refuses_impossible_values(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        RetryPolicy(**fields)


def test_a_retry_policy_takes_one_exception_class_or_a_tuple() -> None:
    assert RetryPolicy(retry_on=ConnectionError).retry_on == (ConnectionError,)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_on"):
        RetryPolicy(retry_on=(ValueError, "oops"))  # type: ignore[arg-type]
    # Many attempts with a steep multiplier: the ceiling stays max_delay, no overflow.
    steep = RetryPolicy(attempts=5000, multiplier=10, max_delay=2, jitter=False)
    assert steep.delay(4999) == 2


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.inf, math.nan, "5"])
async def test_a_step_timeout_must_be_a_positive_number_of_seconds(timeout: Any) -> None:
    with pytest.raises(ValueError, match="step timeout must be a finite number of seconds > 0"):
        step(timeout=timeout)

    @task
    async def job(_: Any, ctx: TaskContext) -> None:
        await ctx.step(lambda: 1, timeout=timeout)

    with pytest.raises(ValueError, match="step timeout must be a finite number of seconds > 0"):
        await job.invoke()


# -- synchronous step functions run off the event loop -----------------------------------------


async def test_a_sync_step_does_not_block_the_event_loop(saver: MemorySaver) -> None:
    # The step waits for an event that only a coroutine on the loop sets: run on the
    # loop, the step would wait out its bound and fail.
    released = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    def blocking(key: str) -> str:
        seen.append("step started")
        loop.call_soon_threadsafe(started.set)
        assert released.wait(timeout=30), "the loop was blocked while the step ran"
        return key * 2

    async def other_run() -> None:
        await started.wait()
        seen.append("other coroutine ran")
        released.set()

    @task
    async def job(key: str, ctx: TaskContext) -> str:
        return await ctx.step(blocking, key)

    result, _ = await asyncio.gather(
        job.invoke("ab", run_id="blocking", checkpointer=saver), other_run()
    )
    assert result == "abab"
    assert seen == ["step started", "other coroutine ran"]


async def test_sync_steps_run_in_a_worker_thread_with_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    loop_thread = threading.get_ident()
    where: list[tuple[str, bool, str]] = []

    def record(label: str) -> str:
        where.append((label, threading.get_ident() == loop_thread, request_id.get()))
        return label

    @step("decorated")
    def decorated() -> str:
        return record("decorated")

    @step(thread=False)
    def on_the_loop() -> str:
        return record("on the loop")

    @task
    async def job(_: Any, ctx: TaskContext) -> list[str]:
        request_id.set("req-7")
        return [
            await ctx.step(record, "ctx.step"),
            await decorated(),
            await on_the_loop(),
            await ctx.step(record, "ctx.step thread=False", thread=False),
        ]

    assert await job.invoke() == ["ctx.step", "decorated", "on the loop", "ctx.step thread=False"]
    assert where == [
        ("ctx.step", False, "req-7"),
        ("decorated", False, "req-7"),
        ("on the loop", True, "req-7"),
        ("ctx.step thread=False", True, "req-7"),
    ]


async def test_a_sync_step_that_returns_an_awaitable_is_awaited_on_the_loop() -> None:
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        return key.upper()

    @task
    async def job(key: str, ctx: TaskContext) -> str:
        return await ctx.step(lambda: fetch(key), name="fetch")

    assert await job.invoke("x") == "X"
