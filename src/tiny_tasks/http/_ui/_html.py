"""HTML with escaping by default: `html(template, **values)` escapes every value that
is not already `Markup` (text built by this module), so a value can never add markup."""

from __future__ import annotations

import datetime
import html as _stdlib_html
import json
import string
from collections.abc import Iterable
from typing import Any

from .._json import plain

__all__ = ["Markup", "ago", "escape", "html", "join", "pretty", "timestamp"]


class Markup(str):
    """Text that is already HTML (the output of `html`, `escape` or `join`)."""

    __slots__ = ()


def escape(value: Any) -> Markup:
    """`value` as HTML text: `Markup` as it is, anything else through `str` and escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(_stdlib_html.escape("" if value is None else str(value), quote=True))


def html(template: str, **values: Any) -> Markup:
    """`template` (`string.Template` syntax: `$name`) with each value escaped."""
    return Markup(string.Template(template).substitute({k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[Any], separator: str = "") -> Markup:
    """The parts, each escaped, one after the other."""
    return Markup(separator.join(escape(part) for part in parts))


def pretty(value: Any, limit: int = 4000) -> str:
    """`value` as indented JSON text (plain text: escape it where it is shown), cut at
    `limit` characters."""
    text = json.dumps(plain(value), indent=2, ensure_ascii=False)
    return (
        text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more characters)"
    )


def ago(seconds: float) -> str:
    """A duration in words: "just now", "12 s", "3 min", "2 h", "4 d"."""
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def timestamp(when: float, now: float) -> Markup:
    """A `<time>` element: relative text ("3 min ago", "in 2 h") that the page's script
    keeps current, and the UTC time as its title."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    words = ago(when - now)
    if words != "just now":
        words = f"in {words}" if when > now else f"{words} ago"
    return html(
        '<time datetime="$iso" data-ts="$ts" title="$title">$words</time>',
        iso=moment.isoformat(),
        ts=f"{when:.3f}",
        title=moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
        words=words,
    )
