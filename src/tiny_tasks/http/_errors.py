"""Errors as HTTP responses, in one place: each exception class has one status, and
the body is JSON with a stable `type` (the class name) and a `message`.

Anything unexpected is logged with its traceback and answered as a 500 whose body
names no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import errors
from ._json import plain

__all__ = ["error_body", "status_of"]

logger = logging.getLogger("tiny_tasks.http")

# The most specific class wins: the first entry that the exception is an instance of.
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (errors.MalformedRequestError, 400),
    (errors.AuthenticationError, 401),
    (errors.AccessDeniedError, 403),
    (errors.UnknownTaskError, 404),
    (errors.UnknownRunError, 404),
    (errors.NoCheckpointError, 404),
    (errors.InterruptAnsweredError, 409),
    (errors.InputMismatchError, 409),
    (errors.TaskMismatchError, 409),
    (errors.RunConflictError, 409),
    (errors.RunBusyError, 409),
    (errors.AmbiguousResumeError, 409),
    (errors.UnknownInterruptError, 409),
    (errors.InterruptTimeoutError, 409),
    (errors.ReplayMismatchError, 409),
    (errors.VersionMismatchError, 412),
    (errors.RequestTooLargeError, 413),
    (errors.InvalidRequestError, 422),
    (errors.InvalidRunIdError, 422),
    (errors.SerializationError, 422),
    (errors.CheckpointerTypeError, 501),
    (errors.StorageError, 503),
    (errors.SaverConnectionError, 503),
)


def status_of(error: BaseException) -> int:
    """The HTTP status for `error`: 4xx for what the caller can fix, 503 for storage,
    500 for anything else (a bug, logged by `error_body`)."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_body(error: BaseException, status: int) -> dict[str, Any]:
    """The JSON body for `error`: `type`, `message`, and the fields a client may use."""
    if status >= 500 and not isinstance(error, errors.TinyTasksError):
        logger.error("unexpected error while serving a request", exc_info=error)
        return {
            "type": "InternalServerError",
            "message": "the server failed while handling this request; its log has the details",
        }
    body: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    run_id = getattr(error, "run_id", None)
    if run_id is not None:
        body["run_id"] = run_id
    if isinstance(error, errors.InterruptAnsweredError):
        body["answered"] = {
            site: {"value": plain(value), "by": plain(who)}
            for site, (value, who) in error.answered.items()
        }
    elif isinstance(error, errors.UnknownTaskError):
        body["known"] = error.known
    elif isinstance(error, errors.VersionMismatchError):
        body["version"] = error.stored
    return body
