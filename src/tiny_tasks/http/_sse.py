"""Server-Sent Events: the framing, and one watcher's event sequence for a run.

A watcher reads the partials the store has after its position (`Last-Event-ID` or
`?after=N`), then follows the run: pushed by the driver when this process drives it,
polling the store when another process does. Every partial is an event with
`id: <seq>` (its position in the run's stream), so a client that reconnects, to this
process or another on the same store, resumes exactly after what it received. The
stream ends after the run's interrupts (`interrupt`, one event each), or its outcome
(`done`, `error`, `cancelled`); a run that nobody drives any more is taken over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from .._journal import decode_journal
from .._outcome import read_outcome
from .._run import resolve
from .._values import Interrupt
from ..savers.base import Checkpoint
from ._json import dumps
from ._live import Ending, LiveRun, LiveRuns, Watch

__all__ = ["comment", "event", "watch"]

PAGE = 256
"""Stored partials read at a time."""


def event(kind: str, data: Any, event_id: int | None = None) -> str:
    """One SSE event: `event:`, optional `id:`, and `data:` (the JSON of `data`)."""
    head = f"event: {kind}\n" if event_id is None else f"event: {kind}\nid: {event_id}\n"
    return f"{head}data: {dumps(data)}\n\n"


def partial_event(seq: int, value: Any) -> str:
    """The event of partial `seq`."""
    return event("partial", value, seq)


def comment(text: str) -> str:
    """An SSE comment line (a keep-alive the client ignores)."""
    return f": {text}\n\n"


def ending_events(ending: Ending) -> list[str]:
    """The closing events of an attempt that ended as `ending`."""
    if ending.kind == "interrupt":
        return [event("interrupt", {"id": i.id, "value": i.value}) for i in ending.interrupts]
    if ending.kind == "done":
        return [event("done", {"result": ending.result})]
    assert ending.error is not None
    return [event(ending.kind, {"type": ending.error[0], "message": ending.error[1]})]


def stored_ending(runs: LiveRuns, stored: Checkpoint) -> Ending | None:
    """How the stored run ended, if it is paused or finished (`None` while it runs)."""
    if stored.status == "paused":
        pending = decode_journal(stored, runs.serde).pending
        return Ending("interrupt", tuple(Interrupt(v, site) for site, v in pending.items()))
    outcome = read_outcome(stored, runs.serde)
    if outcome is None:
        return None
    if outcome.status == "done":
        return Ending("done", result=outcome.result)
    error = outcome.error or ("RunFailedError", f"run {stored.run_id!r} failed")
    return Ending("cancelled" if outcome.status == "cancelled" else "error", error=error)


async def watch(
    runs: LiveRuns,
    run_id: str,
    after: int,
    *,
    ping_interval: float,
    poll_interval: float,
    status: str,
    following: Watch | None = None,
) -> AsyncIterator[str]:
    """The SSE text of run `run_id` for a watcher that has every partial up to `after`
    (`following`: the run as started here, with a queue subscribed from its start)."""
    ready = {"run_id": run_id, "status": status, "after": after}
    yield "retry: 1000\n" + event("ready", ready, after)
    last = after
    live: LiveRun | None = following[0] if following else None
    queue: asyncio.Queue[Any] | None = following[1] if following else None
    pinged = time.monotonic()
    load_partials = getattr(runs.saver, "load_partials", None)
    caught_up = False  # read the store since subscribing to this process's driver
    try:
        while True:
            if queue is None:
                live = runs.live.get(run_id)
                if live is not None:
                    queue, caught_up = live.subscribe(), False
            # The run's status is read before its partials: if it has ended, every
            # partial it delivered is already stored.
            stored = await runs.load(run_id) if queue is None else None
            if load_partials is not None and not caught_up:
                while True:
                    rows = await resolve(load_partials(run_id, last, PAGE))
                    for seq, data in rows:
                        yield event("partial", runs.serde.loads(data), seq)
                        last = seq
                    if len(rows) < PAGE:
                        break
                caught_up = queue is not None
            if queue is not None:
                # Pushed by this process's driver: partials after `last`, then the end.
                try:
                    item = await asyncio.wait_for(queue.get(), ping_interval)
                except TimeoutError:
                    yield comment("ping")
                    continue
                while not isinstance(item, Ending):
                    seq, text = item
                    if seq > last:
                        yield text
                        last = seq
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                if not isinstance(item, Ending):
                    continue
                assert live is not None
                live.unsubscribe(queue)
                live, queue, caught_up = None, None, False
                if item.kind != "sleeping":
                    for text in ending_events(item):
                        yield text
                    return
                continue  # asleep: follow it from the store until it goes on
            if stored is None:
                yield event(
                    "error",
                    {
                        "type": "UnknownRunError",
                        "message": f"run {run_id!r} is no longer stored (deleted, or it "
                        "finished without keeping its outcome)",
                    },
                )
                return
            ending = stored_ending(runs, stored)
            if ending is not None:
                for text in ending_events(ending):
                    yield text
                return
            if await runs.adopt(stored) is not None:
                continue
            if time.monotonic() - pinged >= ping_interval:
                yield comment("ping")
                pinged = time.monotonic()
            await asyncio.sleep(min(poll_interval, ping_interval))
    finally:
        if live is not None and queue is not None:
            live.unsubscribe(queue)
