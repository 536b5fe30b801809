"""One top-level run: its journal, its pending interrupts, and every write to storage.

This is the one place a run's mutable state lives. The engine reaches storage only
through the checkpointer protocol; methods of the saver may be plain or `async`.

With an async saver every write runs in an asyncio task of its own, which holds the
run's lock while it waits for storage; whoever asked for the write awaits it through a
shield. So a write never waits on the code that asked for it (a coroutine body that
emitted partials is resumed only when its consumer pulls again), and a write that
started always completes and lands in `version`, even if the task awaiting it is
cancelled. A plain saver's writes never suspend and run inline.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, Literal, NoReturn

from ._acting import Acting, current_acting
from ._cancel import adopt_cancel, deliver_cancel
from ._clock import current_clock
from ._context import PauseRun
from ._driver import current_driver
from ._dry import DryStop, DryView
from ._journal import ChildRecord, Journal, StepRecord, decode_journal, encode_entry, encode_state
from ._lease import RunLease
from ._outcome import keep_outcome, late_answer, reattach_finished, stored_keep
from ._values import Command, Interrupt, Snapshot
from ._waits import WaitState, refuse_late_answers, unanswered_deadlines
from .errors import (
    AmbiguousResumeError,
    InputMismatchError,
    NoCheckpointError,
    ReplayMismatchError,
    RunClosedError,
    RunConflictError,
    SerializationError,
    StorageError,
    SwallowedInterruptError,
    TaskMismatchError,
    TinyTasksError,
    UnknownInterruptError,
)
from .savers.base import FINISHED, Checkpoint, Checkpointer, CheckpointWrite, RunStatus
from .serde import Serializer, default_serializer

__all__ = ["NO_INPUT", "Delivery", "Run"]

Delivery = Literal["exactly_once", "at_least_once"]
"""Whether each delivered partial is recorded before it is handed over (see `Task`)."""

NO_INPUT: Any = type("NoInput", (), {"__repr__": lambda self: "<no input>"})()

LOG_PAGE = 512
"""Stored partials read at a time when a re-run is compared with what was delivered."""

logger = logging.getLogger("tiny_tasks")

# Used when a checkpointer names no codec. It has no registered types and is never
# registered on (users register on their own JsonSerializer), so sharing it is safe.
_DEFAULT_SERDE = default_serializer()


def _is_coroutine_function(fn: Any) -> bool:
    """`inspect.iscoroutinefunction` for plain functions and bound methods, cheaply."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        return inspect.iscoroutinefunction(fn)
    return bool(code.co_flags & inspect.CO_COROUTINE)


async def resolve(value: Any) -> Any:
    """Await `value` if a saver returned an awaitable; plain values pass through."""
    return await value if inspect.isawaitable(value) else value


class Run:
    """The state of one top-level run while a stream drives it."""

    def __init__(
        self,
        run_id: str,
        task_name: str,
        checkpointer: Checkpointer | None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> None:
        if delivery not in ("exactly_once", "at_least_once"):
            raise ValueError(
                f"delivery must be 'exactly_once' or 'at_least_once', got {delivery!r}"
            )
        self.run_id = run_id
        self.task_name = task_name
        self.saver = checkpointer
        self.saving = checkpointer is not None
        self.acting = current_acting()
        self.serde: Serializer = getattr(checkpointer, "serde", None) or _DEFAULT_SERDE
        self.journal = Journal()
        self.version: int | None = None
        self.delivered = 0
        self.resume_values: list[Any] = []
        # The asyncio task of every nested stream and every step running now: what a
        # stopping run cancels (or, for steps, lets finish when it pauses).
        self.hosts: dict[object, asyncio.Task[Any]] = {}
        self.steps: dict[str, asyncio.Task[Any] | None] = {}
        self._step_ended: asyncio.Future[None] | None = None
        # site id -> (sort key, value, the asyncio task that raised it)
        self._pending: dict[str, tuple[tuple[int, ...], Any, asyncio.Task[Any] | None]] = {}
        # Replay checks: `path#index` -> (recorded site, kind), ancestors of recorded
        # sites included; each frame's recorded sites; the sites replay has reached.
        self._positions: dict[str, tuple[str, str]] = {}
        self._by_frame: dict[str, list[str]] = {}
        # Each frame's path -> {index: (label, kind, site id)} recorded there.
        self.recorded_at: dict[str, dict[int, tuple[str, str, str]]] = {}
        self.visited: set[str] = set()
        # Frames the pause unwound (not those its cancellation cut short).
        self._unwound: list[str] = []
        self.mismatch: ReplayMismatchError | None = None
        # A resume: the interrupts it found pending, the sites it answers, and the encoded
        # answers, written with the run's first write (`None` once written).
        self._paused_on: dict[str, Any] | None = None
        self._answered: list[str] = []
        self._children_written: list[str] = []
        self.deferred: tuple[bytes, ...] | None = None
        self._state = b""
        # Encoded entries that ride on the next write (a resume's first write included):
        # `patched()` decisions, before any site recorded past them; wait times and
        # deadline answers (`ride`).
        self._decisions: list[bytes] = []
        # Timers, deadlines and messages: how the run was found, and how it parks.
        self.waiting = WaitState()
        # Patch ids whose old branch this attempt took (what `check_runs` reports).
        self.old_branches: set[str] = set()
        # A dry replay (`check_runs`): replays a paused run too, and stops at its first
        # write, where a resume's first new effect would be (the `DryView` refuses it).
        self.dry = isinstance(checkpointer, DryView)
        # Set by the first saver call that failed: the run's stored version is unknown
        # from then on, so nothing more is written to it in this attempt.
        self.failure: StorageError | None = None
        # Serialises this run's writes, so each names the version the previous one made.
        # Held only by writer tasks and by the stream's own marks, never by a task body.
        self.lock = asyncio.Lock()
        self._writers: set[asyncio.Task[None]] = set()
        # Coroutine bodies suspended in the consumer's asyncio task until its next pull.
        self.held: set[Any] = set()
        # The asyncio task that is stopping the run (pausing, failing, closing or
        # completing it), once it has begun: no new step or task starts elsewhere after.
        self.stopper: asyncio.Task[Any] | None = None
        self.stopping = False
        self._pausing = False
        # Set once the run has stopped all it started: from then on, writes are refused.
        self.closed = False
        # The stream calls `mark_delivered` (or `append_partial`, below) itself on its
        # hot path: one call per partial.
        self.mark: Callable[..., Any] | None = getattr(checkpointer, "mark_delivered", None)
        # Record every delivery now, or only along with the run's other writes.
        self.each_delivery = delivery == "exactly_once"
        # With exactly-once delivery and a saver that keeps the stream log, each partial
        # is recorded with its content (`append_partial` replaces `mark_delivered`), and
        # a re-run is compared with what was delivered instead of skipped by count.
        append = getattr(checkpointer, "append_partial", None)
        self.load_log = getattr(checkpointer, "load_partials", None)
        self.logs = self.each_delivery and append is not None and self.load_log is not None
        if self.logs:
            self.mark = append
        self.mark_name = "append_partial" if self.logs else "mark_delivered"
        self.dumps = self.serde.dumps
        self.mark_is_async = self.mark is not None and _is_coroutine_function(self.mark)
        self.mark_sync = self.mark if not self.mark_is_async else None
        self.inline_writes = not self.mark_is_async and not _is_coroutine_function(
            getattr(checkpointer, "save", None)
        )
        self.rewind: int | None = None
        self._log: dict[int, bytes] = {}
        self._log_end = -1  # the last position `_log` answers for
        # The runtime (see `_lease`, `_cancel`, `_outcome`): the lease this driver holds,
        # whether to keep the outcome, the cancel request and its delivery.
        driver = current_driver()
        self.keep = keep if keep is not None else driver.keep
        self._keep_given = keep is not None
        renew = None if self.dry else getattr(checkpointer, "renew_lease", None)
        self.lease = RunLease(self, renew, driver) if renew is not None else None
        self._final = False
        self.kept_result: Any = None
        # The status of a kept, finished run found by `open` (nothing runs then).
        self.kept_status: RunStatus | None = None
        self.cancel_requested = False
        self.cancel_error: BaseException | None = None
        self.in_flight: set[str] = set()  # steps whose function runs now
        self.cancelling: set[asyncio.Task[Any]] = set()

    # -- starting -----------------------------------------------------------------

    async def open(self, given: Any) -> list[Interrupt] | None:
        """Load or create the run for input `given` (a `Command` resumes it).

        Returns the pending interrupts when the run is paused and is only re-attached
        (nothing to execute), else `None`. Raises `NoCheckpointError`,
        `InputMismatchError`, `UnknownInterruptError`, `RunConflictError`.
        """
        command = given if isinstance(given, Command) else None
        if self.saver is None:
            if command is not None:
                raise NoCheckpointError(self.run_id, "no checkpointer was given")
            self.journal.input = None if given is NO_INPUT else given
            return None
        try:
            stored: Checkpoint | None = await resolve(self.saver.load(self.run_id))
        except Exception as error:
            self.fail_storage(error, "load")
        if stored is None:
            if command is not None:
                raise NoCheckpointError(self.run_id)
            await self._create(None if given is NO_INPUT else given)
            return None
        if stored.task_name != self.task_name:
            raise TaskMismatchError(self.run_id, stored.task_name, self.task_name)
        if stored.status in FINISHED:  # a kept outcome: returned, nothing runs
            self.kept_status = stored.status
            self.kept_result = reattach_finished(self, stored, given, NO_INPUT)
            return []
        if self.lease is not None:
            self.lease.check_open(stored)
        if not self._keep_given:  # what the run was submitted with wins over a driver's
            submitted = stored_keep(stored, self.serde)
            self.keep = self.keep if submitted is None else submitted
        self.journal = decode_journal(stored, self.serde)
        self.version = stored.version
        self.delivered = stored.delivered
        self._positions, self._by_frame, self.recorded_at = _positions(self.journal)
        self._log_end = -1
        self.resume_values = list(self.journal.answers.values())
        if command is not None:
            self._answer(command, stored)
            return None
        if given is not NO_INPUT and given != self.journal.input:
            raise InputMismatchError(self.run_id, self.journal.input, given)
        # A dry replay, or a run to cancel: replay whatever the status, as a resume does,
        # to its first write (a cancelled run raises RunCancelled there).
        self.cancel_requested = stored.cancel_requested and not self.dry
        if self.dry or self.cancel_requested:
            self.deferred = ()
            return None
        if stored.status in ("paused", "sleeping"):
            now = current_clock().now()
            reported = self.waiting.reattach(self.journal, stored, now)
            if reported is not None:
                await self._give_back_claim(stored)
                return reported
            # Continued like a resume: its first write is deferred to its first new
            # effect, where of two drivers (an answer and a deadline) exactly one wins.
            self._paused_on = dict(self.journal.pending)  # a refused replay puts it back
            self.journal.pending = {}
            self.deferred = ()
            return None
        await self.write("running")
        return None

    async def _give_back_claim(self, stored: Checkpoint) -> None:
        """A run this driver claimed (a worker) turned out to have nothing to do yet:
        nothing is written, so release the claim's lease, or the run would stay
        unclaimable until the lease expired."""
        lease = self.lease
        if lease is not None and stored.lease_owner == lease.owner:
            lease.held = True
            await lease.release()

    async def _create(self, value: Any) -> None:
        self.journal.input = value
        entry = self._encode(self._by({"k": "input", "v": value}), "the task's input")
        await self.write("running", (entry,), create=True)

    def _by(self, entry: dict[str, Any]) -> dict[str, Any]:
        """`entry` with when it was made and the acting principal, if there is one."""
        entry["at"] = current_clock().now()
        if self.acting.principal is not None:
            entry["by"] = self.acting.principal
        return entry

    def _answer(self, command: Command, stored: Checkpoint) -> None:
        pending = list(self.journal.pending)
        self._paused_on = dict(self.journal.pending)
        if stored.status != "paused" or not pending:
            conflict = late_answer(self.run_id, self.journal, command)
            if conflict is not None:
                raise conflict
            raise NoCheckpointError(
                self.run_id,
                f"the run is {stored.status}, not paused on an interrupt: another worker "
                "is driving it (it may have resumed it just now), or one died while "
                "driving it. If none is, call the task without Command/resume to continue it",
            )
        answers: Mapping[str, Any]
        if command.answers is not None:
            answers = command.answers
            unknown = [site for site in answers if site not in self.journal.pending]
            if unknown:
                raise UnknownInterruptError(self.run_id, unknown, pending)
        elif len(pending) == 1:
            answers = {pending[0]: command.resume}
        else:
            raise AmbiguousResumeError(self.run_id, pending)
        refuse_late_answers(self, list(answers))
        self.waiting.stored_status = stored.status
        self.waiting.stored_wake_at = stored.wake_at
        self.waiting.stored_waits = stored.waits
        # Encoded first, so an unstorable answer is refused before anything changes. Not
        # written yet: replay must first show it still lines up with the journal.
        entries = tuple(
            self._encode(self._by({"k": "answer", "s": site, "v": value}), f"answer {site}")
            for site, value in answers.items()
        )
        for site, value in answers.items():
            self.journal.answers[site] = value
            self.resume_values.append(value)
        self._answered = list(answers)
        self.journal.pending = {}
        self.deferred = entries

    # -- replay bookkeeping -------------------------------------------------------

    def visit(self, site_id: str, path: str, index: int, kind: str) -> None:
        """Note that replay reached `site_id`; refuse it if the journal has another site
        (or another kind of effect) at its position."""
        positions = self._positions
        if positions:
            recorded = positions.get(f"{path}#{index}")
            if recorded is not None:
                if recorded != (site_id, kind):
                    self.refuse(
                        ReplayMismatchError(
                            self.run_id,
                            site_id,
                            f"{recorded[1]} {recorded[0]!r}",
                            f"{kind} {site_id!r}",
                        )
                    )
                self.visited.add(site_id)

    def check_frame(self, path: str, how: str) -> None:
        """A frame ended by itself: refuse it if it left a recorded site unreached."""
        sites = self._by_frame.get(path)
        if sites:
            visited = self.visited
            for site in sites:
                if site not in visited:
                    kind = self._positions[_position_of(site)][1]
                    self.refuse(
                        ReplayMismatchError(
                            self.run_id, site, f"{kind} {site!r} in the journal", how
                        )
                    )

    def unwound(self, path: str) -> None:
        """Note that the pause unwound the frame at `path` (checked before pausing)."""
        self._unwound.append(path)

    def check_pause(self, top: str, interrupts: list[Interrupt]) -> None:
        """Before a pause is stored: every frame the pause unwound reached its recorded
        sites (frames cut short by cancelling siblings are not checked)."""
        if self._positions:
            how = f"the run paused at {interrupts[0].id!r} before reaching it"
            for path in (top, *self._unwound):
                self.check_frame(path, how)
        if self.mismatch is not None:
            raise self.mismatch

    def refuse(self, error: ReplayMismatchError) -> NoReturn:
        """Raise `error`; the run stays refused even if user code catches it."""
        if self.mismatch is None:
            self.mismatch = error
        raise error

    # -- patches ------------------------------------------------------------------

    def patch(self, path: str, index: int, patch_id: str, deprecated: bool) -> bool:
        """Decide `patched(patch_id)` at position `index` of frame `path` (not consumed).

        The recorded decision if there is one; else False when the journal holds a site
        at or past this position in this frame (the run went past here before the patch
        existed, so what it recorded after was recorded by the old branch), else True.
        A new decision is written with the run's next write (a resume's first write, if
        it has not been made): it writes nothing by itself. `deprecated`: the old branch
        is gone, so a run that needs it is refused.
        """
        site = f"{path}/patch:{_label(patch_id)}#{index}"
        decision = self.journal.patches.get(site)
        if decision is None:
            recorded = self._by_frame.get(path, ())
            decision = all(int(s.rpartition("#")[2]) < index for s in recorded)
            if not deprecated:
                self.journal.patches[site] = decision
                if self.saving:
                    entry = {"k": "patch", "s": site, "v": decision}
                    self._decisions.append(self._encode(entry, f"patch {site!r}"))
        if decision:
            return True
        self.old_branches.add(patch_id)
        if deprecated:
            self.refuse(
                ReplayMismatchError(
                    self.run_id,
                    site,
                    f"the old branch of patch {patch_id!r} (the run went past this point "
                    "before the patch existed)",
                    f"deprecate_patch({patch_id!r}): the old branch was removed; restore "
                    f"patched({patch_id!r}) with its old branch until no stored run needs it",
                )
            )
        return False

    def ride(self, entry: bytes) -> None:
        """Write `entry` with the run's next write, whatever it is."""
        self._decisions.append(entry)

    # -- interrupts ---------------------------------------------------------------

    def add_pending(
        self, site_id: str, order: tuple[int, ...], value: Any, *, storable: bool = True
    ) -> None:
        """Register an unanswered interrupt (or a wait: `storable=False`); an interrupt's
        value must be storable.

        Raises `SwallowedInterruptError` if this asyncio task swallowed an earlier pause.
        """
        if self.closed:
            raise RunClosedError(self.run_id, f"interrupt {site_id!r}")
        task = _current_task()  # None in a synchronous body's worker thread
        if self.stopping:
            if not self._pausing and task is not self.stopper:
                raise asyncio.CancelledError()  # a branch of a run that ends: it is cancelled
        elif self._pending and not _handling_pause():
            self._refuse_if_swallowed(task)
        if self.cancel_requested:
            deliver_cancel(self, f"interrupt {site_id!r}", while_unwinding=False)
        if self.saving and storable:
            self._encode(value, f"interrupt {site_id!r}")
        self._pending[site_id] = (order, value, task)

    def take_pending(self) -> list[Interrupt]:
        """The interrupts registered in this attempt, in site order."""
        ordered = sorted(self._pending.items(), key=lambda item: item[1][0])
        self._pending.clear()
        return [Interrupt(value, site) for site, (_, value, _) in ordered]

    def pending_sites(self) -> list[str]:
        """The ids of the interrupts registered and not yet saved, in site order."""
        return [site for site, _ in sorted(self._pending.items(), key=lambda i: i[1][0])]

    def before_effect(self, what: str) -> None:
        """Refuse to start a step or a nested task where it must not start.

        * Once the run is stopping, one started in another asyncio task (a sibling under
          `gather` that has not been cancelled yet) is stopped there: it raises
          `PauseRun` if the run pauses, `CancelledError` otherwise. Nothing new starts.
        * Started in the asyncio task that raised a pending interrupt, outside any
          `except`/`finally` the pause passes through: the pause was swallowed,
          `SwallowedInterruptError`.
        """
        if self.closed:
            raise RunClosedError(self.run_id, what)
        if self.stopping:
            if asyncio.current_task() is self.stopper:
                return  # the stopper closing the bodies suspended in its own task
            if self._pausing:
                raise PauseRun(self.pending_sites()[0])
            raise asyncio.CancelledError()
        if self.cancel_requested:
            deliver_cancel(self, what)
        if self._pending and not _handling_pause():
            self._refuse_if_swallowed(asyncio.current_task())

    def check_swallowed(self) -> None:
        """Raise `SwallowedInterruptError` if this asyncio task swallowed a pause."""
        if self._pending and not self.stopping and not _handling_pause():
            self._refuse_if_swallowed(asyncio.current_task())

    def begin_stop(self, pausing: bool) -> None:
        """The run stops: from now on no step or task starts in another asyncio task."""
        self.stopper = asyncio.current_task()
        self.stopping = True
        self._pausing = pausing

    def _refuse_if_swallowed(self, task: asyncio.Task[Any] | None) -> None:
        if task is None:  # a synchronous body's worker thread: no task to tell it by
            return
        swallowed = [site for site, (_, _, raised_in) in self._pending.items() if raised_in is task]
        if swallowed:
            raise SwallowedInterruptError(self.run_id, swallowed)

    def snapshot(self, pending: tuple[Interrupt, ...] = ()) -> Snapshot:
        """What the consumer sees: answers so far, pending interrupts, a rewind."""
        return Snapshot(list(self.resume_values), self.run_id, pending, self.rewind)

    # -- the stream log -----------------------------------------------------------

    async def replays_delivered(self, seq: int, partial: Any) -> bool:
        """Whether partial `seq`, regenerated by a re-run, is the one delivered before.

        True when the log does not hold it (an attempt that recorded only the count):
        it is then skipped by position, as a saver without the log always does.
        """
        if not self.logs:
            return True
        if seq > self._log_end:
            try:
                rows = await resolve(self.load_log(self.run_id, seq - 1, LOG_PAGE))  # type: ignore[misc]
            except Exception as error:
                self.fail_storage(error, "load_partials")
            self._log = dict(rows)
            self._log_end = rows[-1][0] if len(rows) == LOG_PAGE else self.delivered - 1
        stored = self._log.get(seq)
        if stored is None:
            return True
        try:
            encoded = self.dumps(partial)
            if encoded == stored:
                return True
            # Equal values may encode differently (an encrypting serde, set order).
            return bool(self.serde.loads(stored) == self.serde.loads(encoded))
        except Exception:
            return False  # unstorable or incomparable: treat it as different

    def rewind_to(self, seq: int) -> None:
        """From partial `seq` on, this attempt's stream replaces what was delivered."""
        logger.warning(
            "run %r: the re-run streams something else than was delivered before, from "
            "partial %d on (of %d delivered); the consumer is told with Snapshot.rewind=%d "
            "and receives the new partials from there",
            self.run_id,
            seq,
            self.delivered,
            seq,
        )
        self.rewind = seq
        self.delivered = seq
        self._log = {}

    def unstorable_partial(self, error: Exception, seq: int) -> SerializationError:
        """The error for a partial the serde cannot encode (exactly-once stores it)."""
        return SerializationError(
            f"cannot store partial {seq} of the stream: {error}. With "
            "delivery='exactly_once' each partial is stored before it is handed over: make "
            "it serialisable (see tiny_tasks.serde), or pass delivery='at_least_once', "
            "which stores no partials",
            run_id=self.run_id,
        )

    # -- steps in flight ----------------------------------------------------------

    def step_started(self, site_id: str) -> None:
        """Note a step that runs now, and in which asyncio task."""
        self.steps[site_id] = asyncio.current_task()

    def step_finished(self, site_id: str) -> None:
        """The step ended (recorded, failed or cancelled)."""
        del self.steps[site_id]
        waiter = self._step_ended
        if waiter is not None:
            self._step_ended = None
            if not waiter.done():
                waiter.set_result(None)

    async def let_steps_finish(self) -> None:
        """Wait until no step runs in another asyncio task (their results are recorded).

        A step running in this task cannot be: this task is busy here.
        """
        current = asyncio.current_task()
        while any(t is not current and t is not None and not t.done() for t in self.steps.values()):
            waiter = self._step_ended
            if waiter is None:
                waiter = self._step_ended = asyncio.get_running_loop().create_future()
            await waiter

    # -- recording ----------------------------------------------------------------

    async def record_step(
        self, site_id: str, record: StepRecord, began: float | None = None
    ) -> None:
        """Store a finished step before its result is handed back."""
        self.journal.steps[site_id] = record
        if not self.saving:
            return
        entry: dict[str, Any] = {"k": "step", "s": site_id, "h": record.args_hash}
        if began is not None:  # when it ran, for the inbox's timeline; never replayed
            entry["ran"] = [began, current_clock().now()]
        if record.error is not None:
            entry["e"] = list(record.error)
        else:
            entry["v"] = record.value
        encoded = self._encode(entry, f"the result of step {site_id!r}")
        await self.write("running", (encoded,), what=f"step {site_id!r}")

    async def record_child(self, site_id: str, partials: list[Any], result: Any) -> None:
        """Store a finished nested task: its partials and its result."""
        if not self.saving:
            return
        entry = {"k": "child", "s": site_id, "p": partials, "v": result}
        entry["at"] = current_clock().now()
        encoded = self._encode(entry, f"the partials and result of task {site_id!r}")
        self.journal.children[site_id] = ChildRecord(partials, result)
        await self.write("running", (encoded,), what=f"task {site_id!r}")
        self._children_written.append(site_id)

    def _encode(self, value: Any, what: str) -> bytes:
        try:
            return encode_entry(self.serde, value)
        except SerializationError as exc:
            raise SerializationError(
                f"cannot store {what}: {exc}. Make the value serialisable (see "
                "tiny_tasks.serde), or pass record=False for a nested task",
                run_id=self.run_id,
            ) from exc

    # -- storage ------------------------------------------------------------------

    async def write(
        self,
        status: RunStatus,
        entries: tuple[bytes, ...] = (),
        *,
        create: bool = False,
        what: str = "a write",
        taken: tuple[int, ...] = (),
    ) -> None:
        """Save fields, state and new entries with compare-and-swap on the version;
        `taken`: ids of the messages the entries received (marked taken in the write).

        A resume's deferred answers go with the first write; after a replay mismatch
        nothing is written but `put_back`; once the run has stopped (see `settle`),
        nothing at all (`RunClosedError`).
        """
        if self.saver is None:
            return
        if self.mismatch is not None:
            raise self.mismatch
        if self.closed:
            raise RunClosedError(self.run_id, f"a write of the run as {status!r}")
        started = self._start_write(status, entries, create, taken=taken)
        if started is not None:
            await started
        if self.cancel_requested:  # learnt from this write's conflict: stop at this effect
            deliver_cancel(self, what)

    async def claim(self) -> None:
        """Write a resume's answers now (before a new effect); a no-op once written.

        The compare-and-swap on the version read at the start makes this the point where
        of two workers resuming the same run exactly one goes on.
        """
        if self.mismatch is not None:
            raise self.mismatch
        if self.deferred is None:
            return
        if self.cancel_requested:
            deliver_cancel(self, "its first new effect")
        if self.closed:
            raise RunClosedError(self.run_id, "a write of a resume's answers")
        started = self._start_write("running", (), False, claim=True)
        if started is not None:
            await started

    def _start_write(
        self,
        status: RunStatus,
        entries: tuple[bytes, ...],
        create: bool,
        claim: bool = False,
        taken: tuple[int, ...] = (),
    ) -> asyncio.Future[None] | None:
        """Write now (a plain saver: returns `None`), or start a writer task and return a
        shield over it. `claim`: only if the resume's answers are still unwritten."""
        saver = self.saver
        assert saver is not None
        if self.inline_writes:
            if claim and self.deferred is None:
                return None
            write, expected, decisions = self._prepare(status, entries, create, taken)
            try:
                result = saver.save(write, expected)
            except RunConflictError as error:
                if self.lease is None:
                    raise
                return self._track(
                    asyncio.ensure_future(
                        self._after_conflict(error, status, entries, create, taken)
                    )
                )
            except Exception as error:
                self.fail_storage(error, "save")
            if not inspect.isawaitable(result):
                self._saved(result, decisions)
                return None
            # A plain method that returns an awaitable: treat the saver as async from now on.
            self.inline_writes = False
            return self._track(asyncio.ensure_future(self._finish(result, "save", decisions)))
        return self._eagerly(self._save(status, entries, create, claim, taken))

    def _eagerly(self, writer: Coroutine[Any, Any, None]) -> asyncio.Future[None] | None:
        """Run `writer` now, up to its first suspension: `None` if it finished (a saver
        that wrote at once, as SQLite's inline writes do: no task, no loop iteration),
        else it goes on in a writer task, and what to await is returned."""
        try:
            suspended_on = writer.send(None)
        except StopIteration:
            return None
        return self._track(asyncio.ensure_future(_go_on(writer, suspended_on)))

    def _track(self, writer: asyncio.Task[None]) -> asyncio.Future[None]:
        self._writers.add(writer)
        writer.add_done_callback(self._writer_done)
        return asyncio.shield(writer)

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        self._writers.discard(writer)
        if not writer.cancelled():
            writer.exception()  # its awaiter may be gone; `failure` keeps a storage error

    async def _save(
        self,
        status: RunStatus,
        entries: tuple[bytes, ...],
        create: bool,
        claim: bool,
        taken: tuple[int, ...],
    ) -> None:
        async with self.lock:
            if claim and self.deferred is None:
                return
            # Built under the lock: it carries the delivered count and the answers of
            # the writes before it.
            write, expected, decisions = self._prepare(status, entries, create, taken)
            try:
                version = await resolve(self.saver.save(write, expected))  # type: ignore[union-attr]
            except RunConflictError:
                if self.lease is None or not await adopt_cancel(self):
                    raise
                write, expected, decisions = self._prepare(status, entries, create, taken)
                version = await self._save_again(write, expected)
            except Exception as error:
                self.fail_storage(error, "save")
            self._saved(version, decisions)

    async def _after_conflict(
        self,
        error: RunConflictError,
        status: RunStatus,
        entries: tuple[bytes, ...],
        create: bool,
        taken: tuple[int, ...],
    ) -> None:
        """A plain saver's write failed its compare-and-swap: made again if a cancel
        request caused it (see `adopt_cancel`)."""
        async with self.lock:
            if not await adopt_cancel(self):
                raise error
            write, expected, decisions = self._prepare(status, entries, create, taken)
            self._saved(await self._save_again(write, expected), decisions)

    async def _save_again(self, write: CheckpointWrite, expected: int | None) -> int:
        try:
            version: int = await resolve(self.saver.save(write, expected))  # type: ignore[union-attr]
        except Exception as error:
            self.fail_storage(error, "save")
        return version

    async def _finish(self, result: Awaitable[int], operation: str, decisions: int = 0) -> None:
        """Await a call a plain saver method made and returned unfinished."""
        async with self.lock:
            try:
                version = await result
            except Exception as error:
                self.fail_storage(error, operation)
            if operation == "save":
                self._saved(version, decisions)
            else:
                self.version = version

    def _prepare(
        self,
        status: RunStatus,
        entries: tuple[bytes, ...],
        create: bool,
        taken: tuple[int, ...] = (),
    ) -> tuple[CheckpointWrite, int | None, int]:
        """The write, the version it expects, and how many patch decisions it carries."""
        if self.failure is not None:
            raise self.failure
        decisions = len(self._decisions)
        if decisions:
            entries = (*self._decisions, *entries)
        deferred = self.deferred
        if deferred is not None:
            entries = deferred + entries
        pending = self.journal.pending
        parked = status in ("paused", "sleeping")
        if parked or not self._state:
            deadlines = unanswered_deadlines(self.journal)
            self._state = encode_state(self.serde, list(pending.items()), deadlines)
        wake_at, waits = self.waiting.row(status)
        # The lease rides on every write; the attempt's last one (once closed) clears it.
        lease = self.lease
        self._final = final = lease is None or self.closed
        owner, expires = (None, None) if final else lease.fields()  # type: ignore[union-attr]
        write = CheckpointWrite(
            self.run_id,
            self.task_name,
            status,
            self.delivered,
            tuple(pending),
            self._state,
            entries,
            owner,
            expires,
            wake_at=wake_at,
            waits=waits,
            taken=taken,
        )
        return write, None if create else self.version, decisions

    def _saved(self, version: int, decisions: int) -> None:
        self.version = version
        self.deferred = None
        del self._decisions[:decisions]
        if self.lease is not None:
            self.lease.saved(self._final)
        on_stored = self.acting.on_stored
        if on_stored is not None:  # the HTTP layer waits for this (see `_acting`)
            self.acting = Acting(self.acting.principal)
            on_stored()

    def set_state(self, state: bytes) -> None:
        """The state blob the next write stores (a kept outcome)."""
        self._state = state

    async def end_attempt(self) -> None:
        """The attempt ends with no write clearing the lease: release it."""
        if self.lease is not None:
            await self.lease.release()

    def start_mark(self, delivered: int, partial: Any) -> asyncio.Future[None] | None:
        """Start recording that the consumer has been given `delivered` partials, the
        last one `partial` (with its content when the saver keeps the stream log).

        Returns what to await (a shield over the writer task), or `None` if it is done.
        Not the per-partial hot path: that one is in the stream.
        """
        mark = self.mark
        if mark is None:
            self.delivered = delivered
            if self.mismatch is not None:
                raise self.mismatch
            if self.closed:
                raise RunClosedError(self.run_id, "a write of the delivered count")
            return self._start_write("running", (), False)
        args: tuple[Any, ...] = (self.run_id, delivered)
        if self.logs:
            try:
                args = (self.run_id, delivered - 1, self.dumps(partial))
            except Exception as error:
                raise self.unstorable_partial(error, delivered - 1) from error
        self.delivered = delivered
        if self.failure is not None:
            raise self.failure
        if not self.mark_is_async:
            try:
                result = mark(*args, self.version)
            except Exception as error:
                self.fail_storage(error, self.mark_name)
            if not inspect.isawaitable(result):
                self.version = result
                return None
            return self._track(asyncio.ensure_future(self._finish(result, self.mark_name)))
        return self._eagerly(self._mark_now(mark, args))

    async def _mark_now(self, mark: Callable[..., Any], args: tuple[Any, ...]) -> None:
        async with self.lock:
            if self.failure is not None:
                raise self.failure
            try:
                self.version = await resolve(mark(*args, self.version))
            except Exception as error:
                self.fail_storage(error, self.mark_name)

    async def recover_mark(self, delivered: int, partial: Any) -> None:
        """A per-partial write was cancelled mid-way: learn whether it was applied (the
        stored delivered count says), and make it if it was not."""
        try:
            stored: Checkpoint | None = await resolve(self.saver.load(self.run_id))  # type: ignore[union-attr]
        except Exception as error:
            self.fail_storage(error, "load")
        if stored is not None and stored.delivered >= delivered:
            self.version = stored.version
            return
        started = self.start_mark(delivered, partial)
        if started is not None:
            await started

    async def wait_for_writes(self) -> None:
        """Wait for the writes in flight (each stores its version when it completes)."""
        while self._writers:
            await asyncio.wait(tuple(self._writers))

    async def settle(self) -> None:
        """Refuse new writes, then wait for those in flight. Call it once everything the
        run started has stopped, before the run's last write (`pause`, `forget`, ...)."""
        self.closed = True
        if self.lease is not None:
            self.lease.stop()
        await self.wait_for_writes()

    async def final_write(self, status: RunStatus, entries: tuple[bytes, ...] = ()) -> None:
        """The run's last write in this attempt, once `settle` has closed it."""
        if self.saver is not None:
            started = self._start_write(status, entries, False)
            if started is not None:
                await started

    async def pause(self, pending: list[Interrupt]) -> list[Interrupt]:
        """Save the run as paused on the interrupts in `pending`, or as sleeping if it
        holds only waits (after `settle`); return the interrupts."""
        interrupts = self.waiting.park(self.run_id, self.journal, pending)
        self.journal.pending = {i.id: i.value for i in interrupts}
        await self.final_write(self.waiting.status or "paused")
        return interrupts

    async def put_back(self) -> None:
        """After a replay that could not go on: store the run as paused as it was, if it was.

        If the resume's answers were not written yet, nothing is written at all. If they
        were, one write stores the run paused on the same interrupts and appends a void
        entry for each answer and each child result recorded since (a child's result may
        carry an answer), so no later load counts them. Step results stay: they ran.
        Call it after `settle`.
        """
        paused_on = self._paused_on
        if paused_on is None or not self.saving:
            return
        self._paused_on = None
        self._decisions.clear()  # made by the refused replay, which records nothing more
        if self.deferred is not None:
            self.deferred = None
            return
        voids = tuple(
            self._encode({"k": "void", "s": site}, f"the withdrawal of {site!r}")
            for site in (*self._answered, *self._children_written)
        )
        self.journal.pending = paused_on
        await self.final_write(self.waiting.restore(), voids)

    async def forget(self, failure: Exception | None = None, result: Any = None) -> None:
        """Delete the run's checkpoint (it finished with `result`, or failed with
        `failure`; after `settle`), or keep its outcome (`keep`).

        A resume writes its answers first: the compare-and-swap lets only one of two
        workers resuming the same run finish it.
        """
        if self.dry:
            raise DryStop("end", "the run would end", failure=failure)
        if self.saver is not None and self.keep:
            await keep_outcome(self, failure, result)
        elif self.saver is not None:
            if self.deferred is not None:
                started = self._start_write("running", (), False, claim=True)
                if started is not None:
                    await started
            try:
                await resolve(self.saver.delete(self.run_id))
            except Exception as error:
                self.fail_storage(error, "delete")
            if self.lease is not None:
                self.lease.held = False

    def fail_storage(self, error: BaseException, operation: str) -> NoReturn:
        """Re-raise what the saver's `operation` raised, as the caller must see it.

        The saver's own errors (`RunConflictError` and other `TinyTasksError`s) and
        `BaseException`s such as cancellation pass unchanged. Anything else is a storage
        failure: it becomes `StorageError`, and the run writes nothing more.
        """
        if isinstance(error, TinyTasksError) or not isinstance(error, Exception):
            raise error
        if self.failure is None:
            self.failure = StorageError(self.run_id, operation, error)
            raise self.failure from error
        raise self.failure


class _GoingOn:
    """The rest of a coroutine that was stepped by hand up to a suspension: awaiting it
    hands the future it suspended on to the awaiting task, then drives it to its end."""

    __slots__ = ("_coroutine", "_suspended_on")

    def __init__(self, coroutine: Coroutine[Any, Any, None], suspended_on: Any) -> None:
        self._coroutine = coroutine
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, step = self._coroutine, self._suspended_on
        while True:
            try:
                sent = yield step
            except BaseException as error:  # cancellation: thrown into the coroutine
                try:
                    step = coroutine.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    step = coroutine.send(sent)
                except StopIteration:
                    return


async def _go_on(coroutine: Coroutine[Any, Any, None], suspended_on: Any) -> None:
    await _GoingOn(coroutine, suspended_on)


def _label(text: str) -> str:
    return text.replace("/", "_").replace("#", "_")


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None


def _handling_pause() -> bool:
    """Whether the code running now is in an `except` or `finally` a pause goes through."""
    error = sys.exc_info()[1]
    if isinstance(error, PauseRun):
        return True
    return isinstance(error, BaseExceptionGroup) and error.subgroup(PauseRun) is not None


def _position_of(site: str) -> str:
    parent, _, leaf = site.rpartition("/")
    return f"{parent}#{leaf.rpartition('#')[2]}"


def _positions(journal: Journal) -> tuple[
    dict[str, tuple[str, str]], dict[str, list[str]], dict[str, dict[int, tuple[str, str, str]]]
]:
    """Map `parent_path#index` to the recorded (site id, kind) there, each frame's path
    to its recorded sites, and each frame's path to {index: (label, kind, site id)} (what
    `Frame.allocate` replays against without building the site id).

    A recorded site also records its ancestors: `wf/b#0/interrupt#1` says that position
    `wf#0` holds the task `wf/b#0`, so replay calling another task there is refused at once.
    """
    positions: dict[str, tuple[str, str]] = {}
    by_frame: dict[str, list[str]] = {}
    at: dict[str, dict[int, tuple[str, str, str]]] = {}
    kinds = (
        (journal.answers, "interrupt"),
        (journal.timeouts, "interrupt"),
        (journal.pending, "interrupt"),
        (journal.steps, "step"),
        (journal.children, "task"),
        (journal.waits, ""),  # "sleep" or "recv": the site's label
        (journal.received, "recv"),
    )
    for recorded, leaf_kind in kinds:
        for leaf_site in recorded:
            for position, site, kind, parent, index, label in _chain(leaf_site, leaf_kind):
                if position in positions:
                    break  # this site and its ancestors are in already
                positions[position] = (site, kind)
                if parent in by_frame:
                    by_frame[parent].append(site)
                    at[parent][index] = (label, kind, site)
                else:
                    by_frame[parent] = [site]
                    at[parent] = {index: (label, kind, site)}
    return positions, by_frame, at


@functools.lru_cache(maxsize=16384)
def _chain(leaf_site: str, leaf_kind: str) -> tuple[tuple[str, str, str, str, int, str], ...]:
    """(position, site, kind, parent, index, label) for a recorded site and each of its
    ancestors,
    innermost first. A pure function of the site id, kept between the resumes of the
    runs this process drives: the same sites come back on every resume."""
    links = []
    site, kind = leaf_site, leaf_kind or leaf_site.rpartition("/")[2].rpartition("#")[0]
    while True:
        parent, slash, leaf = site.rpartition("/")
        if not slash:
            break
        label, _, index = leaf.rpartition("#")
        # The index as `allocate` writes it, or a damaged site id: a position no effect
        # is allocated at.
        canonical = index.isascii() and index.isdigit() and str(int(index)) == index
        number = int(index) if canonical else -1
        links.append((f"{parent}#{index}", site, kind, parent, number, label))
        site, kind = parent, "task"
    return tuple(links)
