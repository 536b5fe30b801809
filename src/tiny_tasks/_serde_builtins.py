"""How standard-library values that JSON cannot hold are written as tags and read back.

A tagged value is the JSON object ``{"$": tag, "v": payload}``. The scalar types here
are encoded by plain functions; containers, dates with time zones and user types need
the recursive walk in `_serde_json`, which builds their payloads from these pieces.
Every decoder checks the payload's shape and raises `Malformed` if it is wrong.
"""

from __future__ import annotations

import base64
import math
import re
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import partial
from typing import Any

from ._serde_types import type_label
from .errors import SerializationError

TAG = "$"
VALUE = "v"

AS_IS = frozenset({str, bool, type(None)})
"""Types always written as themselves."""

# Ints this wide may exceed `sys.get_int_max_str_digits()` (at least 640 digits) as
# decimal text, so they are written in hex, which has no such limit.
WIDE_INT = 1 << 2000

_NUMBERS = frozenset({int, float, bool})
_FLOAT_WORDS = frozenset({"nan", "inf", "-inf"})
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")


class Unsupported(Exception):
    """A value cannot be encoded; collects its place while the walk unwinds."""

    def __init__(self, value_type: type, reason: str) -> None:
        super().__init__(reason)
        self.value_type = value_type
        self.reason = reason
        self.path: list[str] = []

    def error(self) -> SerializationError:
        """The `SerializationError` to raise, naming the value's place and type."""
        where = "value" + "".join(reversed(self.path))
        return SerializationError(
            f"cannot serialise {where} of type {type_label(self.value_type)}: {self.reason}"
        )


class Malformed(ValueError):
    """Stored JSON that is not a valid encoding (reported as a `SerializationError`)."""


def is_plain_json(value: Any) -> bool:
    """Whether `value` is written as itself, so it needs no encoding (the fast path).

    `False` only means "encode it": a plain value may be reported as not plain.
    """
    kind = type(value)
    if kind in AS_IS:
        return True
    if kind is int:
        return bool(-WIDE_INT < value < WIDE_INT)
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        if len(value) > 8 and holds_only_json_scalars(value):
            return True
        return all(map(is_plain_json, value))
    if kind is dict:
        if TAG in value:
            return False
        for key, item in value.items():
            if type(key) is not str or not is_plain_json(item):
                return False
        return True
    return False


def holds_only_json_scalars(items: Sequence[Any]) -> bool:
    """Whether `items` are all written as themselves, checked at C speed.

    `False` only means "look closer": an int too wide for a float may still fit JSON.
    """
    kinds = set(map(type, items))
    if kinds <= AS_IS:
        return True
    if kinds <= _NUMBERS:
        try:
            return all(map(math.isfinite, items))
        except OverflowError:
            return False
    return False


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same(value: Any) -> Any:
    return value


def _tagged(tag: str, convert: Callable[[Any], Any], value: Any) -> dict[str, Any]:
    return {TAG: tag, VALUE: convert(value)}


def _encode_int(value: int) -> Any:
    if -WIDE_INT < value < WIDE_INT:
        return value
    return {TAG: "int", VALUE: format(value, "x")}


def _encode_float(value: float) -> Any:
    return value if math.isfinite(value) else {TAG: "float", VALUE: repr(value)}


def _encode_bytes(tag: str, value: bytes | bytearray) -> dict[str, Any]:
    return {TAG: tag, VALUE: base64.b64encode(value).decode("ascii")}


def _timedelta_parts(value: timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


def _encode_timezone(value: timezone) -> dict[str, Any]:
    offset = value.utcoffset(None)
    name: str | None = value.tzname(None)
    if name == timezone(offset).tzname(None):
        name = None
    seconds = offset.days * 86400 + offset.seconds
    return {TAG: "timezone", VALUE: [seconds, offset.microseconds, name]}


def _zoneinfo_key(value: zoneinfo.ZoneInfo) -> str:
    if value.key is None:
        raise Unsupported(type(value), "it was made from a file, so it has no key to store")
    return value.key


SCALAR_ENCODERS: dict[type, Callable[[Any], Any]] = {
    str: _same,
    bool: _same,
    type(None): _same,
    int: _encode_int,
    float: _encode_float,
    bytes: partial(_encode_bytes, "bytes"),
    bytearray: partial(_encode_bytes, "bytearray"),
    date: partial(_tagged, "date", date.isoformat),
    timedelta: partial(_tagged, "timedelta", _timedelta_parts),
    timezone: _encode_timezone,
    zoneinfo.ZoneInfo: partial(_tagged, "zoneinfo", _zoneinfo_key),
    uuid.UUID: partial(_tagged, "uuid", str),
    Decimal: partial(_tagged, "decimal", str),
}
"""Encoders of the exact types whose payload holds no other value."""


def parts(payload: Any, *types: type) -> list[Any]:
    """`payload` as a list of len(types) items of those types (`object`: any)."""
    if type(payload) is not list or len(payload) != len(types):
        raise Malformed(f"expected a list of {len(types)} items, got {short(payload)}")
    for item, expected in zip(payload, types, strict=True):
        if expected is not object and type(item) is not expected:
            raise Malformed(f"expected {expected.__name__}, got {short(item)}")
    return payload


def _decode_text(convert: Callable[[str], Any], payload: Any) -> Any:
    if type(payload) is not str:
        raise Malformed(f"expected a string, got {short(payload)}")
    return convert(payload)


def _decode_int(payload: Any) -> int:
    return int(_decode_text(str, payload), 16)


def _decode_float(payload: Any) -> float:
    if payload not in _FLOAT_WORDS:
        raise Malformed(f"{short(payload)} is not a stored float")
    return float(payload)


def _decode_collection(build: type, payload: Any) -> Any:
    if type(payload) is not list:
        raise Malformed(f"expected a list, got {short(payload)}")
    return build(payload)


def _decode_pairs(payload: Any) -> dict[Any, Any]:
    if type(payload) is not list:
        raise Malformed(f"expected a list of pairs, got {short(payload)}")
    return dict(parts(pair, object, object) for pair in payload)


def _decode_bytes(build: type, payload: Any) -> Any:
    return build(base64.b64decode(_decode_text(str, payload), validate=True))


def _decode_clock(build: type[datetime] | type[time], payload: Any) -> datetime | time:
    text, zone, fold = parts(payload, str, object, int)
    naive = build.fromisoformat(text)
    if naive.tzinfo is not None or fold not in (0, 1):
        raise Malformed(f"{short(payload)} is not a stored {build.__name__}")
    if zone is not None and not isinstance(zone, tzinfo):
        raise Malformed(f"{short(zone)} is not a time zone")
    return naive.replace(tzinfo=zone, fold=fold)


def _decode_timedelta(payload: Any) -> timedelta:
    days, seconds, microseconds = parts(payload, int, int, int)
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


def _decode_timezone(payload: Any) -> timezone:
    seconds, microseconds, name = parts(payload, int, int, object)
    offset = timedelta(seconds=seconds, microseconds=microseconds)
    if name is None:
        return timezone(offset)
    return timezone(offset, _decode_text(str, name))


def _decode_zoneinfo(payload: Any) -> zoneinfo.ZoneInfo:
    key = _decode_text(str, payload)
    if not _ZONE_KEY.fullmatch(key):
        raise Malformed(f"{short(key)} is not a time zone key")
    try:
        return zoneinfo.ZoneInfo(key)
    except zoneinfo.ZoneInfoNotFoundError:
        raise SerializationError(
            f"cannot load a datetime in time zone {key!r}: this machine has no data for "
            "it; install the system tz database or the 'tzdata' package"
        ) from None


DECODERS: dict[str, Callable[[Any], Any]] = {
    "int": _decode_int,
    "float": _decode_float,
    "tuple": partial(_decode_collection, tuple),
    "set": partial(_decode_collection, set),
    "frozenset": partial(_decode_collection, frozenset),
    "dict": _decode_pairs,
    "bytes": partial(_decode_bytes, bytes),
    "bytearray": partial(_decode_bytes, bytearray),
    "datetime": partial(_decode_clock, datetime),
    "date": partial(_decode_text, date.fromisoformat),
    "time": partial(_decode_clock, time),
    "timedelta": _decode_timedelta,
    "timezone": _decode_timezone,
    "zoneinfo": _decode_zoneinfo,
    "uuid": partial(_decode_text, uuid.UUID),
    "decimal": partial(_decode_text, Decimal),
}
"""Decoders of every standard-library tag, by tag."""
