"""`task` and `Task`: the user-facing wrapper around a task function."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, Generic, TypeVar, overload

from ._body import check_task_function
from ._run import NO_INPUT, Delivery
from ._stream import TaskStream, positional_capacity
from ._sync import iterate_sync, run_sync
from ._values import Command, Event
from .errors import TaskInterrupted
from .savers.base import Checkpointer

In = TypeVar("In")
Out = TypeVar("Out")
P = TypeVar("P")

__all__ = ["Task", "task"]

DEFAULT_RUN_ID = "default"


class Task(Generic[In, Out, P]):
    """A task function made resumable: call it to stream, `invoke` it to run it through.

    Every way of running takes the keyword options `run_id` (default `"default"`),
    `checkpointer` and `delivery`. Inside a running task, a call is part of the
    enclosing run.

    `delivery="exactly_once"` (the default) records each partial as delivered before
    handing it over, so the consumer never sees one twice, even across a crash.
    `delivery="at_least_once"` records the count only with the run's other writes
    (steps, finished children, pauses, an early close): streaming then costs no write
    per partial, and after a crash the partials since the last write are sent again.
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
    ) -> TaskStream[Out, P]:
        """Start (or re-attach to, or resume with a `Command`) a run; returns its stream."""
        return TaskStream(
            self.fn,
            self.name,
            self._arg_count,
            self.record,
            input,
            DEFAULT_RUN_ID if run_id is None else run_id,
            checkpointer,
            delivery,
        )

    def resume(
        self,
        value: Any = None,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
    ) -> TaskStream[Out, P]:
        """Answer the run's pending interrupt with `value` and stream the rest of it.

        Raises `NoCheckpointError` (at the latest on the first `__anext__`) when there is
        nothing to resume.
        """
        return self(
            Command(resume=value), run_id=run_id, checkpointer=checkpointer, delivery=delivery
        )

    def invoke(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
    ) -> Coroutine[Any, Any, Out]:
        """Run to the end and return the result; raises `TaskInterrupted` on a pause.

        The call takes its place in the enclosing run when it is made (not when awaited),
        so concurrent `invoke`s keep their identity across replays.
        """
        return _collect(self(input, run_id=run_id, checkpointer=checkpointer, delivery=delivery))

    def invoke_sync(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
    ) -> Out:
        """`invoke` for synchronous code; works even where an event loop is running."""
        return run_sync(
            lambda: self.invoke(input, run_id=run_id, checkpointer=checkpointer, delivery=delivery)
        )

    def resume_sync(
        self,
        value: Any = None,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
    ) -> Out:
        """`invoke(Command(resume=value))` for synchronous code."""
        return self.invoke_sync(
            Command(resume=value), run_id=run_id, checkpointer=checkpointer, delivery=delivery
        )

    def stream_sync(
        self,
        input: In | Command = NO_INPUT,
        /,
        *,
        run_id: str | None = None,
        checkpointer: Checkpointer | None = None,
        delivery: Delivery = "exactly_once",
    ) -> Iterator[Event[P]]:
        """The stream as a plain iterator of events, for synchronous code."""
        return iterate_sync(
            lambda: self(input, run_id=run_id, checkpointer=checkpointer, delivery=delivery)
        )


async def _collect(stream: TaskStream[Out, P]) -> Out:
    async for _ in stream:
        pass
    if stream.interrupts:
        raise TaskInterrupted(stream.run_id, stream.interrupts)
    return stream.result  # type: ignore[return-value]


AsyncGenFn = Callable[..., AsyncIterator[P]]
CoroFn = Callable[..., Coroutine[Any, Any, Out]]
GenFn = Callable[..., Generator[P, Any, Out]]


class _TaskDecorator:
    """What `task("name")` or `task(record=False)` returns: applies to a function."""

    __slots__ = ("name", "record")

    def __init__(self, name: str | None, record: bool) -> None:
        self.name = name
        self.record = record

    @overload
    def __call__(self, fn: AsyncGenFn[P], /) -> Task[Any, None, P]: ...
    @overload
    def __call__(self, fn: CoroFn[Out], /) -> Task[Any, Out, Any]: ...
    @overload
    def __call__(self, fn: GenFn[P, Out], /) -> Task[Any, Out, P]: ...
    @overload
    def __call__(self, fn: Callable[..., Out], /) -> Task[Any, Out, Any]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any, Any]:
        return Task(self.name or _name_of(fn), fn, record=self.record)


@overload
def task(fn: AsyncGenFn[P], /) -> Task[Any, None, P]: ...
@overload
def task(fn: CoroFn[Out], /) -> Task[Any, Out, Any]: ...
@overload
def task(fn: GenFn[P, Out], /) -> Task[Any, Out, P]: ...
@overload
def task(name: str, fn: AsyncGenFn[P], /, *, record: bool = True) -> Task[Any, None, P]: ...
@overload
def task(name: str, fn: CoroFn[Out], /, *, record: bool = True) -> Task[Any, Out, Any]: ...
@overload
def task(name: str, fn: GenFn[P, Out], /, *, record: bool = True) -> Task[Any, Out, P]: ...
@overload
def task(name: str, fn: Callable[..., Out], /, *, record: bool = True) -> Task[Any, Out, Any]: ...
@overload
def task(name: str | None = None, /, *, record: bool = True) -> _TaskDecorator: ...
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
