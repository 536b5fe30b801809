"""Values as plain JSON for HTTP responses and SSE events.

Partials, results and interrupt values are whatever the task produced; a response
carries them as plain JSON: dataclasses and Pydantic models as objects, tuples and sets
as arrays, datetimes as ISO 8601 text, UUIDs and decimals as text, enums as their value,
bytes as base64. Anything else is shown by its `repr` (never an error: a response must
not fail because a partial has an unusual type).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import math
from typing import Any

__all__ = ["dumps", "plain"]


def plain(value: Any) -> Any:
    """`value` as a JSON-compatible value (see the module)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {_key(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [plain(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    return _other(value)


def _other(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # a model_dump of another library's signature
            return repr(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if type(value).__name__ in ("UUID", "Decimal"):
        return str(value)
    return repr(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(plain(key))


def dumps(value: Any) -> str:
    """`value` as compact JSON text, through `plain`."""
    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)
