"""Who acts on the runs started or resumed in a block, and who wants to hear when
their first write lands.

The HTTP layer starts and resumes runs on behalf of a caller: `acting(Acting(...))`
around the call records the caller's principal in the run's journal (on its input
entry when it starts, on each answer when it resumes), and `on_stored` is called once,
when the run's first write of that attempt has been stored (the creation, or a
resume's answers: the point where, of two resumes, exactly one goes on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Acting", "acting", "current_acting"]


@dataclass(frozen=True, slots=True)
class Acting:
    """The principal acting on a run (`None`: nobody in particular), and a callback for
    the first stored write of a run started or resumed in the block."""

    principal: str | None = None
    on_stored: Callable[[], None] | None = None


_NOBODY = Acting()
_current: ContextVar[Acting] = ContextVar("tiny_tasks_acting", default=_NOBODY)


def current_acting() -> Acting:
    """Who acts here."""
    return _current.get()


@contextmanager
def acting(who: Acting) -> Iterator[Acting]:
    """Start or resume the runs of this block (and of its asyncio tasks) as `who`."""
    token = _current.set(who)
    try:
        yield who
    finally:
        _current.reset(token)
