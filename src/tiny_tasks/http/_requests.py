"""Reading request bodies and parameters: JSON objects of known fields, checked types,
and a task's input checked against the type its function declares."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import inspect
import json
import typing
from typing import Any

from .._run import NO_INPUT
from .._task import Task
from ..errors import InvalidRequestError, MalformedRequestError, RequestTooLargeError
from ..savers.base import check_run_id

__all__ = [
    "check_input",
    "decode_cursor",
    "encode_cursor",
    "fields_of",
    "read_json",
    "run_id_field",
]

if typing.TYPE_CHECKING:
    from starlette.requests import Request


async def read_json(request: Request, limit: int, *, empty: Any = NO_INPUT) -> Any:
    """The request body as JSON; `empty` for an empty body (if given).

    Raises `RequestTooLargeError` past `limit` bytes (read no further), and
    `MalformedRequestError` for a body that is not JSON.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLargeError(limit)
    if not body.strip():
        if empty is not NO_INPUT:
            return empty
        raise MalformedRequestError("the request has no body; send a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedRequestError(f"the request body is not valid JSON: {error}") from None


def fields_of(
    body: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`body` as a JSON object with only `allowed` fields and every `required` one."""
    if not isinstance(body, dict):
        raise MalformedRequestError(
            f"the request body must be a JSON object, not {_json_kind(body)}"
        )
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequestError(
            f"unknown field {unknown[0]!r}; this endpoint takes {', '.join(allowed)}"
        )
    missing = [name for name in required if name not in body]
    if missing:
        raise InvalidRequestError(f"the field {missing[0]!r} is required")
    return body


def string_field(body: dict[str, Any], name: str) -> str | None:
    """The string field `name` of `body` (`None` when absent)."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"{name!r} must be a string, not {_json_kind(value)}")
    return value


def run_id_field(value: Any, where: str = "run_id") -> str:
    """A run id from a request; `InvalidRequestError` if it is not a valid one."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where!r} must be a string, not {_json_kind(value)}")
    try:
        return check_run_id(value)
    except ValueError as error:
        raise InvalidRequestError(f"{where!r}: {error}") from None


def check_input(task: Task[Any, Any, Any], value: Any) -> Any:
    """`value` (decoded JSON) as the input `task`'s function declares.

    A Pydantic model or a dataclass is built from a JSON object; `str`, `int`, `float`,
    `bool`, `list` and `dict` are checked; other annotations (or none) take the value
    as it is. Raises `InvalidRequestError` naming what does not fit.
    """
    expected = _input_type(task)
    if expected is None:
        return value
    validate = getattr(expected, "model_validate", None)
    if callable(validate):
        try:
            return validate(value)
        except Exception as error:  # pydantic.ValidationError, without importing pydantic
            raise InvalidRequestError(
                f"'input' does not fit {expected.__name__}: {error}"
            ) from None
    if isinstance(expected, type) and dataclasses.is_dataclass(expected):
        if not isinstance(value, dict):
            raise InvalidRequestError(
                f"'input' must be a JSON object for {expected.__name__}, not {_json_kind(value)}"
            )
        try:
            return expected(**value)
        except TypeError as error:
            raise InvalidRequestError(
                f"'input' does not fit {expected.__name__}: {error}"
            ) from None
    if expected in (str, int, float, bool, list, dict):
        fits = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            fits = True
        if not fits:
            raise InvalidRequestError(
                f"'input' of task {task.name!r} must be {_JSON_NAMES[expected]}, "
                f"not {_json_kind(value)}"
            )
    return value


_JSON_NAMES: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "an object",
}


def _input_type(task: Task[Any, Any, Any]) -> Any:
    try:
        parameters = list(inspect.signature(task.fn).parameters.values())
        hints = typing.get_type_hints(task.fn)
    except Exception:  # an annotation that does not resolve: take the input as it is
        return None
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return None
    hint = hints.get(parameters[0].name)
    return hint if isinstance(hint, type) else None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def encode_cursor(created_at: float, run_id: str) -> str:
    """An opaque page cursor for the position `(created_at, run_id)`."""
    raw = json.dumps([created_at, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    """The position an `encode_cursor` text names; `InvalidRequestError` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        created_at, run_id = json.loads(raw)
        if isinstance(created_at, (int, float)) and isinstance(run_id, str):
            return float(created_at), run_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise InvalidRequestError(
        f"'cursor' {text[:40]!r} is not a cursor this server gave; pass the next_cursor "
        "of the previous page"
    )
