"""OpenTelemetry spans for run attempts and executed steps (the optional `otel` extra).

Only `opentelemetry-api` is used, imported lazily: the user configures the SDK (a
tracer provider and exporter) as for any library. A `Worker(tracing=True)`, or a block
under `tracing()`, opens one span per run attempt (`tiny_tasks.run`) and, inside it, one
per step actually executed (`tiny_tasks.step`); a replayed step runs nothing and emits
no span. Attributes: `tiny_tasks.run_id`, `tiny_tasks.task`, `tiny_tasks.site_id`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["attempt", "require", "set_outcome", "step_span", "tracing"]

_tracer: ContextVar[Any] = ContextVar("tiny_tasks_tracer", default=None)


def require() -> Any:
    """The tiny-tasks tracer; `ImportError` naming the extra without opentelemetry-api."""
    try:
        from opentelemetry import trace
    except ImportError as error:
        raise ImportError(
            "tracing needs the OpenTelemetry API: pip install 'tiny-tasks[otel]' "
            "(and configure an SDK tracer provider to export the spans)"
        ) from error
    from . import __name__ as package

    return trace.get_tracer(package)


@contextmanager
def tracing() -> Iterator[None]:
    """Emit spans for the runs driven in this block (their attempts and executed steps)."""
    token = _tracer.set(require())
    try:
        yield
    finally:
        _tracer.reset(token)


@contextmanager
def attempt(enabled: bool, run_id: str, task_name: str, status: str) -> Iterator[Any]:
    """A span for one attempt at driving a run (or `None` when tracing is off)."""
    tracer = require() if enabled else _tracer.get()
    if tracer is None:
        yield None
        return
    token = _tracer.set(tracer)
    try:
        with tracer.start_as_current_span(
            "tiny_tasks.run",
            attributes={
                "tiny_tasks.run_id": run_id,
                "tiny_tasks.task": task_name,
                "tiny_tasks.claimed_status": status,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span
    finally:
        _tracer.reset(token)


def set_outcome(span: Any, outcome: str, error: BaseException | None = None) -> None:
    """Record how an attempt ended on its span."""
    if span is None:
        return
    span.set_attribute("tiny_tasks.outcome", outcome)
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


@contextmanager
def step_span(run_id: str, task_name: str, site_id: str) -> Iterator[Any]:
    """A span around a step's execution when tracing is on, else `None` (one contextvar
    read: the hot path stays as fast)."""
    tracer = _tracer.get()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        "tiny_tasks.step",
        attributes={
            "tiny_tasks.run_id": run_id,
            "tiny_tasks.task": task_name,
            "tiny_tasks.site_id": site_id,
        },
    ) as span:
        yield span
