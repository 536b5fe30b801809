"""`TaskStream`: drives one task call and hands its events to the consumer.

A top-level stream owns its run: it loads or creates the journal, replays the body,
skips partials its consumer already had, counts deliveries, and on a pause saves the
pending interrupts and ends with one interrupt event each. A nested stream (a task
called inside a running task) is part of the enclosing run: a recorded child is
replayed from the journal, an interrupt inside it unwinds the whole run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, NoReturn, TypeVar

from ._body import Body, async_generator_of, body_result, make_body
from ._cancel import cancelled_at_partial, is_cancel
from ._context import Frame, PauseRun, TaskContext, _current, current_frame
from ._journal import ChildRecord
from ._run import NO_INPUT, Delivery, Run
from ._values import Event, Interrupt, Snapshot
from .errors import (
    ReplayMismatchError,
    RunClosedError,
    RunConflictError,
    SerializationError,
    SwallowedInterruptError,
)
from .savers.base import Checkpointer, RunStatus

Out = TypeVar("Out")
P = TypeVar("P")

__all__ = ["TaskStream"]

_event = tuple.__new__  # builds an Event without NamedTuple's slower generated __new__
_PAUSED: Any = object()

# Errors that say the stored run is still good: keep it for a later attempt.
_KEEP_CHECKPOINT = (
    ReplayMismatchError,
    RunConflictError,
    SerializationError,
    SwallowedInterruptError,
    RunClosedError,
)
# Of those, the ones after which the stored run is left exactly as it is.
_LEAVE_AS_IS = (RunConflictError, SwallowedInterruptError, RunClosedError)


class TaskStream(Generic[Out, P]):
    """An async iterator of `Event(partial, snapshot, interrupt)` for one task call.

    After the stream is exhausted, `result` holds the task's return value (`None` when
    it paused). Close it early with `await stream.aclose()`; the task's `finally`
    blocks run.

    `rewind` is `None`, or the position from which this attempt's partials replace
    those an earlier attempt delivered (see `Snapshot.rewind`). It is set by the first
    event that carries it, or, when a re-run streams fewer partials than were
    delivered and then ends, by the end of the stream.

    `status` says how the run ended once the stream is exhausted: `"done"`, `"paused"`
    (on `interrupts`), `"sleeping"` (on a timer or a message: no interrupt event; a
    `Worker` continues it at `wake_at`, or when a message on one of `waits` arrives),
    `"failed"`; `None` before. `wake_at` (seconds since the epoch) is also set for a
    paused run whose interrupts have a deadline.
    """

    __slots__ = (
        "_agen",
        "_arg_count",
        "_body",
        "_counts",
        "_fn",
        "_frame",
        "_hot",
        "_input",
        "_mark",
        "_outbox",
        "_parent",
        "_produced",
        "_record",
        "_recorded",
        "_replay",
        "_run",
        "_site",
        "_skip",
        "_snapshot",
        "_state",
        "_task_name",
        "interrupts",
        "result",
        "rewind",
        "run_id",
        "status",
        "waits",
        "wake_at",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        task_name: str,
        arg_count: int,
        record: bool,
        given: Any,
        run_id: str,
        checkpointer: Checkpointer | None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> None:
        self._fn = fn
        self._task_name = task_name
        self._arg_count = arg_count
        self._record = record
        self._input = given
        self._body: Body | None = None
        self._agen: AsyncGenerator[Any, Any] | None = None
        self._hot: AsyncGenerator[Any, Any] | None = None
        self._counts = False
        self._mark: Callable[..., Any] | None = None
        self._outbox: deque[Event[P]] = deque()
        self._produced = 0
        self._skip = 0
        self._recorded: list[Any] | None = None
        self._replay: deque[Any] | None = None
        self._state = "new"
        self.result: Out | None = None
        self.interrupts: list[Interrupt] = []
        self.rewind: int | None = None
        self.status: RunStatus | None = None
        self.wake_at: float | None = None
        self.waits: tuple[str, ...] = ()
        parent = current_frame()
        self._parent = parent
        if parent is None:
            self.run_id = run_id
            self._run = Run(run_id, task_name, checkpointer, delivery, keep)
            self._frame = Frame(self._run, _label(task_name), ())
            self._site = self._frame.path
        else:
            # Part of the enclosing run, whatever run options were passed (as in the seed).
            self._run = parent.run
            self.run_id = self._run.run_id
            self._site, order = parent.allocate(_label(task_name), "task")
            self._frame = Frame(self._run, self._site, order)
        self._snapshot: Snapshot = self._run.snapshot()

    def __aiter__(self) -> TaskStream[Out, P]:
        return self

    def __repr__(self) -> str:
        return f"<TaskStream {self._site!r} run_id={self.run_id!r} {self._state}>"

    async def __anext__(self) -> Event[P]:
        agen = self._hot
        if agen is None or self._frame.emitted:
            return await self._next_general()
        # The per-partial hot path: a top-level async generator body, nothing queued.
        token = _current.set(self._frame)
        try:
            partial = await agen.__anext__()
        except BaseException as error:
            _current.reset(token)
            self._hot = None
            return await self._after_body_error(error)
        _current.reset(token)
        if self._frame.emitted:
            self._frame.emitted.append(partial)
            partial = self._frame.emitted.popleft()
        produced = self._produced = self._produced + 1
        if self._counts:
            run = self._run
            if run.failure is not None:  # the body went on after a storage error
                await self._stop_on(run.failure)
            mark = self._mark
            if mark is None:
                run.delivered = produced
                return _event(Event, (partial, self._snapshot, None))
            try:
                if run.logs:  # the stream log: the partial's content, at its position
                    try:
                        data = run.dumps(partial)
                    except Exception as error:
                        raise run.unstorable_partial(error, produced - 1) from error
                    run.delivered = produced
                    if run.mark_is_async:
                        async with run.lock:
                            if run.failure is not None:
                                raise run.failure
                            run.version = await mark(run.run_id, produced - 1, data, run.version)
                    else:
                        run.version = mark(run.run_id, produced - 1, data, run.version)
                else:
                    run.delivered = produced
                    if run.mark_is_async:
                        async with run.lock:
                            if run.failure is not None:
                                raise run.failure
                            run.version = await mark(run.run_id, produced, run.version)
                    else:
                        run.version = mark(run.run_id, produced, run.version)
            except BaseException as error:
                if not (isinstance(error, asyncio.CancelledError) and self._forward_cancel(error)):
                    await self._stop_on(error)
                try:
                    await run.recover_mark(produced, partial)
                except BaseException as failed:
                    await self._stop_on(failed)
        return _event(Event, (partial, self._snapshot, None))

    def _forward_cancel(self, error: asyncio.CancelledError) -> bool:
        """A cancellation of this asyncio task while coroutine bodies are suspended in it
        (a TaskGroup in one cancels this task when one of its tasks fails or pauses):
        deliver it to them, on their next pull. False if none is."""
        held = self._run.held
        if not held:
            return False
        for body in list(held):
            body.throw_on_next_pull(error)
        held.clear()
        return True

    async def _stop_on(self, error: BaseException | None) -> NoReturn:
        """A per-partial write failed: close the stream, then raise (a driver error as
        `StorageError`). A cancel request ends the run as cancelled there."""
        run = self._run
        if await cancelled_at_partial(run, error):
            run.delivered = min(run.delivered, self._produced - 1)  # this one was not
            await self.aclose()
            await run.forget(run.cancel_error)  # type: ignore[arg-type]
            raise run.cancel_error  # type: ignore[misc]
        assert error is not None
        try:
            self._run.fail_storage(error, self._run.mark_name)
        finally:
            await self.aclose()

    async def _after_body_error(self, error: BaseException) -> Event[P]:
        token = _current.set(self._frame)
        try:
            partial = await self._body_exit(error)
        finally:
            _current.reset(token)
        if partial is _PAUSED:
            return self._queued()
        self._produced += 1
        await self._deliver(partial)
        return _event(Event, (partial, self._snapshot, None))

    async def _deliver(self, partial: Any) -> None:
        """Count a top-level partial as delivered, in the checkpoint too."""
        run = self._run
        if not run.saving:
            return
        if run.failure is not None:  # the body went on after a storage error
            await self._stop_on(run.failure)
        if run.deferred is not None:  # a resume's first new partial: its answers go too
            if not run.logs:
                run.delivered = self._produced  # the count goes with them
            try:
                await run.claim()
            except asyncio.CancelledError as error:
                if not self._forward_cancel(error):
                    await self._stop_on(error)
                try:
                    await run.wait_for_writes()  # the claim goes on in its writer task
                except BaseException as failed:
                    await self._stop_on(failed)
            except BaseException as error:
                await self._stop_on(error)
            if not run.logs:
                return
            # The stream log needs the partial's content too: a second write, once a resume.
        if not run.each_delivery:
            run.delivered = self._produced
            return  # written along with the run's next write
        if run.mark_sync is not None and not run.logs:
            run.delivered = self._produced
            try:
                run.version = run.mark_sync(run.run_id, self._produced, run.version)
            except BaseException as error:
                await self._stop_on(error)
        else:
            await self._deliver_checkpointed(partial)

    async def _next_general(self) -> Event[P]:
        if self._state != "running" or self._outbox or self._replay is not None:
            return await self._next_slow()
        frame = self._frame
        emitted = frame.emitted
        agen = self._agen
        token = _current.set(frame)
        try:
            while True:
                if agen is not None and not emitted:
                    # The per-partial hot path: an async generator body, nothing emitted.
                    try:
                        partial = await agen.__anext__()
                    except BaseException as error:
                        partial = await self._body_exit(error)
                        agen = self._agen  # finished: what it left is pulled from the body
                    else:
                        if emitted:
                            emitted.append(partial)
                            partial = emitted.popleft()
                else:
                    try:
                        partial = await self._body.pull()  # type: ignore[union-attr]
                    except BaseException as error:
                        partial = await self._body_exit(error)
                if partial is _PAUSED:
                    return self._queued()
                if self._parent is not None:
                    if self._recorded is not None:
                        self._recorded.append(partial)
                    return _event(Event, (partial, self._snapshot, None))
                produced = self._produced = self._produced + 1
                if produced > self._skip:
                    break
                if not await self._replays_delivered(produced - 1, partial):
                    self._rewind(produced - 1)
                    break
        finally:
            _current.reset(token)
        await self._deliver(partial)
        self._arm_hot_path()
        return _event(Event, (partial, self._snapshot, None))

    def _arm_hot_path(self) -> None:
        """Take the hot path from now on when nothing special is left to do."""
        run = self._run
        if (
            self._agen is not None
            and self._parent is None
            and self._produced >= self._skip
            and run.deferred is None
            and (not run.saving or run.mark is not None or not run.each_delivery)
        ):
            self._hot = self._agen
            self._counts = run.saving
            self._mark = run.mark if run.each_delivery else None

    async def _replays_delivered(self, seq: int, partial: Any) -> bool:
        try:
            try:
                return await self._run.replays_delivered(seq, partial)
            except asyncio.CancelledError as error:
                if not self._forward_cancel(error):
                    raise
                return await self._run.replays_delivered(seq, partial)  # a read: ask again
        except BaseException:  # the stream log could not be read: stop here
            await self.aclose()
            raise

    def _rewind(self, seq: int) -> None:
        """This attempt streams something else from partial `seq` on: say so, and
        deliver from there (the stream log is overwritten from there too)."""
        self._run.rewind_to(seq)
        self._skip = seq
        self.rewind = seq
        self._snapshot = self._run.snapshot()

    def _rewind_if_short(self) -> None:
        """The run pauses or ends before regenerating every partial delivered before."""
        if self._run.logs and self._produced < self._skip:
            self._rewind(self._produced)

    async def _body_exit(self, error: BaseException) -> Any:
        """The body raised: hand out partials it emitted first, then finish, fail or pause."""
        body = self._body
        assert body is not None
        if self._agen is not None:
            self._agen = None  # finished: the body's own pull handles what is left
            body.finished = True
            if body.emitted:
                body.hold(error)
                return body.emitted.popleft()
        try:
            if isinstance(error, StopAsyncIteration):
                await self._finish(body_result(body))
                raise error
            return await self._fail_or_pause(error)
        except StopAsyncIteration:
            raise
        except BaseException:
            if self._parent is None:  # no write cleared the lease: give it up
                await self._run.end_attempt()
            raise

    async def _next_slow(self) -> Event[P]:
        if self._outbox:
            return self._outbox.popleft()
        if self._state == "new":
            await self._start()
            self._arm_hot_path()
            return await self.__anext__()
        if self._replay is not None:
            return self._next_replayed()
        raise StopAsyncIteration

    async def _deliver_checkpointed(self, partial: Any) -> None:
        run = self._run
        try:
            started = run.start_mark(self._produced, partial)
            if started is not None:
                await started
        except asyncio.CancelledError as error:
            if not self._forward_cancel(error):
                await self.aclose()
                raise
            # The mark goes on in its writer task: once it is stored, the partial is
            # handed over.
            try:
                await run.wait_for_writes()
            except BaseException:
                await self.aclose()
                raise
            if run.failure is not None:
                await self._stop_on(run.failure)
        except BaseException as error:
            if isinstance(error, RunConflictError):
                await self._stop_on(error)
            await self.aclose()
            raise
        if run.cancel_requested and run.cancel_error is None:
            await self._stop_on(None)

    # -- starting -----------------------------------------------------------------

    async def _start(self) -> None:
        """Open the run (top level) or the child; may queue events instead of running."""
        self._state = "running"
        run = self._run
        if self._parent is None:
            try:
                reported = await run.open(self._input)
            except BaseException:
                self._state = "closed"
                self.status = run.kept_status  # failed or cancelled, if it was kept so
                raise
            if reported is not None:  # re-attached to a paused or kept finished run
                self.result = run.kept_result
                self._queue_interrupts(reported)
                if run.kept_status is not None:
                    self.status = run.kept_status
                self._state = "closed"
                return
            self._skip = run.delivered
            self._snapshot = run.snapshot()
        else:
            recorded = run.journal.children.get(self._site)
            if recorded is not None:
                self._start_replay(recorded)
                return
            try:
                run.before_effect(f"task {self._site!r}")
            except BaseException:
                self._state = "closed"
                raise
            if self._record and run.saving:
                self._recorded = []
            task = asyncio.current_task()
            if task is not None:
                run.hosts[self] = task
        value = run.journal.input if self._parent is None else self._input
        if value is NO_INPUT:
            value = None
        count = self._arg_count
        args = (value, TaskContext(self._frame)) if count == 2 else (value,) if count else ()
        token = _current.set(self._frame)
        try:
            self._body = make_body(self._fn, args, self._frame.emitted)
        finally:
            _current.reset(token)
        self._agen = async_generator_of(self._body)

    def _start_replay(self, recorded: ChildRecord) -> None:
        self._replay = deque(recorded.partials)
        self.result = recorded.result

    def _next_replayed(self) -> Event[P]:
        assert self._replay is not None
        if self._replay:
            return _event(Event, (self._replay.popleft(), self._snapshot, None))
        self._state = "closed"
        raise StopAsyncIteration

    # -- ending -------------------------------------------------------------------

    async def _finish(self, result: Any) -> None:
        self._state = "closed"
        run = self._run
        self.result = result
        if self._parent is not None:
            run.hosts.pop(self, None)
            run.check_frame(self._site, f"task {self._site!r} returned without reaching it")
            if self._recorded is not None:
                run.check_swallowed()
                await run.record_child(self._site, self._recorded, result)
            return
        swallowed = run.pending_sites()
        run.begin_stop(pausing=False)
        await self._stop_children()
        await run.settle()
        if run.failure is not None:  # the body went on after a storage error
            raise run.failure
        if swallowed:  # the stored run stays as it is: once fixed, calling again continues it
            raise SwallowedInterruptError(run.run_id, swallowed)
        if run.cancel_error is not None:  # it caught RunCancelled and returned: cancelled
            await run.forget(run.cancel_error)  # type: ignore[arg-type]
            self.status = "cancelled"
            raise run.cancel_error
        try:
            run.check_frame(self._site, f"task {self._site!r} returned without reaching it")
            if run.mismatch is not None:  # found in a branch whose error the task caught
                raise run.mismatch
        except ReplayMismatchError:
            await run.put_back()
            raise
        self._rewind_if_short()
        await run.forget(None, result)
        self.status = "done"

    async def _fail_or_pause(self, error: BaseException) -> Any:
        """Handle an exception out of the body: pause the run, or clean up and re-raise."""
        self._state = "closed"
        run = self._run
        if self._parent is not None:
            run.hosts.pop(self, None)
            if _is_pause(error):
                run.unwound(self._site)
            elif _own_failure(error) and run.failure is None and not is_cancel(error):
                run.check_frame(self._site, f"task {self._site!r} raised before reaching it")
            raise error
        pausing = _is_pause(error)
        run.begin_stop(pausing)
        if pausing:
            # A step started before the pause finishes and is recorded: a pause never
            # makes a step's function run twice. Nothing new starts meanwhile.
            await run.let_steps_finish()
        await self._stop_children()
        await run.settle()
        if run.failure is not None:  # whatever the body did after it, storage failed
            raise run.failure
        if pausing:
            interrupts = run.take_pending()
            if not interrupts:  # the pause was swallowed and re-raised oddly; nothing to save
                raise error
            try:
                run.check_pause(self._site, interrupts)
            except ReplayMismatchError:
                await run.put_back()
                raise
            self._rewind_if_short()
            self._queue_interrupts(await run.pause(interrupts))
            return _PAUSED
        # Only the task's own failure ends the run. Cancellation, KeyboardInterrupt and
        # SystemExit stop this worker, as a crash would: the run stays continuable.
        if run.saving and isinstance(error, Exception):
            if _own_failure(error):
                try:
                    # A failure before a recorded site is replay gone elsewhere, not an end
                    # (a cancellation stops where it is).
                    if not is_cancel(error):
                        how = f"task {self._site!r} raised before reaching it"
                        run.check_frame(self._site, how)
                    if run.mismatch is not None:
                        raise run.mismatch
                except ReplayMismatchError:
                    await run.put_back()
                    raise
                await run.forget(error)
                self.status = "cancelled" if is_cancel(error) else "failed"
            elif not _is_any(error, _LEAVE_AS_IS):
                await run.put_back()
        raise error

    def _queued(self) -> Event[P]:
        """The first interrupt event queued by a pause; none when the run sleeps."""
        if not self._outbox:
            raise StopAsyncIteration
        return self._outbox.popleft()

    def _queue_interrupts(self, interrupts: list[Interrupt]) -> None:
        waiting = self._run.waiting
        self.status, self.wake_at, self.waits = waiting.status, waiting.wake_at, waiting.waits
        self.interrupts = list(interrupts)
        snapshot = self._run.snapshot(tuple(interrupts))
        self._snapshot = snapshot
        self._outbox.extend(Event(None, snapshot, i) for i in interrupts)

    async def _stop_children(self) -> None:
        """Stop nested tasks and steps still running in this run, innermost first.

        Those running in other asyncio tasks (under `gather`, say) are cancelled and
        awaited; those suspended in this one are closed. Their `finally` blocks run.
        """
        current = asyncio.current_task()
        run = self._run
        while run.hosts or run.steps:
            live = list(run.hosts.items())
            run.hosts.clear()
            hosts = {host for _, host in live} | {t for t in run.steps.values() if t is not None}
            elsewhere = [host for host in hosts if host is not current and not host.done()]
            for host in elsewhere:
                host.cancel()
            if elsewhere:
                await asyncio.gather(*elsewhere, return_exceptions=True)
            for stream, host in reversed(live):
                if host is current and isinstance(stream, TaskStream):
                    await stream.aclose()
            if not live and not elsewhere:
                break  # only steps of this task are left: they unwind with it

    async def aclose(self) -> None:
        """Stop the task early; its `finally` blocks (and its children's) run."""
        if self._state == "closed":
            return
        was_running = self._state == "running"
        self._state = "closed"
        self._hot = None
        run = self._run
        run.hosts.pop(self, None)
        try:
            if self._parent is None:
                if not run.stopping:
                    run.begin_stop(pausing=False)
                await self._stop_children()
        finally:
            try:
                if self._body is not None:
                    token = _current.set(self._frame)
                    try:
                        await self._body.aclose()
                    except BaseException as error:
                        # A branch that reached an interrupt while the run was stopping
                        # (registered, and saved if the run pauses): nothing to report.
                        if not (run.stopping and _is_pause(error)):
                            raise
                    finally:
                        _current.reset(token)
            finally:
                if self._parent is None and not run.closed:
                    await run.settle()
                    if (
                        was_running
                        and run.saving
                        and not run.each_delivery
                        and not run.failure
                        and run.deferred is None
                    ):
                        await run.final_write("running")  # keep this attempt's delivered count
                    await run.end_attempt()


def _is_any(error: BaseException, kinds: tuple[type[Exception], ...]) -> bool:
    """`error` is one of `kinds`, or a group (from a TaskGroup) that holds one."""
    if isinstance(error, kinds):
        return True
    return isinstance(error, BaseExceptionGroup) and error.subgroup(kinds) is not None


def _is_pause(error: BaseException) -> bool:
    if isinstance(error, PauseRun):
        return True
    if isinstance(error, BaseExceptionGroup):
        pauses, rest = error.split(PauseRun)
        if pauses is None:
            return False
        if rest is None:
            return True
        _, other = rest.split(asyncio.CancelledError)
        return other is None
    return False


def _own_failure(error: BaseException) -> bool:
    """An exception that ends the run as failed (not a pause, a cancellation, or an
    error that says the stored run is still good, alone or in a group)."""
    return isinstance(error, Exception) and not _is_any(error, _KEEP_CHECKPOINT)


def _label(name: str) -> str:
    return name.replace("/", "_").replace("#", "_")


def positional_capacity(fn: Callable[..., Any]) -> int:
    """The number of positional arguments `fn` takes (2 for `*args`), at most 2."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    count = 0
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return 2
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return min(count, 2)
