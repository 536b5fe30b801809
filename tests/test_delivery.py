"""delivery="at_least_once": no write per partial; the count rides on the run's other writes."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from tiny_tasks import MemorySaver, interrupt, task, use_clock
from tiny_tasks._driver import DEFAULT_LEASE_SECONDS
from tiny_tasks.testing import ManualClock


@task
async def numbers(count: int):
    for number in range(count):
        yield number
    interrupt("more?")
    yield "end"


class CountingSaver(MemorySaver):
    """A MemorySaver that counts the writes the engine makes."""

    def __init__(self) -> None:
        super().__init__()
        self.marks = 0
        self.saves = 0

    def mark_delivered(self, run_id: str, delivered: int, expected_version: int) -> int:
        self.marks += 1
        return super().mark_delivered(run_id, delivered, expected_version)

    def append_partial(self, run_id: str, seq: int, data: bytes, expected_version: int) -> int:
        self.marks += 1
        return super().append_partial(run_id, seq, data, expected_version)

    def save(self, write: Any, expected_version: int | None) -> int:
        self.saves += 1
        return super().save(write, expected_version)


async def test_exactly_once_writes_once_per_partial() -> None:
    saver = CountingSaver()
    events = [e async for e in numbers(5, run_id="r", checkpointer=saver)]
    assert [e.partial for e in events[:-1]] == [0, 1, 2, 3, 4]
    assert saver.marks == 5
    assert saver.saves == 2  # created, paused
    assert saver.load_partials("r") == [(n, b"%d" % n) for n in range(5)]


async def test_at_least_once_writes_no_partial_but_keeps_the_count_at_the_pause() -> None:
    saver = CountingSaver()
    opts: dict[str, Any] = {"run_id": "r", "checkpointer": saver, "delivery": "at_least_once"}
    events = [e async for e in numbers(5, **opts)]
    assert [e.partial for e in events[:-1]] == [0, 1, 2, 3, 4]
    assert saver.marks == 0
    assert saver.saves == 2
    assert saver.load_partials("r") == []  # nothing stored per partial
    stored = saver.load("r")
    assert stored is not None
    assert (stored.status, stored.delivered) == ("paused", 5)
    assert [e.partial async for e in numbers.resume("yes", **opts)] == ["end"]


async def test_at_least_once_keeps_the_count_when_the_consumer_closes_early() -> None:
    saver = CountingSaver()
    opts: dict[str, Any] = {"run_id": "r", "checkpointer": saver, "delivery": "at_least_once"}
    stream = numbers(5, **opts)
    assert [(await anext(stream)).partial for _ in range(3)] == [0, 1, 2]
    await stream.aclose()
    stored = saver.load("r")
    assert stored is not None
    assert stored.delivered == 3
    rest = [e.partial async for e in numbers(5, **opts)]
    assert rest == [3, 4, None]  # continues after what was delivered, then pauses


async def test_at_least_once_resends_what_no_write_recorded() -> None:
    # A consumer that vanishes without closing (a crash) loses this attempt's count:
    # the partials are sent again, never lost.
    saver = MemorySaver()
    opts: dict[str, Any] = {"run_id": "r", "checkpointer": saver, "delivery": "at_least_once"}
    with use_clock(ManualClock()) as clock:
        stream = numbers(5, **opts)
        assert [(await anext(stream)).partial for _ in range(3)] == [0, 1, 2]
        del stream  # dropped without aclose: like a process that died
        gc.collect()
        await clock.advance(DEFAULT_LEASE_SECONDS + 1)  # its lease expires: no one renews it
        again = [e.partial async for e in numbers(5, **opts)]
    assert again == [0, 1, 2, 3, 4, None]


def test_an_unknown_delivery_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly_once"):
        numbers(1, delivery="sometimes")  # type: ignore[arg-type]
