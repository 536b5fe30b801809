"""`task` and `Task`: the user-facing wrapper around a task function."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, Generic, TypeVar, overload

from ._body import check_task_function
from ._context import TaskContext, current_frame
from ._outcome import submit_run
from ._run import NO_INPUT, Delivery
from ._stream import TaskStream, positional_capacity
from ._sync import SyncTaskStream, run_sync
from ._values import Command
from .errors import InvalidRunIdError, TaskInterrupted, TaskSleeping
from .savers.base import Checkpointer, check_checkpointer, check_run_id
from .serde import default_serializer

In = TypeVar("In")
Out = TypeVar("Out")
P = TypeVar("P")

__all__ = ["Task", "task"]

DEFAULT_RUN_ID = "default"


class Task(Generic[In, Out, P]):
    """A task function made resumable: call it to stream, `invoke` it to run it through.

    Every way of running takes the keyword options `run_id`, `checkpointer` and
    `delivery`. Inside a running task, a call is part of the enclosing run (its options
    are not used). `run_id` is a non-empty `str` of at most 255 characters, without NUL
    and encodable as UTF-8 (`InvalidRunIdError`, a `ValueError`, otherwise). It may be
    left out without a checkpointer or with `MemorySaver` (it is then `"default"`); a
    checkpointer whose runs outlive the process (`SqliteSaver`, `PostgresSaver`, your
    own) requires it, since every caller without one would share one run.

    `delivery="exactly_once"` (the default) records each partial as delivered before
    handing it over, so the consumer never sees one twice, even across a crash.
    `delivery="at_least_once"` records the count only with the run's other writes
    (steps, finished children, pauses, an early close): streaming then costs no write
    per partial, and after a crash the partials since the last write are sent again.

    `keep=True` keeps a finished run's outcome (status `done`, `failed` or `cancelled`,
    with its result or its error's type and message) instead of deleting it; calling the
    task again with its run id then returns that outcome (or raises `RunFailedError` /
    `RunCancelled`) and runs nothing. `None` (the default): kept under a `Worker` (or a
    `Driver` that says so) and for submitted runs, else not, as in the seed.
    """

    __slots__ = ("__dict__", "_arg_count", "fn", "name", "record")

    def __init__(self, name: str, fn: Callable[..., Any], *, record: bool = True) -> None:
        check_task_function(fn)
        self.name = name
        self.fn = fn
        self.record = record
        self._arg_count = positional_capacity(fn)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def __call__(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> TaskStream[Out, P]:
        """Start (or re-attach to, or resume with a `Command`) a run; returns its stream.

        Raises `InvalidRunIdError` (a `ValueError`) for an invalid or missing `run_id`,
        `CheckpointerTypeError` (a `TypeError`) for something that is not a checkpointer.
        """
        return TaskStream(
            self.fn,
            self.name,
            self._arg_count,
            self.record,
            input,
            self._run_id(run_id, checkpointer),
            checkpointer,
            delivery,
            keep,
        )

    def _run_id(self, run_id: str | None, checkpointer: Checkpointer | None) -> str:
        """`run_id` checked, or the default run id where one is allowed."""
        if checkpointer is not None:
            check_checkpointer(checkpointer)
        if run_id is not None:
            return check_run_id(run_id)
        if (
            checkpointer is not None
            and not getattr(checkpointer, "allows_default_run_id", False)
            and current_frame() is None
        ):
            raise InvalidRunIdError(
                f"task {self.name!r} was called with checkpointer {checkpointer!r:.80} but "
                "without run_id. Its runs outlive this process, so every call without a "
                f"run_id would share the run {DEFAULT_RUN_ID!r}: one caller would "
                "re-attach to, or resume, another's run. Pass run_id=... naming this run "
                "(an order id, a session id, str(uuid.uuid4()), ...) to every call of it"
            )
        return DEFAULT_RUN_ID

    def resume(
        self,
        value: Any = None,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> TaskStream[Out, P]:
        """Answer the run's pending interrupt with `value` and stream the rest of it.

        Raises `NoCheckpointError` (at the latest on the first `__anext__`) when there is
        nothing to resume.
        """
        return self(
            Command(resume=value),
            run_id=run_id,
            checkpointer=checkpointer,
            delivery=delivery,
            keep=keep,
        )

    async def submit(
        self,
        input: In = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer,
        keep: bool = True,
    ) -> str:
        """Store a queued run of this task for a `Worker` to start; returns its run id.

        A run id is generated when none is given. Submitting a run id that is stored
        already with the same input is the same submission: its run id is returned and
        nothing starts (an idempotency key; a finished, kept run stays as it is). Raises
        `InputMismatchError` for another input, `TaskMismatchError` for a run of another
        task, `InvalidRunIdError` for an invalid run id.
        """
        check_checkpointer(checkpointer)
        if current_frame() is not None:
            raise RuntimeError(
                f"task {self.name!r}: submit() was called inside a running task; submitting "
                "is for code outside runs (a nested call is part of its run: call or "
                "invoke it instead)"
            )
        return await submit_run(
            checkpointer,
            None if run_id is None else check_run_id(run_id),
            self.name,
            None if input is NO_INPUT else input,
            keep,
            getattr(checkpointer, "serde", None) or default_serializer(),
        )

    def invoke(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> Coroutine[Any, Any, Out]:
        """Run to the end and return the result; raises `TaskInterrupted` on a pause,
        `TaskSleeping` when the run went to sleep (`ctx.sleep`, `ctx.recv`).

        The call takes its place in the enclosing run when it is made (not when awaited),
        so concurrent `invoke`s keep their identity across replays.
        """
        return _collect(
            self(input, run_id=run_id, checkpointer=checkpointer, delivery=delivery, keep=keep)
        )

    def invoke_sync(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> Out:
        """`invoke` for synchronous code; works even where an event loop is running.

        Called from a synchronous task's body, it is part of that task's run.
        """
        run_id = self._run_id(run_id, checkpointer)
        return run_sync(
            lambda: self.invoke(
                input, run_id=run_id, checkpointer=checkpointer, delivery=delivery, keep=keep
            )
        )

    def resume_sync(
        self,
        value: Any = None,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> Out:
        """`invoke(Command(resume=value))` for synchronous code."""
        return self.invoke_sync(
            Command(resume=value),
            run_id=run_id,
            checkpointer=checkpointer,
            delivery=delivery,
            keep=keep,
        )

    def stream_sync(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
        keep: bool | None = None,
    ) -> SyncTaskStream[Out, P]:
        """The stream as a plain iterator of events, for synchronous code.

        Once it is exhausted, its `result` is the task's return value and `interrupts`
        the interrupts it paused on, as on `TaskStream`.
        """
        checked = self._run_id(run_id, checkpointer)
        return SyncTaskStream(
            lambda: self(
                input, run_id=checked, checkpointer=checkpointer, delivery=delivery, keep=keep
            ),
            checked,
        )


async def _collect(stream: TaskStream[Out, P]) -> Out:
    async for _ in stream:
        pass
    if stream.interrupts:
        raise TaskInterrupted(stream.run_id, stream.interrupts)
    if stream.status == "sleeping":
        raise TaskSleeping(stream.run_id, stream.wake_at, stream.waits)
    return stream.result  # type: ignore[return-value]


AsyncGenFn = Callable[..., AsyncIterator[P]]
CoroFn = Callable[..., Coroutine[Any, Any, Out]]
GenFn = Callable[..., Generator[P, Any, Out]]
# The same with the input's type In captured, for functions of one parameter and for
# functions of two (input, TaskContext). Other signatures fall back to Any.
AsyncGenFn1 = Callable[[In], AsyncIterator[P]]
AsyncGenFn2 = Callable[[In, TaskContext], AsyncIterator[P]]
CoroFn1 = Callable[[In], Coroutine[Any, Any, Out]]
CoroFn2 = Callable[[In, TaskContext], Coroutine[Any, Any, Out]]
GenFn1 = Callable[[In], Generator[P, Any, Out]]
GenFn2 = Callable[[In, TaskContext], Generator[P, Any, Out]]
# A generator function annotated `-> Iterator[P]`, as most are (its result is None).
# A Generator is an Iterator too: the Generator overloads come first, so they win, and
# mypy's overlap warning on them is silenced.
IterFn1 = Callable[[In], Iterator[P]]
IterFn2 = Callable[[In, TaskContext], Iterator[P]]
PlainFn1 = Callable[[In], Out]
PlainFn2 = Callable[[In, TaskContext], Out]


class _TaskDecorator:
    """What `task("name")` or `task(record=False)` returns: applies to a function."""

    __slots__ = ("name", "record")

    def __init__(self, name: str | None, record: bool) -> None:
        self.name = name
        self.record = record

    @overload
    def __call__(self, fn: AsyncGenFn1[In, P], /) -> Task[In, None, P]: ...
    @overload
    def __call__(self, fn: AsyncGenFn2[In, P], /) -> Task[In, None, P]: ...
    @overload
    def __call__(self, fn: AsyncGenFn[P], /) -> Task[Any, None, P]: ...
    @overload
    def __call__(self, fn: CoroFn1[In, Out], /) -> Task[In, Out, Any]: ...
    @overload
    def __call__(self, fn: CoroFn2[In, Out], /) -> Task[In, Out, Any]: ...
    @overload
    def __call__(self, fn: CoroFn[Out], /) -> Task[Any, Out, Any]: ...
    @overload
    def __call__(self, fn: GenFn1[In, P, Out], /) -> Task[In, Out, P]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: GenFn2[In, P, Out], /) -> Task[In, Out, P]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: GenFn[P, Out], /) -> Task[Any, Out, P]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: IterFn1[In, P], /) -> Task[In, None, P]: ...
    @overload
    def __call__(self, fn: IterFn2[In, P], /) -> Task[In, None, P]: ...
    @overload
    def __call__(self, fn: PlainFn1[In, Out], /) -> Task[In, Out, Any]: ...
    @overload
    def __call__(self, fn: PlainFn2[In, Out], /) -> Task[In, Out, Any]: ...
    @overload
    def __call__(self, fn: Callable[..., Out], /) -> Task[Any, Out, Any]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any, Any]:
        return Task(self.name or _name_of(fn), fn, record=self.record)


@overload
def task(fn: AsyncGenFn1[In, P], /) -> Task[In, None, P]: ...
@overload
def task(fn: AsyncGenFn2[In, P], /) -> Task[In, None, P]: ...
@overload
def task(fn: AsyncGenFn[P], /) -> Task[Any, None, P]: ...
@overload
def task(fn: CoroFn1[In, Out], /) -> Task[In, Out, Any]: ...
@overload
def task(fn: CoroFn2[In, Out], /) -> Task[In, Out, Any]: ...
@overload
def task(fn: CoroFn[Out], /) -> Task[Any, Out, Any]: ...
@overload
def task(fn: GenFn1[In, P, Out], /) -> Task[In, Out, P]: ...  # type: ignore[overload-overlap]
@overload
def task(fn: GenFn2[In, P, Out], /) -> Task[In, Out, P]: ...  # type: ignore[overload-overlap]
@overload
def task(fn: GenFn[P, Out], /) -> Task[Any, Out, P]: ...  # type: ignore[overload-overlap]
@overload
def task(fn: IterFn1[In, P], /) -> Task[In, None, P]: ...
@overload
def task(fn: IterFn2[In, P], /) -> Task[In, None, P]: ...
@overload
def task(name: str, fn: AsyncGenFn1[In, P], /, *, record: bool = True) -> Task[In, None, P]: ...
@overload
def task(name: str, fn: AsyncGenFn2[In, P], /, *, record: bool = True) -> Task[In, None, P]: ...
@overload
def task(name: str, fn: AsyncGenFn[P], /, *, record: bool = True) -> Task[Any, None, P]: ...
@overload
def task(name: str, fn: CoroFn1[In, Out], /, *, record: bool = True) -> Task[In, Out, Any]: ...
@overload
def task(name: str, fn: CoroFn2[In, Out], /, *, record: bool = True) -> Task[In, Out, Any]: ...
@overload
def task(name: str, fn: CoroFn[Out], /, *, record: bool = True) -> Task[Any, Out, Any]: ...
@overload
def task(  # type: ignore[overload-overlap]
    name: str, fn: GenFn1[In, P, Out], /, *, record: bool = True
) -> Task[In, Out, P]: ...
@overload
def task(  # type: ignore[overload-overlap]
    name: str, fn: GenFn2[In, P, Out], /, *, record: bool = True
) -> Task[In, Out, P]: ...
@overload
def task(  # type: ignore[overload-overlap]
    name: str, fn: GenFn[P, Out], /, *, record: bool = True
) -> Task[Any, Out, P]: ...
@overload
def task(name: str, fn: IterFn1[In, P], /, *, record: bool = True) -> Task[In, None, P]: ...
@overload
def task(name: str, fn: IterFn2[In, P], /, *, record: bool = True) -> Task[In, None, P]: ...
@overload
def task(name: str, fn: PlainFn1[In, Out], /, *, record: bool = True) -> Task[In, Out, Any]: ...
@overload
def task(name: str, fn: PlainFn2[In, Out], /, *, record: bool = True) -> Task[In, Out, Any]: ...
@overload
def task(name: str, fn: Callable[..., Out], /, *, record: bool = True) -> Task[Any, Out, Any]: ...
@overload
def task(name: str | None = None, /, *, record: bool = True) -> _TaskDecorator: ...
@overload
def task(fn: PlainFn1[In, Out], /) -> Task[In, Out, Any]: ...
@overload
def task(fn: PlainFn2[In, Out], /) -> Task[In, Out, Any]: ...
@overload
def task(fn: Callable[..., Out], /) -> Task[Any, Out, Any]: ...


def task(
    name_or_fn: str | Callable[..., Any] | None = None,
    fn: Any = NO_INPUT,
    /,
    *,
    record: bool = True,
) -> Any:
    """Wrap a function as a task: `@task`, `@task("name")`, or `task("name", fn)`.

    The function may be an async generator function, a coroutine function, a generator
    function or a plain function; it receives the input as its first positional
    argument and the `TaskContext` as its second, if it has one. `record=False` keeps
    the task's partials and result out of the journal when it runs nested (it then
    runs again on replay). Raises `TaskDefinitionError` for a non-callable.
    """
    if isinstance(name_or_fn, str) or name_or_fn is None:
        if fn is NO_INPUT:
            return _TaskDecorator(name_or_fn, record)
        return Task(name_or_fn or _name_of(fn), fn, record=record)
    if fn is not NO_INPUT:
        raise TypeError("task(fn) takes one function; use task('name', fn) to name it")
    return Task(_name_of(name_or_fn), name_or_fn, record=record)


def _name_of(fn: Callable[..., Any]) -> str:
    check_task_function(fn)
    return str(getattr(fn, "__name__", None) or type(fn).__name__)
