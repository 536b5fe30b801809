"""Reading an inbox form back: the answers to each interrupt, checked against its schema
(the subset the form shows), with messages a person can act on."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._forms import Asked, Submitted, first_value, widget_kind

__all__ = ["Answers", "read_answers"]


@dataclass(slots=True)
class Answers:
    """The answers read from a submitted form, by interrupt id, and the errors found."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def read_answers(items: Mapping[str, Asked], sites: Sequence[str], form: Submitted) -> Answers:
    """The answers to interrupts `sites` (whose questions are `items`) in `form`.

    Every value is checked against its schema (the subset the form shows: types,
    `enum`, `required`, `minimum` / `maximum`, `minLength` / `maxLength`, `pattern`);
    what fails is in `.errors` by field name, in words a person can act on.
    """
    found = Answers()
    for site in sites:
        item = items[site]
        choice = form.get(f"q:{site}")
        if choice:
            index = int(choice[0]) if choice[0].isdigit() else -1
            if 0 <= index < len(item.choices):
                found.values[site] = item.choices[index][1]
            else:
                found.errors[f"q:{site}"] = "That choice is not one this interrupt offers."
        elif item.schema is not None:
            _read_schema(item, form, found)
        else:
            name = f"j:{site}"
            value, error = _json(first_value(form, name, ""))
            if error:
                found.errors[name] = error
            else:
                found.values[site] = value
    return found


def _read_schema(item: Asked, form: Submitted, found: Answers) -> None:
    schema = item.schema or {}
    properties = schema.get("properties")
    if schema.get("type", "object") == "object" and isinstance(properties, dict):
        required = set(schema.get("required") or ())
        answer: dict[str, Any] = {}
        for name, sub in properties.items():
            key = f"a:{item.site}:{name}"
            sub = sub if isinstance(sub, dict) else {}
            value, error = _read_one(sub, form.get(key, []), name in required)
            if error:
                found.errors[key] = error
            elif value is not _MISSING:
                answer[name] = value
        if not any(key.startswith(f"a:{item.site}:") for key in found.errors):
            found.values[item.site] = answer
        return
    key = f"a:{item.site}"
    value, error = _read_one(schema, form.get(key, []), True)
    if error:
        found.errors[key] = error
    else:
        found.values[item.site] = None if value is _MISSING else value


_MISSING: Any = object()


def _read_one(schema: dict[str, Any], given: Sequence[str], required: bool) -> tuple[Any, str]:
    kind = widget_kind(schema)
    value: Any
    if kind == "boolean":
        return bool(given and given[0] == "true"), ""
    if kind == "multi":
        values = []
        for text in given:
            value, error = _json(text)
            if error or value not in schema["items"]["enum"]:
                return None, "Pick from the options shown."
            values.append(value)
        return values, _check(schema, values)
    text = given[0] if given else ""
    if text.strip() == "":
        return _MISSING, "This field is required." if required else ""
    if kind == "enum":
        value, error = _json(text)
        if error or value not in schema["enum"]:
            return None, "Pick one of the options shown."
        return value, ""
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None, "Enter a number."
        if schema.get("type") == "integer":
            if not number.is_integer():
                return None, "Enter a whole number."
            value = int(number)
        else:
            value = int(number) if number.is_integer() and "." not in text else number
    elif kind == "lines":
        value = [line.strip() for line in text.splitlines() if line.strip()]
    elif kind == "json":
        value, error = _json(text)
        if error:
            return None, error
    else:
        value = text
    return value, _check(schema, value)


def _check(schema: dict[str, Any], value: Any) -> str:
    """The first way `value` breaks `schema` (the subset the form shows), or ""."""
    expected = schema.get("type")
    types: dict[str, Any] = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
             "array": list, "object": dict, "null": type(None)}  # fmt: skip
    if isinstance(expected, str) and expected in types:
        wrong = not isinstance(value, types[expected]) or (
            isinstance(value, bool) and expected in ("integer", "number")
        )
        if wrong:
            return f"Enter a value of type {expected}."
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(schema.get("minimum"), (int, float)) and value < schema["minimum"]:
            return f"Enter {schema['minimum']} or more."
        if isinstance(schema.get("maximum"), (int, float)) and value > schema["maximum"]:
            return f"Enter {schema['maximum']} or less."
    if isinstance(value, str):
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            return f"Enter at least {schema['minLength']} characters."
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            return f"Enter at most {schema['maxLength']} characters."
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and re.fullmatch(pattern, value) is None:
            return "The text does not have the expected form."
    if isinstance(value, list):
        if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
            return f"Choose at least {schema['minItems']}."
        if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
            return f"Choose at most {schema['maxItems']}."
    return ""


def _json(text: str) -> tuple[Any, str]:
    if not text.strip():
        return None, "Write an answer (as JSON)."
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as error:
        return None, f"This is not valid JSON: {error.msg} (line {error.lineno})."
