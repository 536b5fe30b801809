"""Exactly-once by content: a re-run that streams something else is rewound, never spliced.

An agent streams `<start>`, then the tokens of a child task (a stand-in for an LLM that
answers differently every time it runs), then `<end>`. Its consumer stops after n
partials, for every n of the stream, and then re-attaches (and resumes, where the agent
asks first). The consumer applies `Snapshot.rewind` as documented: keep the first k
partials, replace the rest. Its final view must be one whole answer of the child, the
one that completed, and no position before the rewind may be delivered twice.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from saver_kinds import make_saver

from tiny_tasks import Command, Snapshot, TaskStream, interrupt, task
from tiny_tasks.errors import SerializationError
from tiny_tasks.savers import MemorySaver
from tiny_tasks.serde import EncryptedSerializer, JsonSerializer, generate_key

LOG_KINDS = ("memory", "sqlite", "postgres")
VOCABULARY = ("I ", "will ", "email ", "Bob ")  # few words: re-runs often share a prefix
SEEDS = {"memory": range(12), "sqlite": range(3), "postgres": range(2)}


@dataclass
class Model:
    """The child's answers: its attempt a in any run draws from Random(f"{seed}/{a}")."""

    seed: int
    answers: dict[str, list[list[str]]] = field(default_factory=dict)

    def answer(self, run_id: str) -> list[str]:
        attempt = len(self.answers.setdefault(run_id, []))
        rng = random.Random(f"{self.seed}/{attempt}")
        tokens = [rng.choice(VOCABULARY) for _ in range(rng.randint(2, 5))]
        self.answers[run_id].append(tokens)
        return tokens


MODEL = Model(0)


@task("llm")
async def llm(run_id: str):  # type: ignore[no-untyped-def]
    for token in MODEL.answer(run_id):
        yield token


@task("agent")
async def agent(spec: dict[str, Any]):  # type: ignore[no-untyped-def]
    yield "<start>"
    async for token, _, _ in llm(spec["run_id"]):
        yield token
    if spec["asks"]:
        interrupt("send it?")
    yield "<end>"


def whole(answer: list[str]) -> list[str]:
    return ["<start>", *answer, "<end>"]


@dataclass
class Consumer:
    """What a chat UI shows, and how often each position reached it."""

    view: list[str] = field(default_factory=list)
    times: Counter[int] = field(default_factory=Counter)
    rewinds: list[int] = field(default_factory=list)

    async def take(self, stream: TaskStream[Any, Any], limit: int | None = None) -> bool:
        """Consume `stream` (at most `limit` partials); True if it ended on an interrupt."""
        rewind: int | None = None
        taken = 0
        if limit == 0:
            await stream.aclose()
            return False
        async for partial, snapshot, intr in stream:
            if snapshot.rewind != rewind:
                assert rewind is None, f"a second rewind in one attempt: {snapshot.rewind}"
                rewind = snapshot.rewind
                assert rewind is not None
                assert rewind <= len(self.view)
                self.rewinds.append(rewind)
                del self.view[rewind:]
            if intr is not None:
                return True
            self.times[len(self.view)] += 1
            self.view.append(partial)
            taken += 1
            if taken == limit:
                await stream.aclose()
                return False
        assert stream.rewind == rewind or (rewind is None and stream.rewind is not None)
        if rewind is None and stream.rewind is not None:  # a shorter re-run that finished
            self.rewinds.append(stream.rewind)
            del self.view[stream.rewind :]
        return False


def expected_rewind(before: list[str], final: list[str]) -> int | None:
    """Where `final` first differs from the `before` prefix the consumer had."""
    for position, partial in enumerate(before):
        if position >= len(final) or final[position] != partial:
            return position
    return None


async def stop_and_reattach(saver: Any, run_id: str, asks: bool, n: int) -> Consumer:
    """Stop after n partials, then re-attach (and resume) until the run is over."""
    spec = {"run_id": run_id, "asks": asks}
    consumer = Consumer()
    paused = await consumer.take(agent(spec, run_id=run_id, checkpointer=saver), limit=n)
    before = list(consumer.view)
    attempts = 0
    while True:
        attempts += 1
        assert attempts < 5
        given: Any = Command(resume="yes") if paused else spec
        paused = await consumer.take(agent(given, run_id=run_id, checkpointer=saver))
        if paused and asks:
            # Paused with the whole answer shown: what the stream log holds is that view.
            stored = await _resolve(saver.load_partials(run_id))
            assert [data for _, data in stored] == [f'"{p}"'.encode() for p in consumer.view]
        if not paused:
            break
    final = whole(MODEL.answers[run_id][-1])
    assert consumer.view == final, f"spliced: {consumer.view} is not {final}"
    rewind = expected_rewind(before, final)
    assert consumer.rewinds == ([] if rewind is None else [rewind])
    first_new = len(before) if rewind is None else rewind
    assert all(consumer.times[p] == 1 for p in range(first_new)), consumer.times
    assert all(consumer.times[p] <= 2 for p in range(len(final))), consumer.times
    return consumer


@pytest.mark.parametrize("asks", [False, True], ids=["finishes", "asks-first"])
@pytest.mark.parametrize("kind", LOG_KINDS)
async def test_a_re_run_that_answers_otherwise_is_rewound_at_every_stop(
    kind: str, asks: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    saver = await make_saver(kind, request, tmp_path)
    seen: Counter[str] = Counter()
    MODEL.answers.clear()
    try:
        for seed in SEEDS[kind]:
            MODEL.seed = seed
            first = whole(Model(seed).answer("any"))  # every run's first answer is this
            length = len(first) - (1 if asks else 0)  # partials before the stream ends/asks
            for n in range(length + 1):
                run_id = f"s{seed}-n{n}"
                consumer = await stop_and_reattach(saver, run_id, asks, n)
                reran = len(MODEL.answers[run_id]) == 2
                seen["re-ran"] += reran
                seen["rewound"] += bool(consumer.rewinds)
                seen["rewound past 1"] += any(k > 1 for k in consumer.rewinds)
                seen["shorter"] += reran and len(MODEL.answers[run_id][1]) < n - 1
                assert reran == (2 <= n <= len(first) - 1)  # stopped inside the child
                if n <= 1:
                    assert consumer.rewinds == []  # nothing of the child was shown
    finally:
        await _close(saver)
    # The seeds are chosen so that every kind of re-run happens.
    assert seen["rewound"] >= 2, seen
    assert seen["rewound past 1"] >= 1, seen
    if kind == "memory":
        assert seen["shorter"] >= 1, seen


@pytest.mark.parametrize("kind", LOG_KINDS)
async def test_a_deterministic_task_is_never_rewound(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    @task("steady")
    async def steady(count: int):  # type: ignore[no-untyped-def]
        async for word, _, _ in words(count):
            yield word
        interrupt("more?")
        yield "done"

    @task("words")
    async def words(count: int):  # type: ignore[no-untyped-def]
        for number in range(count):
            yield {"word": number, "tags": {"a", "b"}}

    saver = await make_saver(kind, request, tmp_path)
    try:
        for n in range(7):
            run_id = f"n{n}"
            stream = steady(5, run_id=run_id, checkpointer=saver)
            got = await first_events(stream, n)
            rest = [event async for event in steady(5, run_id=run_id, checkpointer=saver)]
            resumed = steady.resume("go", run_id=run_id, checkpointer=saver)
            rest += [event async for event in resumed]
            events = got + rest
            assert [e.partial for e in events if e.interrupt is None] == [
                *({"word": i, "tags": {"a", "b"}} for i in range(5)),
                "done",
            ]
            assert [e.snapshot.rewind for e in events] == [None] * len(events)
    finally:
        await _close(saver)


async def test_the_divergence_is_logged_with_the_run_and_position(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saver = MemorySaver()
    stream = agent({"run_id": "logged", "asks": False}, run_id="logged", checkpointer=saver)
    MODEL.seed = 1  # attempt 0: "Bob Bob I will", attempt 1: "will email"
    MODEL.answers.pop("logged", None)
    got = [event.partial for event in await first_events(stream, 3)]
    with caplog.at_level(logging.WARNING, logger="tiny_tasks"):
        again = agent({"run_id": "logged", "asks": False}, run_id="logged", checkpointer=saver)
        rest = [(event.partial, event.snapshot.rewind) async for event in again]
    first, second = MODEL.answers["logged"]
    assert got == ["<start>", *first[:2]]
    assert first[:2] != second[:2]
    k = expected_rewind(got, whole(second))
    assert k in (1, 2)
    assert rest == [(partial, k) for partial in whole(second)[k:]]
    assert again.rewind == k
    assert [record.getMessage() for record in caplog.records] == [
        f"run 'logged': the re-run streams something else than was delivered before, from "
        f"partial {k} on (of 3 delivered); the consumer is told with Snapshot.rewind={k} "
        "and receives the new partials from there"
    ]


async def test_equal_partials_in_another_encoding_are_not_a_divergence() -> None:
    # Encryption gives the same partial other bytes every time: compare what they decode to.
    class EncryptedMemorySaver(MemorySaver):
        serde = EncryptedSerializer(JsonSerializer(), generate_key())

    @task("lines")
    async def lines(count: int):  # type: ignore[no-untyped-def]
        for number in range(count):
            yield (number, f"line {number}")

    saver = EncryptedMemorySaver()
    stream = lines(4, run_id="r", checkpointer=saver)
    got = [event.partial for event in await first_events(stream, 2)]
    stored = saver.load_partials("r")
    assert [saver.serde.loads(data) for _, data in stored] == [(0, "line 0"), (1, "line 1")]
    rest = [(e.partial, e.snapshot.rewind) async for e in lines(4, run_id="r", checkpointer=saver)]
    assert got == [(0, "line 0"), (1, "line 1")]
    assert rest == [((2, "line 2"), None), ((3, "line 3"), None)]


async def test_a_partial_that_cannot_be_stored_is_refused_before_it_is_handed_over() -> None:
    @task("objects")
    async def objects(_: None):  # type: ignore[no-untyped-def]
        yield "fine"
        yield object()

    saver = MemorySaver()
    received = []
    stream = objects(None, run_id="r", checkpointer=saver)
    received.append((await anext(stream)).partial)
    with pytest.raises(SerializationError) as raised:
        await anext(stream)
    assert received == ["fine"]
    assert str(raised.value).startswith("cannot store partial 1 of the stream: ")
    assert str(raised.value).endswith(
        "With delivery='exactly_once' each partial is stored before it is handed over: make "
        "it serialisable (see tiny_tasks.serde), or pass delivery='at_least_once', which "
        "stores no partials in run 'r'"
    )
    assert raised.value.run_id == "r"
    stored = saver.load("r")
    assert stored is not None
    assert (stored.status, stored.delivered) == ("running", 1)

    opts: dict[str, Any] = {"checkpointer": saver, "delivery": "at_least_once"}
    partials = [p async for p, _, _ in objects(None, run_id="other", **opts)]
    assert partials[0] == "fine"
    assert type(partials[1]) is object
    assert saver.load_partials("other") == []


async def test_a_saver_without_the_log_still_skips_by_count(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # The documented limit: a saver that stores only the count cannot see a re-run differ.
    saver = await make_saver("dict", request, tmp_path)
    MODEL.seed = 1
    MODEL.answers.pop("counted", None)
    spec = {"run_id": "counted", "asks": False}
    stream = agent(spec, run_id="counted", checkpointer=saver)
    got = [event.partial for event in await first_events(stream, 3)]
    again = agent(spec, run_id="counted", checkpointer=saver)
    rest = [(e.partial, e.snapshot.rewind) async for e in again]
    first, second = MODEL.answers["counted"]
    assert got == whole(first)[:3]
    assert rest == [(partial, None) for partial in whole(second)[3:]]  # spliced, as before


def test_a_snapshot_has_no_rewind_unless_a_re_run_differs() -> None:
    assert Snapshot().rewind is None
    assert "rewind" in inspect.signature(Snapshot).parameters


async def first_events(stream: TaskStream[Any, Any], count: int) -> list[Any]:
    """The first `count` events of `stream`, which is then closed."""
    events = [await anext(stream) for _ in range(count)]
    await stream.aclose()
    return events


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _close(saver: Any) -> None:
    close = getattr(saver, "close", None)
    if close is not None:
        await _resolve(close())
