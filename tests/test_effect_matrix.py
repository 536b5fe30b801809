"""Generated programs built from every effect, on every saver and both delivery modes.

Hypothesis draws short task programs: a coroutine or async generator task whose body is
a sequence of effects (yield, emit, step, interrupt, a recorded child, a `record=False`
child, `asyncio.gather` of two children, an `asyncio.TaskGroup` of two children), where
children are programs of their own. Each program runs

* once as the reference: on MemorySaver, every interrupt answered in place by a
  deterministic function of its value (no pause), and then
* on each saver, in each delivery mode, pausing at its interrupts and resumed with every
  pending interrupt answered the same way, until it is done.

Every run must end within `BOUND` seconds (a hang is the bug, not a slow machine), and
give exactly the reference's partials (in order, each once), result and side effects
(each step's function ran once per step site). Steps yield to the loop before their side
effect, so siblings interleave with them.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# This folder and tests/savers are not packages: import their helpers by path.
for _folder in (Path(__file__).parent, Path(__file__).parent / "savers"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from dict_saver import DictSaver  # noqa: E402

from tiny_tasks import Command, MemorySaver, TaskContext, emit, interrupt, task  # noqa: E402
from tiny_tasks.savers import PostgresSaver, SqliteSaver  # noqa: E402

BOUND = 20.0  # seconds for one program to run to its end, pauses and all
EXAMPLES = 100  # per saver kind; each example runs in both delivery modes
DELIVERIES = ("exactly_once", "at_least_once")

# -- programs -------------------------------------------------------------------------------

# An effect, once numbered: ("yield"|"emit"|"step"|"interrupt", n)
#   | ("child", n, kind, record, body) | ("gather"|"taskgroup", n, (kind, body), (kind, body))
Body = tuple[Any, ...]
KINDS = ("coroutine", "generator")
LEAVES = ("yield", "emit", "step", "interrupt")


def _bodies(depth: int) -> st.SearchStrategy[list[Any]]:
    leaf = st.sampled_from(LEAVES).map(lambda name: (name,))
    if depth == 0:
        return st.lists(leaf, max_size=3)
    sub = st.tuples(st.sampled_from(KINDS), _bodies(depth - 1))
    effect = st.one_of(
        leaf,
        st.tuples(st.just("child"), sub, st.booleans()),
        st.tuples(st.sampled_from(["gather", "taskgroup"]), sub, sub),
    )
    return st.lists(effect, max_size=4)


def _number(body: list[Any], counter: Iterator[int]) -> Body:
    """Give every effect a unique number (its partials, questions and steps are named by it)."""
    numbered: list[Any] = []
    for effect in body:
        name, n = effect[0], next(counter)
        if name == "child":
            (kind, sub), record = effect[1], effect[2]
            numbered.append((name, n, kind, record, _number(sub, counter)))
        elif name in ("gather", "taskgroup"):
            pair = tuple((kind, _number(sub, counter)) for kind, sub in effect[1:])
            numbered.append((name, n, *pair))
        else:
            numbered.append((name, n))
    return tuple(numbered)


def _program(drawn: tuple[str, list[Any]]) -> tuple[str, Body]:
    kind, body = drawn
    counter = iter(range(1_000))
    return kind, _number(body, counter)


PROGRAMS = st.tuples(st.sampled_from(KINDS), _bodies(2)).map(_program)

# -- the interpreter -----------------------------------------------------------------------

side_effects: Counter[int] = Counter()
reference_mode = [False]


def answer(value: str) -> str:
    """How every interrupt is answered: a function of its value alone."""
    return "a" + value[1:]


async def effect_step(n: int) -> int:
    await asyncio.sleep(0)  # let siblings run meanwhile
    side_effects[n] += 1
    return n * 10


async def interpret(body: Body, ctx: TaskContext, results: list[Any]) -> AsyncIterator[Any]:
    """Run `body`'s effects in order; yield the partials to stream, collect the results."""
    for effect in body:
        name, n = effect[0], effect[1]
        if name == "yield":
            yield f"y{n}"
            results.append(n)
        elif name == "emit":
            emit(f"e{n}")
            results.append(-n)
        elif name == "step":
            results.append(await ctx.step(effect_step, n))
        elif name == "interrupt":
            question = f"q{n}"
            results.append(answer(question) if reference_mode[0] else interrupt(question))
        elif name == "child":
            _, _, kind, record, sub = effect
            stream = CHILDREN[kind, record](sub)
            async for partial, _, _ in stream:
                yield partial
            results.append(stream.result)
        elif name == "gather":
            (kind1, sub1), (kind2, sub2) = effect[2], effect[3]
            first = CHILDREN[kind1, True].invoke(sub1)
            second = CHILDREN[kind2, True].invoke(sub2)
            results.append(list(await asyncio.gather(first, second)))
        else:  # taskgroup
            (kind1, sub1), (kind2, sub2) = effect[2], effect[3]
            async with asyncio.TaskGroup() as group:
                one = group.create_task(CHILDREN[kind1, True].invoke(sub1))
                two = group.create_task(CHILDREN[kind2, True].invoke(sub2))
            results.append([one.result(), two.result()])


async def as_coroutine(body: Body, ctx: TaskContext) -> list[Any]:
    results: list[Any] = []
    async for partial in interpret(body, ctx, results):
        emit(partial)
    return results


async def as_generator(body: Body, ctx: TaskContext) -> AsyncIterator[Any]:
    results: list[Any] = []
    async for partial in interpret(body, ctx, results):
        yield partial
    yield ["result", results]


CHILDREN: dict[tuple[str, bool], Any] = {
    ("coroutine", True): task("child", as_coroutine),
    ("generator", True): task("child", as_generator),
    ("coroutine", False): task("loose", as_coroutine, record=False),
    ("generator", False): task("loose", as_generator, record=False),
}


def top_task(kind: str, body: Body) -> Any:
    """The program's top-level task (its body is bound here, not passed as the input)."""
    if kind == "coroutine":

        async def program(_: Any, ctx: TaskContext) -> list[Any]:
            return await as_coroutine(body, ctx)

        return task("program", program)

    async def program_gen(_: Any, ctx: TaskContext) -> AsyncIterator[Any]:
        async for partial in as_generator(body, ctx):
            yield partial

    return task("program", program_gen)


async def drive(program: Any, saver: Any, delivery: Any) -> tuple[list[Any], Any, Counter[int]]:
    """Run to the end, answering every pending interrupt; partials of all attempts, the
    result, and how often each step's function ran."""
    side_effects.clear()
    run_id = uuid.uuid4().hex
    partials: list[Any] = []
    given: Any = None
    async with asyncio.timeout(BOUND):
        for _ in range(200):
            stream = program(given, run_id=run_id, checkpointer=saver, delivery=delivery)
            pending = []
            async for partial, _, intr in stream:
                if intr is None:
                    assert not pending, "a partial after an interrupt event"
                    partials.append(partial)
                else:
                    pending.append(intr)
            if not pending:
                return partials, stream.result, Counter(side_effects)
            given = Command(answers={i.id: answer(i.value) for i in pending})
    raise AssertionError("the program did not finish in 200 attempts")


async def reference(program: Any) -> tuple[list[Any], Any, Counter[int]]:
    reference_mode[0] = True
    try:
        return await drive(program, MemorySaver(), "exactly_once")
    finally:
        reference_mode[0] = False


def step_sites(body: Body) -> int:
    """How many step effects the program has (each must run exactly once)."""
    total = 0
    for effect in body:
        if effect[0] == "step":
            total += 1
        elif effect[0] == "child":
            total += step_sites(effect[4])
        elif effect[0] in ("gather", "taskgroup"):
            total += step_sites(effect[2][1]) + step_sites(effect[3][1])
    return total


# -- savers ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "dict", "sqlite", "postgres"])
async def matrix_saver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """One saver for all of a test's examples (each example uses a fresh run id)."""
    if request.param == "memory":
        yield MemorySaver()
    elif request.param == "dict":
        yield DictSaver()
    elif request.param == "sqlite":
        async with SqliteSaver(tmp_path / "matrix.db") as sqlite:
            yield sqlite
    else:
        async with PostgresSaver(request.getfixturevalue("postgres_dsn")) as postgres:
            await postgres.setup()
            yield postgres


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=PROGRAMS)
async def test_every_program_matches_its_reference(
    matrix_saver: Any, drawn: tuple[str, Body]
) -> None:
    kind, body = drawn
    program = top_task(kind, body)
    expected_partials, expected_result, expected_effects = await reference(program)
    assert sorted(expected_effects.values()) == [1] * step_sites(body)
    for delivery in DELIVERIES:
        partials, result, effects = await drive(program, matrix_saver, delivery)
        assert partials == expected_partials, delivery
        assert result == expected_result, delivery
        assert effects == expected_effects, delivery
