"""`check_runs`: would the code importable now resume the stored runs? Asked before deploying.

Each run is dry-replayed by the engine itself, against a read-only view of its stored
checkpoint (`_dry.DryView`): recorded steps, answers and children replay, and every
replay check is made, as on any resume. A resume writes nothing before its first new
effect (a step that was never recorded, a new partial or child result, a pause, the
end); the dry replay stops at that first write. No answer is given, so a paused run
replays up to its pending interrupts and pauses on them again. Nothing is ever written
to the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._dry import DryStop, DryView
from ._inspect import list_runs
from ._run import resolve
from ._task import Task
from .errors import ReplayMismatchError, SerializationError
from .savers.base import Checkpoint, Checkpointer, RunInfo
from .serde import default_serializer

__all__ = ["CheckReport", "RunCheck", "check_runs"]

_NEVER_CHECKED = frozenset({"done", "failed"})


@dataclass(frozen=True, slots=True, repr=False)
class RunCheck:
    """The verdict on one stored run: would the code checked resume it?

    `compatible` runs replay to where they stopped (`reached` says how far the dry
    replay went). An incompatible run has `site` (where replay and journal part),
    `recorded` (what the journal holds there) and `found` (what the code does there);
    `site` is `None` when the run cannot be replayed at all (no such task, a journal
    that does not decode). `old_patches` are the patch ids whose old branch it takes.
    """

    run_id: str
    task_name: str
    status: str
    compatible: bool
    reached: str
    site: str | None = None
    recorded: str | None = None
    found: str | None = None
    old_patches: tuple[str, ...] = ()

    def __repr__(self) -> str:
        head = f"RunCheck({self.run_id!r}, task={self.task_name!r}, {self.status}"
        patches = f", old_patches={list(self.old_patches)}" if self.old_patches else ""
        if self.compatible:
            return f"{head}: compatible, {self.reached}{patches})"
        where = f" at {self.site!r}" if self.site is not None else ""
        return f"{head}: incompatible{where}: recorded {self.recorded}, found {self.found})"


@dataclass(frozen=True, slots=True, repr=False)
class CheckReport:
    """What `check_runs` found: counts, every incompatible run, and the patches in use.

    `checked` runs were dry-replayed (`compatible + len(incompatible)`); `skipped` were
    not, for their status (finished, failed, or running without `running=True`).
    `old_patches` maps each patch id to the number of checked runs that still take
    its old branch: `deprecate_patch` for it would refuse those.
    """

    checked: int
    compatible: int
    skipped: int
    incompatible: tuple[RunCheck, ...] = ()
    old_patches: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every checked run is compatible."""
        return not self.incompatible

    def __repr__(self) -> str:
        return (
            f"CheckReport(checked={self.checked}, compatible={self.compatible}, "
            f"incompatible={len(self.incompatible)}, skipped={self.skipped}, "
            f"old_patches={self.old_patches})"
        )


async def check_runs(
    checkpointer: Checkpointer,
    tasks: Iterable[Task[Any, Any, Any]],
    *,
    running: bool = False,
    jobs: int = 8,
    timeout: float | None = 60.0,
    page_size: int = 500,
    on_result: Callable[[RunCheck], Any] | None = None,
) -> CheckReport:
    """Dry-replay every waiting stored run against `tasks` (the code as it is now).

    Checks every stored run that waits to be resumed (paused, and any waiting status
    other than running, done and failed); `running=True` checks running ones too. No
    step runs, nothing is delivered and nothing is written: the store keeps every byte.
    A run is compatible when replay lines up with its journal, with every check a
    resume makes, up to where a resume makes its first write: its pending interrupts
    (where a paused run pauses again, having reached what every frame it unwinds
    recorded), a step that was never recorded, a new partial, or its end.

    Runs are listed a page (`page_size`) at a time and checked `jobs` at a time, each
    within `timeout` seconds; `on_result` is called with each run's `RunCheck` as it
    is made. Raises `ValueError` for two different tasks of one name, and what the
    checkpointer raises when listing or loading fails.
    """
    if jobs < 1 or page_size < 1:
        raise ValueError(f"jobs and page_size must be at least 1 (got {jobs}, {page_size})")
    by_name: dict[str, Task[Any, Any, Any]] = {}
    for given in tasks:
        other = by_name.setdefault(given.name, given)
        if other is not given:
            raise ValueError(
                f"two different tasks are named {given.name!r}; stored runs name their "
                "task, so give each task a name of its own"
            )
    serde = getattr(checkpointer, "serde", None) or default_serializer()
    queue: asyncio.Queue[RunInfo | None] = asyncio.Queue(maxsize=2 * jobs)
    skipped = compatible = 0
    incompatible: list[RunCheck] = []
    old_patches: dict[str, int] = {}

    async def produce() -> None:
        nonlocal skipped
        offset = 0
        while True:
            page = await list_runs(checkpointer, limit=page_size, offset=offset)
            for info in page:
                if info.status in _NEVER_CHECKED or (info.status == "running" and not running):
                    skipped += 1
                else:
                    await queue.put(info)
            if len(page) < page_size:
                break
            offset += len(page)
        for _ in range(jobs):
            await queue.put(None)

    async def work() -> None:
        nonlocal compatible
        while (info := await queue.get()) is not None:
            stored = await resolve(checkpointer.load(info.run_id))
            if stored is None or stored.status in _NEVER_CHECKED:
                continue  # it finished while the check ran
            result = await check_stored_run(stored, by_name, serde, timeout)
            if result.compatible:
                compatible += 1
            else:
                incompatible.append(result)
            for patch_id in result.old_patches:
                old_patches[patch_id] = old_patches.get(patch_id, 0) + 1
            if on_result is not None:
                on_result(result)

    workers = [asyncio.ensure_future(produce())]
    workers += [asyncio.ensure_future(work()) for _ in range(jobs)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    incompatible.sort(key=lambda result: result.run_id)
    return CheckReport(
        checked=compatible + len(incompatible),
        compatible=compatible,
        skipped=skipped,
        incompatible=tuple(incompatible),
        old_patches=dict(sorted(old_patches.items())),
    )


async def check_stored_run(
    stored: Checkpoint,
    tasks: dict[str, Task[Any, Any, Any]],
    serde: Any,
    timeout: float | None = None,
) -> RunCheck:
    """Dry-replay one stored run against the task of its name in `tasks`."""
    verdict = _Verdict(stored)
    task = tasks.get(stored.task_name)
    if task is None:
        return verdict.refuse(
            None,
            f"a run of task {stored.task_name!r}",
            "no task of that name in the code checked (renamed or removed?)",
        )
    stream = task(run_id=stored.run_id, checkpointer=DryView(stored, serde))
    try:
        async with asyncio.timeout(timeout):
            async for _ in stream:
                pass
    except TimeoutError:
        return verdict.refuse(
            None,
            "a replay that reaches new ground",
            f"a dry replay still going after {timeout} s (it awaits something outside a "
            "step, or streams without end)",
        )
    except BaseException as error:  # every way a dry replay ends is a verdict
        if isinstance(error, asyncio.CancelledError):
            raise
        return verdict.judge(error, _old_patches(stream))
    finally:
        await stream.aclose()
    return verdict.accept("the replay ended", _old_patches(stream))


def _old_patches(stream: Any) -> tuple[str, ...]:
    return tuple(sorted(stream._run.old_branches))


class _Verdict:
    """Turns how a dry replay ended into a `RunCheck`."""

    def __init__(self, stored: Checkpoint) -> None:
        self.stored = stored

    def accept(self, reached: str, patches: tuple[str, ...]) -> RunCheck:
        stored = self.stored
        return RunCheck(
            stored.run_id, stored.task_name, stored.status, True, reached, old_patches=patches
        )

    def refuse(
        self, site: str | None, recorded: str, found: str, patches: tuple[str, ...] = ()
    ) -> RunCheck:
        stored = self.stored
        return RunCheck(
            stored.run_id,
            stored.task_name,
            stored.status,
            False,
            "replay did not line up",
            site,
            recorded,
            found,
            patches,
        )

    def judge(self, error: BaseException, patches: tuple[str, ...]) -> RunCheck:
        leaves = list(_leaves(error))
        for leaf in leaves:
            if isinstance(leaf, ReplayMismatchError):
                return self.refuse(leaf.site_id, leaf.recorded, leaf.found, patches)
        for leaf in leaves:
            if isinstance(leaf, SerializationError):
                return self.refuse(None, "a journal this code can decode", str(leaf), patches)
        stop = next((leaf for leaf in leaves if isinstance(leaf, DryStop)), None)
        if stop is None:
            error = leaves[0] if leaves else error
            return self._failed(error, patches)
        if stop.kind == "pause":  # the engine checked that it reached what it recorded
            reached = f"paused on {list(stop.pending)}" if stop.pending else "sleeping"
            return self.accept(reached, patches)
        if stop.kind == "end":
            if stop.failure is not None:
                return self._failed(stop.failure, patches)
            return self.accept("the replay would finish the run", patches)
        return self.accept(f"new ground: {stop.detail}", patches)

    def _failed(self, error: BaseException, patches: tuple[str, ...]) -> RunCheck:
        return self.refuse(
            None,
            "a replay that goes on",
            f"the task raised {type(error).__name__}: {error}",
            patches,
        )


def _leaves(error: BaseException) -> Iterable[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error
