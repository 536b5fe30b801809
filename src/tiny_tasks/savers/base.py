"""The checkpointer protocol: what a storage backend implements.

A saver stores, per run id, a few indexable fields plus opaque bytes, and knows nothing
of the engine. Its journal is append-only: every write replaces the small `state` blob
and the indexable fields, and appends zero or more `entries`. Every write names the
version it read (compare-and-swap), so two workers can never both drive one run.

Methods may be plain or `async`; the engine accepts both.

A complete in-memory saver, as a user would write one (the methods after `list_runs`
are the optional runtime protocol, `RuntimeSaver`, that a `Worker` needs)::

    class DictSaver:
        def __init__(self) -> None:
            self.runs: dict[str, Checkpoint] = {}
            self.mailbox = Mailbox()

        def load(self, run_id: str) -> Checkpoint | None:
            return self.runs.get(run_id)

        def save(self, write: CheckpointWrite, expected_version: int | None) -> int:
            old = self.runs.get(write.run_id)
            check_version(write.run_id, old, expected_version)
            self.runs[write.run_id] = self.mailbox.on_save(write, write.apply(old))
            return self.runs[write.run_id].version

        def delete(self, run_id: str) -> None:
            self.runs.pop(run_id, None)
            self.mailbox.forget(run_id)

        def list_runs(self, **filters: Any) -> list[RunInfo]:
            return filter_runs(self.runs.values(), **filters)

        def claim_runs(
            self, owner: str, task_names: Sequence[str], now: float, expires: float, limit: int
        ) -> list[RunInfo]:
            due = due_runs(self.runs.values(), task_names, now, limit)
            claimed = [with_lease(run, owner, expires) for run in due]
            self.runs.update((run.run_id, run) for run in claimed)
            return [run.info() for run in claimed]

        def renew_lease(self, run_id: str, owner: str, expires: float) -> Lease:
            run = self.runs.get(run_id)
            if run is None or run.lease_owner != owner:
                return Lease(held=False)
            self.runs[run_id] = replace(run, lease_expires=expires)
            return Lease(held=True, cancel_requested=run.cancel_requested)

        def release_lease(self, run_id: str, owner: str) -> None:
            run = self.runs.get(run_id)
            if run is not None and run.lease_owner == owner:
                self.runs[run_id] = replace(run, lease_owner=None, lease_expires=None)

        def request_cancel(self, run_id: str, now: float) -> RunInfo | None:
            run = self.runs.get(run_id)
            if run is None:
                return None
            self.runs[run_id] = with_cancel_request(run, now)
            return self.runs[run_id].info()

        def send_message(self, run_id: str, topic: str, data: bytes, now: float) -> int | None:
            run = self.runs.get(run_id)
            if run is None or run.status in FINISHED:
                return None
            self.runs[run_id] = woken_by_message(run, topic, now)
            return self.mailbox.send(run_id, topic, data, now)

        def next_message(self, run_id: str, topic: str) -> tuple[int, bytes] | None:
            return self.mailbox.next(run_id, topic)

        def prune(self, finished_before: float, limit: int | None = None) -> int:
            old = prunable(self.runs.values(), finished_before, limit)
            for run_id in old:
                self.delete(run_id)
            return len(old)
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

from .._clock import current_clock
from ..errors import CheckpointerTypeError, InvalidRunIdError, RunConflictError

__all__ = [
    "FINISHED",
    "MAX_RUN_ID_LENGTH",
    "Checkpoint",
    "CheckpointWrite",
    "Checkpointer",
    "Lease",
    "Mailbox",
    "Message",
    "RunInfo",
    "RunStatus",
    "RuntimeSaver",
    "check_checkpointer",
    "check_partials_limit",
    "check_run_id",
    "check_version",
    "claimable_at",
    "due_at",
    "due_runs",
    "filter_runs",
    "is_claimable",
    "prunable",
    "stamp",
    "with_cancel_request",
    "with_lease",
    "woken_by_message",
]

MAX_RUN_ID_LENGTH = 255
"""The longest run id, in characters. At most 1,020 bytes of UTF-8: far below what a
PostgreSQL btree index entry may hold (about 2,700 bytes), so every saver can index it."""

RunStatus = Literal["queued", "running", "paused", "sleeping", "done", "failed", "cancelled"]
"""Where a run is.

* `queued`: submitted, not started; any worker may start it.
* `running`: being driven (by whoever holds its lease), or abandoned by a dead driver
  (its lease expired).
* `paused`: waiting on one or more interrupts (some may have a deadline: `wake_at`).
* `sleeping`: waiting on a timer (`ctx.sleep`) or a message (`ctx.recv`) only; a worker
  continues it at `wake_at`, or when a message it waits on arrives.
* `done`, `failed`, `cancelled`: finished, with its outcome kept (a run that is not kept
  is deleted when it finishes).
"""

FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
"""The statuses of a finished run (stored only when its outcome is kept)."""

T = TypeVar("T")
MaybeAwaitable: TypeAlias = T | Awaitable[T]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The indexable fields of one stored run (what listing returns)."""

    run_id: str
    task_name: str
    status: RunStatus
    version: int
    delivered: int
    pending: tuple[str, ...]
    created_at: float
    updated_at: float
    lease_owner: str | None = None
    lease_expires: float | None = None
    wake_at: float | None = None
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One stored run: its indexable fields, the engine's state blob and its journal."""

    run_id: str
    task_name: str
    status: RunStatus
    version: int
    delivered: int
    pending: tuple[str, ...]
    state: bytes
    entries: tuple[bytes, ...]
    created_at: float
    updated_at: float
    lease_owner: str | None = None
    lease_expires: float | None = None
    wake_at: float | None = None
    cancel_requested: bool = False
    waits: tuple[str, ...] = ()

    def info(self) -> RunInfo:
        """The indexable fields alone."""
        return RunInfo(
            self.run_id,
            self.task_name,
            self.status,
            self.version,
            self.delivered,
            self.pending,
            self.created_at,
            self.updated_at,
            self.lease_owner,
            self.lease_expires,
            self.wake_at,
            self.cancel_requested,
        )


@dataclass(frozen=True, slots=True)
class CheckpointWrite:
    """One write to a run: new field values, a new state blob, entries to append."""

    run_id: str
    task_name: str
    status: RunStatus
    delivered: int
    pending: tuple[str, ...]
    state: bytes
    entries: tuple[bytes, ...] = ()
    # The runtime's fields (see "The runtime protocol" below). A saver that stores them
    # through `apply` gets them right without knowing what they mean.
    lease_owner: str | None = None
    lease_expires: float | None = None
    wake_at: float | None = None
    waits: tuple[str, ...] = ()
    taken: tuple[int, ...] = ()

    def apply(self, old: Checkpoint | None, now: float | None = None) -> Checkpoint:
        """The checkpoint that results from this write over `old` (a helper for savers).

        Stamped `now` (default: `stamp()`, the runtime's clock). The runtime's fields
        come from the write, except `cancel_requested`, which only `request_cancel` sets.
        """
        stamp_ = stamp() if now is None else now
        if old is None:
            return Checkpoint(
                self.run_id,
                self.task_name,
                self.status,
                1,
                self.delivered,
                self.pending,
                self.state,
                self.entries,
                stamp_,
                stamp_,
                self.lease_owner,
                self.lease_expires,
                self.wake_at,
                False,
                self.waits,
            )
        return replace(
            old,
            task_name=self.task_name,
            status=self.status,
            version=old.version + 1,
            delivered=self.delivered,
            pending=self.pending,
            state=self.state,
            entries=old.entries + self.entries,
            updated_at=stamp_,
            lease_owner=self.lease_owner,
            lease_expires=self.lease_expires,
            wake_at=self.wake_at,
            waits=self.waits,
        )


@runtime_checkable
class Checkpointer(Protocol):
    """Storage for run checkpoints. Methods may be plain or `async`.

    * `load(run_id)`: the stored checkpoint, or `None`.
    * `save(write, expected_version)`: apply `write` if the stored version is
      `expected_version` (`None`: the run must not exist yet); return the new version.
      Raise `RunConflictError` otherwise. The first version of a run is 1.
    * `delete(run_id)`: forget the run; deleting a missing run is not an error.
    * `list_runs(status=, task_name=, limit=, offset=)`: newest first (by creation time).

    A saver may also offer `mark_delivered(run_id, delivered, expected_version) -> int`,
    the same compare-and-swap that changes only the delivered count and bumps the
    version; the engine uses it for the per-partial write when present.

    A saver may also keep the run's stream log (both methods, or neither):

    * `append_partial(run_id, seq, data, expected_version) -> int`: the same
      compare-and-swap as `mark_delivered`, setting `delivered = seq + 1` and storing
      `data` (the encoded partial) as partial `seq` of the run's stream, in one write.
      Partials stored at `seq` and after are replaced (the log is cut at `seq`).
    * `load_partials(run_id, after=-1, limit=None) -> list[tuple[int, bytes]]`: the
      stored partials with `after < seq < delivered`, in order, at most `limit`;
      `[]` for a missing run. A write that lowers `delivered` hides the partials at
      and after it.

    With `delivery="exactly_once"` the engine then records each partial's content, and
    a re-run that streams something else than what was delivered is announced to its
    consumer (`Snapshot.rewind`) instead of being spliced onto it. A saver without them
    records only the count, and cannot tell a different re-run from the same one.
    `delete` forgets the run's partials too.

    A saver may also offer `scan_runs(status=, task_name=, after=, limit=,
    oldest_first=) -> list[Checkpoint]`: stored runs with their state blob (no
    entries), ordered by `(created_at, run_id)` (newest first, or oldest first),
    strictly after the position `after` (a `(created_at, run_id)` pair), at most
    `limit`, in one indexed query. The HTTP layer pages through runs and lists every
    pending interrupt with it (`tiny_tasks.savers._scan` has the helpers); without it,
    it walks `list_runs` and `load`.

    A saver that has a `serde` attribute chooses how the engine encodes values.

    A saver whose runs live only as long as the process (`MemorySaver`) may set the
    class attribute `allows_default_run_id = True`: a call that passes no `run_id` then
    uses the run id `"default"`, as without a checkpointer. Every other saver requires
    an explicit `run_id`, because its runs outlive the process and every caller that
    forgot one would share (and answer) the same run.

    Run ids reach a saver already checked (`check_run_id`): a non-empty `str` of at most
    `MAX_RUN_ID_LENGTH` characters, without NUL, encodable as UTF-8.
    """

    def load(self, run_id: str) -> MaybeAwaitable[Checkpoint | None]:
        """The stored checkpoint of `run_id` with all its entries, or `None`."""
        ...

    def save(self, write: CheckpointWrite, expected_version: int | None) -> MaybeAwaitable[int]:
        """Apply `write` if the run is at `expected_version`; return the new version.

        `expected_version=None` creates the run (version 1). Raises `RunConflictError`
        if the run exists when creating, or is missing or at another version.
        """
        ...

    def delete(self, run_id: str) -> MaybeAwaitable[None]:
        """Forget `run_id` and its entries; a missing run is not an error."""
        ...

    def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> MaybeAwaitable[list[RunInfo]]:
        """Stored runs, newest first, filtered by status and task name, paginated."""
        ...


@dataclass(frozen=True, slots=True)
class Lease:
    """What `renew_lease` found: whether the caller still holds the run's lease, and
    whether someone asked for the run to be cancelled."""

    held: bool
    cancel_requested: bool = False


@runtime_checkable
class RuntimeSaver(Checkpointer, Protocol):
    """A checkpointer that can back a `Worker`: the runtime protocol (all optional for a
    custom saver; every built-in saver has it). Methods may be plain or `async`.

    The runs table is the queue. Besides its checkpoint, a run's row carries its lease
    (`lease_owner`, `lease_expires`), its wake time (`wake_at`), the message topics it
    waits on (`waits`) and whether a cancel was requested (`cancel_requested`). When a
    run is *due* is `due_at(...)` of those fields, and when it can be claimed (due, and
    its lease expired) is `claimable_at(...)`: a SQL saver stores and indexes the latter
    (a partial index over the rows where it is not null), so that claiming is one
    indexed query.

    Writes (`save`) store `lease_owner`, `lease_expires`, `wake_at` and `waits` from the
    `CheckpointWrite` as they are (the engine passes the lease it holds, or none on its
    last write), never change `cancel_requested` (only `request_cancel` sets it; a new
    run starts without it), and mark the messages whose ids are in `write.taken` as
    taken, in the same transaction. A write that stores a run as `paused` or `sleeping`
    with `waits` sets `wake_at` to now when an untaken message of a topic in `waits` is
    already stored (it arrived while the run was being driven).

    * `claim_runs(owner, task_names, now, lease_expires, limit) -> list[RunInfo]`:
      atomically lease up to `limit` runs of the given tasks that are due at `now` and
      whose lease is free or expired (`lease_expires <= now`), earliest first by
      `claimable_at` (the later of the two), ties by run id:
      set `lease_owner=owner`, `lease_expires`, bump the version. Two concurrent claims
      never return the same run. Returns the claimed runs' info after the claim.
    * `renew_lease(run_id, owner, lease_expires) -> Lease`: extend the lease if `owner`
      holds it (no version bump); `Lease(held=False)` if it does not (lost, or the run
      is gone), else `Lease(True, cancel_requested)`.
    * `release_lease(run_id, owner) -> None`: clear the lease if `owner` holds it (no
      version bump): a run given up by a stopping worker is due again at once.
    * `request_cancel(run_id, now) -> RunInfo | None`: set `cancel_requested` and bump
      the version (so the driver's next write fails its compare-and-swap and it learns
      of the cancel), unless the run is finished. A `queued` run becomes `cancelled` at
      once (it never started: no code to unwind). `None` for a missing run; a finished
      one is returned unchanged.
    * `send_message(run_id, topic, data, now) -> int | None`: store a message for the
      run, return its id (ids increase across the whole store); if the run is `paused`
      or `sleeping` and waits on `topic`, set its `wake_at` to now. `None`, storing
      nothing, when the run is missing or finished.
    * `next_message(run_id, topic) -> tuple[int, bytes] | None`: the oldest untaken
      message of `topic` for the run.
    * `prune(finished_before, limit=None) -> int`: delete up to `limit` finished runs
      (`done`, `failed`, `cancelled`) last updated before `finished_before`, with their
      entries, partials and messages; return how many.

    `delete` also forgets the run's messages. Times are seconds since the epoch, as
    given by the caller (the engine's clock), never read from the database's own clock.
    """

    def claim_runs(
        self,
        owner: str,
        task_names: Sequence[str],
        now: float,
        lease_expires: float,
        limit: int,
    ) -> MaybeAwaitable[list[RunInfo]]:
        """Lease up to `limit` due runs of `task_names` to `owner`; see the class."""
        ...

    def renew_lease(self, run_id: str, owner: str, lease_expires: float) -> MaybeAwaitable[Lease]:
        """Extend `owner`'s lease on `run_id`; see the class."""
        ...

    def release_lease(self, run_id: str, owner: str) -> MaybeAwaitable[None]:
        """Give up `owner`'s lease on `run_id`; see the class."""
        ...

    def request_cancel(self, run_id: str, now: float) -> MaybeAwaitable[RunInfo | None]:
        """Ask for `run_id` to be cancelled; see the class."""
        ...

    def send_message(
        self, run_id: str, topic: str, data: bytes, now: float
    ) -> MaybeAwaitable[int | None]:
        """Store a message for `run_id`; see the class."""
        ...

    def next_message(self, run_id: str, topic: str) -> MaybeAwaitable[tuple[int, bytes] | None]:
        """The oldest untaken message of `topic` for `run_id`; see the class."""
        ...

    def prune(self, finished_before: float, limit: int | None = None) -> MaybeAwaitable[int]:
        """Delete finished runs last updated before `finished_before`; see the class."""
        ...


def due_at(
    status: str,
    lease_expires: float | None,
    wake_at: float | None,
    cancel_requested: bool,
    updated_at: float,
) -> float | None:
    """When a run with these fields is due for a worker, or `None` if never by itself.

    * `queued`: at once (`updated_at`, so the oldest submitted runs go first).
    * `running`: when its lease expires (its driver died); at once without a lease.
    * `paused`, `sleeping`: at `wake_at` (a timer, a deadline, a message); at once if a
      cancel was requested.
    * finished: never.

    A run is claimable when it is due and its lease is free or expired.
    """
    if status == "queued":
        return updated_at
    if status == "running":
        return updated_at if lease_expires is None else lease_expires
    if status in ("paused", "sleeping"):
        return updated_at if cancel_requested else wake_at
    return None


def stamp() -> float:
    """Now, by the runtime's clock (`current_clock()`): what a saver stamps on a write.

    The clock the engine and the `Worker` compare due times and leases with, so a run's
    `updated_at` (the due time of a `queued` run) is on the same clock as `now` in
    `claim_runs`, also under a test's `ManualClock`.
    """
    return current_clock().now()


def claimable_at(
    status: str,
    lease_expires: float | None,
    wake_at: float | None,
    cancel_requested: bool,
    updated_at: float,
) -> float | None:
    """When `claim_runs` may take a run with these fields: its `due_at`, or its lease's
    expiry if later; `None` if never by itself. What a saver indexes (claims take the
    earliest first, ties by run id)."""
    due = due_at(status, lease_expires, wake_at, cancel_requested, updated_at)
    if due is None or lease_expires is None:
        return due
    return max(due, lease_expires)


def is_claimable(run: RunInfo | Checkpoint, now: float) -> bool:
    """Whether `claim_runs` at `now` may take `run`: due, and its lease free or expired."""
    at = claimable_at(
        run.status, run.lease_expires, run.wake_at, run.cancel_requested, run.updated_at
    )
    return at is not None and at <= now


def due_runs(
    runs: Iterable[Checkpoint], task_names: Collection[str], now: float, limit: int
) -> list[Checkpoint]:
    """The runs of `task_names` that `claim_runs` at `now` takes, earliest `claimable_at`
    first (ties by run id), at most `limit` (a helper for in-memory savers)."""
    names = set(task_names)
    chosen = [run for run in runs if run.task_name in names and is_claimable(run, now)]

    def key(run: Checkpoint) -> tuple[float, str]:
        at = claimable_at(
            run.status, run.lease_expires, run.wake_at, run.cancel_requested, run.updated_at
        )
        return (at or 0.0, run.run_id)

    chosen.sort(key=key)
    return chosen[: max(limit, 0)]


def with_lease(run: Checkpoint, owner: str, lease_expires: float) -> Checkpoint:
    """`run` claimed by `owner` until `lease_expires`: the version bumped (a saver helper)."""
    return replace(run, lease_owner=owner, lease_expires=lease_expires, version=run.version + 1)


def with_cancel_request(run: Checkpoint, now: float) -> Checkpoint:
    """`run` after `request_cancel` at `now` (a saver helper).

    A finished run is unchanged. Otherwise `cancel_requested` is set and the version
    bumped; a `queued` run is `cancelled` at once (its state blob is kept as it was:
    the engine reads a `cancelled` run with `cancel_requested` as cancelled before it
    started) and loses any lease.
    """
    if run.status in FINISHED:
        return run
    if run.status == "queued":
        return replace(
            run,
            status="cancelled",
            version=run.version + 1,
            cancel_requested=True,
            updated_at=now,
            lease_owner=None,
            lease_expires=None,
            wake_at=None,
            waits=(),
        )
    return replace(run, cancel_requested=True, version=run.version + 1, updated_at=now)


def woken_by_message(run: Checkpoint, topic: str, now: float) -> Checkpoint:
    """`run` after a message of `topic` arrived at `now`: a `paused` or `sleeping` run
    that waits on `topic` is due at once (no version bump; a saver helper)."""
    if (
        run.status in ("paused", "sleeping")
        and topic in run.waits
        and (run.wake_at is None or run.wake_at > now)
    ):
        return replace(run, wake_at=now)
    return run


def prunable(runs: Iterable[Checkpoint], finished_before: float, limit: int | None) -> list[str]:
    """The run ids `prune(finished_before, limit)` deletes: finished runs last updated
    before `finished_before`, oldest first, at most `limit` (a helper for savers)."""
    old = sorted(
        (run.updated_at, run.run_id)
        for run in runs
        if run.status in FINISHED and run.updated_at < finished_before
    )
    if limit is not None:
        old = old[: max(limit, 0)]
    return [run_id for _, run_id in old]


@dataclass(slots=True)
class Message:
    """One stored message (see `RuntimeSaver.send_message`)."""

    id: int
    run_id: str
    topic: str
    data: bytes
    created_at: float
    taken: bool = False


@dataclass(slots=True)
class Mailbox:
    """The messages of every run, in memory: a helper for in-memory savers.

    Not locked by itself: a saver shared between threads calls it under its own lock.
    """

    next_id: int = 1
    by_run: dict[str, list[Message]] = field(default_factory=dict)

    def send(self, run_id: str, topic: str, data: bytes, now: float) -> int:
        """Store a message; return its id (ids increase across the mailbox)."""
        message = Message(self.next_id, run_id, topic, data, now)
        self.next_id += 1
        self.by_run.setdefault(run_id, []).append(message)
        return message.id

    def next(self, run_id: str, topic: str) -> tuple[int, bytes] | None:
        """The oldest untaken message of `topic` for `run_id`, as `(id, data)`."""
        for message in self.by_run.get(run_id, ()):
            if message.topic == topic and not message.taken:
                return (message.id, message.data)
        return None

    def take(self, run_id: str, ids: Collection[int]) -> None:
        """Mark the messages of `run_id` with these ids as taken."""
        if ids:
            for message in self.by_run.get(run_id, ()):
                if message.id in ids:
                    message.taken = True

    def waiting(self, run_id: str, topics: Collection[str]) -> bool:
        """Whether an untaken message of one of `topics` is stored for `run_id`."""
        return any(
            message.topic in topics and not message.taken for message in self.by_run.get(run_id, ())
        )

    def on_save(self, write: CheckpointWrite, saved: Checkpoint) -> Checkpoint:
        """`saved` (the checkpoint `write` produced) after the write's message rules:
        `write.taken` marked taken, and a `paused` / `sleeping` run that waits on a
        topic with an untaken message due at once (`wake_at` = its `updated_at`)."""
        self.take(write.run_id, write.taken)
        if (
            saved.status in ("paused", "sleeping")
            and saved.waits
            and self.waiting(saved.run_id, saved.waits)
            and (saved.wake_at is None or saved.wake_at > saved.updated_at)
        ):
            return replace(saved, wake_at=saved.updated_at)
        return saved

    def forget(self, run_id: str) -> None:
        """Delete every message of `run_id`."""
        self.by_run.pop(run_id, None)


def check_partials_limit(limit: int | None) -> None:
    """Raise `ValueError` unless `limit` suits `load_partials` (a saver helper)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, not {limit}")


def check_version(run_id: str, stored: Checkpoint | None, expected_version: int | None) -> None:
    """Raise `RunConflictError` unless `stored` is at `expected_version` (a saver helper)."""
    if expected_version is None:
        if stored is not None:
            raise RunConflictError(run_id, "the run was created by another worker")
        return
    if stored is None:
        raise RunConflictError(run_id, "the run was deleted by another worker")
    if stored.version != expected_version:
        raise RunConflictError(
            run_id,
            f"it is at version {stored.version}, this worker read version {expected_version}",
        )


def filter_runs(
    runs: Iterable[Checkpoint],
    *,
    status: RunStatus | None = None,
    task_name: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[RunInfo]:
    """Filter, sort newest first and paginate in memory (a helper for simple savers)."""
    chosen = [
        run.info()
        for run in runs
        if (status is None or run.status == status)
        and (task_name is None or run.task_name == task_name)
    ]
    chosen.sort(key=lambda run: (run.created_at, run.run_id), reverse=True)
    return chosen[offset : offset + limit]


def check_run_id(run_id: object) -> str:
    """Return `run_id` if it is a valid run id; raise `InvalidRunIdError` otherwise.

    Valid: a non-empty `str` of at most `MAX_RUN_ID_LENGTH` characters, without NUL,
    that encodes to UTF-8 (no lone surrogates). The same rules hold on every saver, so a
    run id that works with one works with all.
    """
    if type(run_id) is str and 0 < len(run_id) <= MAX_RUN_ID_LENGTH and "\0" not in run_id:
        try:
            run_id.encode("utf-8")
        except UnicodeEncodeError:
            problem = "it contains a lone surrogate, which cannot be encoded as UTF-8"
        else:
            return run_id
    elif not isinstance(run_id, str):
        problem = f"it is of type {type(run_id).__name__}, not str"
    elif not run_id:
        problem = "it is empty"
    elif len(run_id) > MAX_RUN_ID_LENGTH:
        problem = f"it has {len(run_id)} characters"
    else:
        problem = "it contains a NUL character"
    shown = repr(run_id)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise InvalidRunIdError(
        f"invalid run_id {shown}: {problem}. A run id must be a non-empty str of at most "
        f"{MAX_RUN_ID_LENGTH} characters, without NUL and encodable as UTF-8 (pass "
        "str(value) yourself to use a number or an id of another type)"
    )


def check_checkpointer(checkpointer: object) -> None:
    """Raise `CheckpointerTypeError` unless `checkpointer` has `load`, `save` and `delete`."""
    if isinstance(checkpointer, type):
        problem = f"a class, not an instance; pass {checkpointer.__name__}(...)"
    else:
        missing = [
            name
            for name in ("load", "save", "delete")
            if not callable(getattr(checkpointer, name, None))
        ]
        if not missing:
            return
        problem = f"{type(checkpointer).__name__}, which has no {', '.join(missing)} method"
        if isinstance(checkpointer, str):
            problem += (
                f". To keep runs in a SQLite file, pass SqliteSaver({checkpointer!r}) "
                "(from tiny_tasks.savers); for PostgreSQL, PostgresSaver(conninfo)"
            )
    raise CheckpointerTypeError(
        "checkpointer must be a Checkpointer: an object with load, save and delete "
        "methods, such as MemorySaver(), SqliteSaver(path) or PostgresSaver(conninfo). "
        f"Got {checkpointer!r:.80}: {problem}"
    )
