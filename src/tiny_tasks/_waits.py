"""Durable waits: timers (`sleep`), deadlines on interrupts, and messages (`recv`, `send`).

A wait takes a site id like any effect. Its time (a sleep's wake time, a recv's
deadline) is recorded in the journal on first reach and read back on every replay,
never computed again. A wait that cannot be satisfied now registers with the run as
a pending wait and unwinds the body with `PauseRun`, exactly as an interrupt does; the
run is then stored `sleeping` (only waits pending) or `paused` (interrupts too), with
`wake_at` the earliest time something changes and `waits` the topics it receives on.
Re-attaching the run once it is due replays it past what is satisfied by then.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._clock import current_clock
from ._context import NO_DEFAULT, Frame, PauseRun, _require_frame
from ._journal import Journal, encode_entry
from ._step import refuse_in_sync_body
from ._values import Interrupt
from .errors import (
    CheckpointerTypeError,
    InterruptTimeoutError,
    NoCheckpointError,
    SerializationError,
)
from .savers.base import Checkpoint, Checkpointer, RunStatus, check_checkpointer, check_run_id
from .serde import default_serializer

if TYPE_CHECKING:
    from ._run import Run

__all__ = [
    "INLINE_SLEEP",
    "NO_DEFAULT",
    "Wait",
    "WaitState",
    "interrupt_deadline",
    "refuse_late_answers",
    "send",
    "sleep",
    "sleep_until",
    "start_recv",
    "start_sleep",
]

INLINE_SLEEP = 1.0
"""Seconds: a sleep with at most this much left waits in the process (on the clock);
a longer one stores the run as `sleeping` and ends the stream, holding no process."""

logger = logging.getLogger("tiny_tasks.runtime")

Duration = timedelta | float | int
When = datetime | float | int


class Wait:
    """A wait registered with the run, in place of an interrupt's value, when it unwinds."""

    __slots__ = ("topic", "when")

    def __init__(self, when: float | None, topic: str | None) -> None:
        self.when = when
        self.topic = topic

    def __repr__(self) -> str:
        return f"Wait(when={self.when!r}, topic={self.topic!r})"


class WaitState:
    """One run's waiting: how it was stored when opened, and how this attempt parks it."""

    __slots__ = (
        "_lock",
        "status",
        "stored_status",
        "stored_waits",
        "stored_wake_at",
        "waits",
        "wake_at",
    )

    def __init__(self) -> None:
        self.stored_status: RunStatus | None = None
        self.stored_wake_at: float | None = None
        self.stored_waits: tuple[str, ...] = ()
        # How this attempt left the run: "paused" or "sleeping", its wake time and topics.
        self.status: RunStatus | None = None
        self.wake_at: float | None = None
        self.waits: tuple[str, ...] = ()
        self._lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Serialises the run's recvs: a message is marked taken before the next looks."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def row(self, status: RunStatus) -> tuple[float | None, tuple[str, ...]]:
        """`wake_at` and `waits` for a write of the run as `status`."""
        if status in ("paused", "sleeping"):
            return self.wake_at, self.waits
        return None, ()

    def reattach(self, journal: Journal, stored: Checkpoint, now: float) -> list[Interrupt] | None:
        """A paused or sleeping run opened with no answer: what to report if it is not
        due yet (its interrupts; none when sleeping), or `None` to replay it now."""
        self.stored_status = stored.status
        self.stored_wake_at = stored.wake_at
        self.stored_waits = stored.waits
        slack = INLINE_SLEEP if stored.status == "sleeping" else 0.0
        wake_at = stored.wake_at
        # A sleeping run with neither a wake time nor a topic: its saver keeps no runtime
        # fields; replay finds out whether it is due.
        unknown = stored.status == "sleeping" and wake_at is None and not stored.waits
        if unknown or stored.cancel_requested or (wake_at is not None and wake_at - now <= slack):
            logger.info(
                "run %r: due (wake time %s), continuing it",
                stored.run_id,
                wake_at,
                extra={"run_id": stored.run_id},
            )
            return None
        self.status, self.wake_at, self.waits = stored.status, wake_at, stored.waits
        if stored.status == "sleeping":
            return []
        return [Interrupt(value, site) for site, value in journal.pending.items()]

    def park(self, run_id: str, journal: Journal, pending: list[Interrupt]) -> list[Interrupt]:
        """Set how the run is stored for `pending` (interrupts and waits); return the
        interrupts alone."""
        interrupts = [i for i in pending if not isinstance(i.value, Wait)]
        times = [i.value.when for i in pending if isinstance(i.value, Wait)]
        times += [journal.deadlines[i.id][0] for i in interrupts if i.id in journal.deadlines]
        known = [when for when in times if when is not None]
        self.status = "paused" if interrupts else "sleeping"
        self.wake_at = min(known) if known else None
        topics = [i.value.topic for i in pending if isinstance(i.value, Wait)]
        self.waits = tuple(dict.fromkeys(t for t in topics if t is not None))
        if self.status == "sleeping":
            logger.info(
                "run %r: sleeping until %s%s",
                run_id,
                self.wake_at,
                f", waiting for {list(self.waits)}" if self.waits else "",
                extra={"run_id": run_id},
            )
        return interrupts

    def restore(self) -> RunStatus:
        """Store the run again as it was found (after a refused replay)."""
        self.wake_at, self.waits = self.stored_wake_at, self.stored_waits
        self.status = self.stored_status or "paused"
        return self.status


def unanswered_deadlines(journal: Journal) -> dict[str, tuple[float, bool, Any]]:
    """The deadlines of interrupts not answered yet (what the state blob keeps)."""
    done = journal.answers
    return {
        site: deadline
        for site, deadline in journal.deadlines.items()
        if site not in done and site not in journal.timeouts
    }


# -- time values ---------------------------------------------------------------------


def seconds_of(value: Duration, what: str) -> float:
    """`value` (a `timedelta` or a number of seconds) in seconds; `ValueError` unless it
    is finite and not negative."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be finite and not negative, got {value!r}")
    return float(seconds)


def epoch_of(when: When) -> float:
    """`when` (an aware `datetime`, or seconds since the epoch) in seconds since the epoch."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError(
                f"sleep_until needs an aware datetime (with a tzinfo), got {when!r}: a naive "
                "one means another time on every machine. Use datetime.now(timezone.utc) + ..."
            )
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        raise TypeError(f"sleep_until needs a datetime or seconds since the epoch, not {when!r}")
    return float(when)


# -- sleeping ------------------------------------------------------------------------


def sleep(duration: Duration) -> Coroutine[Any, Any, None]:
    """Sleep `duration` (a `timedelta` or seconds) in the current run, durably.

    The wake time is recorded on first reach and kept across replays. A sleep of at
    most `INLINE_SLEEP` (1 s) left waits in the process; a longer one stores the run
    as `sleeping` and ends its stream (`stream.status == "sleeping"`; `invoke` raises
    `TaskSleeping`); a `Worker`, or calling the task again with its run id, continues
    it once it is due. Without a checkpointer it always waits in the process. Raises
    `RuntimeError` outside a running task, `ValueError` for a negative duration.
    """
    frame = _require_frame("sleep")
    refuse_in_sync_body("sleep(...)")
    return start_sleep(frame, duration, None)


def sleep_until(when: When) -> Coroutine[Any, Any, None]:
    """Sleep until `when` (an aware `datetime`, or seconds since the epoch); see `sleep`."""
    frame = _require_frame("sleep_until")
    refuse_in_sync_body("sleep_until(...)")
    return start_sleep(frame, None, when)


def start_sleep(
    frame: Frame, duration: Duration | None, until: When | None
) -> Coroutine[Any, Any, None]:
    """Take the sleep's site id now (call order) and return the coroutine that waits."""
    seconds = None if duration is None else seconds_of(duration, "a sleep's duration")
    target = None if until is None else epoch_of(until)
    site_id, order = frame.allocate("sleep", "sleep")
    return _sleep(frame, site_id, order, seconds, target)


async def _sleep(
    frame: Frame, site_id: str, order: tuple[int, ...], seconds: float | None, target: float | None
) -> None:
    run = frame.run
    clock = current_clock()
    now = clock.now()
    wake = run.journal.waits.get(site_id)
    if wake is None:
        wake = target if target is not None else now + (seconds or 0.0)
        _record_wait(run, site_id, wake)
    elif wake <= now and run.waiting.stored_status is not None:
        logger.info("run %r: timer %r fired", run.run_id, site_id, extra={"run_id": run.run_id})
    remaining = wake - now
    if remaining <= 0:
        return
    if not run.saving or (remaining <= INLINE_SLEEP and not run.dry):
        run.before_effect(f"sleep {site_id!r}")
        await clock.sleep(remaining)
        return
    _unwind(run, site_id, order, Wait(wake, None))


def _record_wait(run: Run, site_id: str, when: float) -> None:
    """Keep a wait's time; it is written with the run's next write."""
    run.journal.waits[site_id] = when
    if run.saving:
        run.ride(_encode(run, {"k": "wait", "s": site_id, "t": when}, f"wait {site_id!r}"))


def _unwind(run: Run, site_id: str, order: tuple[int, ...], wait: Wait) -> None:
    run.add_pending(site_id, order, wait, storable=False)
    raise PauseRun(site_id)


def _encode(run: Run, entry: Any, what: str) -> bytes:
    try:
        return encode_entry(run.serde, entry)
    except SerializationError as exc:
        raise SerializationError(f"cannot store {what}: {exc}", run_id=run.run_id) from exc


# -- deadlines on interrupts ---------------------------------------------------------


def interrupt_deadline(
    run: Run, site_id: str, timeout: Duration | None, default: Any
) -> tuple[bool, Any]:
    """An unanswered interrupt's deadline: `(True, answer)` when it has passed and its
    default answers it; `(False, None)` when the interrupt is to pause. Raises
    `InterruptTimeoutError` when it has passed and there is no default.

    The deadline is computed on first reach and kept in the run's state from then on.
    """
    journal = run.journal
    timed_out = journal.timeouts.get(site_id)
    if timed_out is not None:
        raise InterruptTimeoutError(run.run_id, site_id, timed_out)
    now = current_clock().now()
    deadline = journal.deadlines.get(site_id)
    if deadline is None:
        if timeout is None:
            return False, None
        has_default = default is not NO_DEFAULT
        if run.saving and has_default:
            _encode(run, default, f"the default of interrupt {site_id!r}")
        when = now + seconds_of(timeout, "an interrupt's timeout")
        deadline = (when, has_default, default if has_default else None)
        journal.deadlines[site_id] = deadline
    when, has_default, default = deadline
    if run.dry or now < when:
        return False, None
    logger.info(
        "run %r: the deadline of interrupt %r passed (%s); %s",
        run.run_id,
        site_id,
        when,
        "answering it with its default" if has_default else "raising InterruptTimeoutError",
        extra={"run_id": run.run_id},
    )
    if has_default:
        journal.answers[site_id] = default
        run.resume_values.append(default)
        entry = {"k": "answer", "s": site_id, "v": default, "d": 1, "at": when}
        run.ride(_encode(run, entry, f"the default answer of {site_id!r}"))
        return True, default
    journal.timeouts[site_id] = when
    entry = {"k": "answer", "s": site_id, "x": "timeout", "t": when}
    run.ride(_encode(run, entry, f"the timeout of {site_id!r}"))
    raise InterruptTimeoutError(run.run_id, site_id, when)


def refuse_late_answers(run: Run, sites: list[str]) -> None:
    """Raise `InterruptTimeoutError` if an interrupt answered now is past its deadline."""
    now = current_clock().now()
    for site in sites:
        deadline = run.journal.deadlines.get(site)
        if deadline is not None and deadline[0] <= now:
            raise InterruptTimeoutError(run.run_id, site, deadline[0])


# -- messages ------------------------------------------------------------------------


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic:
        raise TypeError(f"a message topic must be a non-empty str, got {topic!r}")
    return topic


def start_recv(frame: Frame, topic: str, timeout: Duration | None) -> Coroutine[Any, Any, Any]:
    """Take the recv's site id now (call order) and return the coroutine that receives."""
    _check_topic(topic)
    seconds = None if timeout is None else seconds_of(timeout, "a recv's timeout")
    site_id, order = frame.allocate("recv", "recv")
    return _recv(frame, site_id, order, topic, seconds)


async def _recv(
    frame: Frame, site_id: str, order: tuple[int, ...], topic: str, seconds: float | None
) -> Any:
    run = frame.run
    journal = run.journal
    if site_id in journal.received:
        return journal.received[site_id]
    next_message = getattr(run.saver, "next_message", None)
    if not run.dry and not callable(next_message):
        raise CheckpointerTypeError(
            f"ctx.recv({topic!r}) in run {run.run_id!r} needs a checkpointer that keeps "
            f"messages (send_message and next_message), got {run.saver!r:.80}. Run the task "
            "with MemorySaver(), SqliteSaver(path) or PostgresSaver(conninfo)"
        )
    now = current_clock().now()
    deadline = journal.waits.get(site_id)
    if deadline is None and seconds is not None:
        deadline = now + seconds
        _record_wait(run, site_id, deadline)
    run.before_effect(f"recv {site_id!r}")
    if not run.dry:
        async with run.waiting.lock:
            found = next_message(run.run_id, topic)  # type: ignore[misc]
            if inspect.isawaitable(found):
                found = await found
            if found is not None:
                message_id, data = found
                value = _decode_message(run, site_id, data)
                return await _received(run, site_id, message_id, value)
        if deadline is not None and deadline <= now:
            logger.info(
                "run %r: recv %r timed out", run.run_id, site_id, extra={"run_id": run.run_id}
            )
            return await _received(run, site_id, None, None)
    _unwind(run, site_id, order, Wait(deadline, topic))


async def _received(run: Run, site_id: str, message_id: int | None, value: Any) -> Any:
    """Record what a recv received (the message is marked taken in the same write)."""
    entry = _encode(
        run, {"k": "recv", "s": site_id, "m": message_id, "v": value}, f"recv {site_id!r}"
    )
    run.journal.received[site_id] = value
    await run.write("running", (entry,), taken=() if message_id is None else (message_id,))
    return value


def _decode_message(run: Run, site_id: str, data: bytes) -> Any:
    try:
        return run.serde.loads(data)
    except Exception as exc:
        raise SerializationError(
            f"cannot decode the message received at {site_id!r}: {exc}. Send it with the "
            "same serializer as the run's checkpointer",
            run_id=run.run_id,
        ) from exc


async def send(checkpointer: Checkpointer, run_id: str, topic: str, value: Any) -> int:
    """Store a message on `topic` for run `run_id`; returns its id.

    The run receives it with `await ctx.recv(topic)`: at once if it waits on that topic
    (a sleeping run is woken), or when it next calls `recv(topic)`; each message is
    received exactly once, oldest first. The value is encoded with the checkpointer's
    serializer. Raises `NoCheckpointError` when no unfinished run `run_id` is stored,
    `CheckpointerTypeError` for a checkpointer that keeps no messages,
    `SerializationError` for a value it cannot store.
    """
    check_checkpointer(checkpointer)
    check_run_id(run_id)
    _check_topic(topic)
    method = getattr(checkpointer, "send_message", None)
    if not callable(method):
        raise CheckpointerTypeError(
            f"send(..., {run_id!r}, {topic!r}, ...) needs a checkpointer that keeps messages "
            f"(a send_message method), got {checkpointer!r:.80}. Use MemorySaver(), "
            "SqliteSaver(path) or PostgresSaver(conninfo)"
        )
    serde = getattr(checkpointer, "serde", None) or default_serializer()
    try:
        data = serde.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"cannot store the message on topic {topic!r}: {exc}", run_id=run_id
        ) from exc
    message_id = method(run_id, topic, data, current_clock().now())
    if inspect.isawaitable(message_id):
        message_id = await message_id
    if message_id is None:
        raise NoCheckpointError(
            run_id,
            f"no unfinished run {run_id!r} is stored to receive a message on topic {topic!r} "
            "(it was never started, it finished, or it was deleted); start the run first",
        )
    return int(message_id)
