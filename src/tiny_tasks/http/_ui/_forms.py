"""Answering an interrupt from a form: the value convention and the form (`_answers`
reads it back).

An interrupt value is shown one of three ways (docs/inbox.md):

* `{"schema": {...}, "title"?, "description"?, "default"?}`: a form built from the JSON
  Schema (an object's properties, or one value), checked in the browser and again here;
* a value that lists `choices` (or `options`), or a schema with an `enum`: one button
  per choice (as well as the form);
* anything else: the value as formatted JSON, and a JSON answer box.

Field names carry the interrupt id (`a:<id>:<property>`, `j:<id>`, `q:<id>`), so the
forms of one run's interrupts can be sent together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._json import plain
from ._html import Markup, html, join, pretty

__all__ = ["Asked", "Submitted", "asked", "first_value", "render_answer", "widget_kind"]

_MAX_CHOICES = 12

Submitted = Mapping[str, Sequence[str]]
"""A submitted form: field name -> its values, in order."""


@dataclass(frozen=True, slots=True)
class Asked:
    """What an interrupt asks, read from its value by the convention."""

    site: str
    value: Any
    title: str
    description: str | None = None
    schema: dict[str, Any] | None = None
    default: Any = None
    choices: tuple[tuple[str, Any], ...] = ()  # (label, answer)

    @property
    def has_fields(self) -> bool:
        """Whether its form has fields to fill (not only its choice buttons)."""
        if self.schema is None:
            return not self.choices
        return not _bare_enum(self)


_SHOWN = frozenset({"title", "question", "message", "description", "choices", "options"})


def _bare_enum(item: Asked) -> bool:
    schema = item.schema or {}
    return bool(item.choices) and "type" not in schema and len(schema) <= 3


def asked(site: str, value: Any) -> Asked:
    """Read interrupt `site`'s `value` by the convention (see the module)."""
    value = plain(value)
    title, description, schema, default = None, None, None, None
    if isinstance(value, dict):
        if isinstance(value.get("schema"), dict):
            schema = value["schema"]
            default = value.get("default", schema.get("default"))
            title = value.get("title") or schema.get("title")
            description = value.get("description") or schema.get("description")
        else:
            title = value.get("title") or value.get("question") or value.get("message")
            description = value.get("description")
    choices = _choices(value, schema)
    if not isinstance(title, str):
        title = (
            f"{value}" if isinstance(value, str) and len(value) <= 120 else "An answer is needed"
        )
    return Asked(
        site,
        value,
        title,
        description if isinstance(description, str) else None,
        schema,
        default,
        choices,
    )


def _choices(value: Any, schema: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    listed: Any = None
    if schema is not None:
        listed = schema.get("enum")
    elif isinstance(value, dict):
        listed = value.get("choices", value.get("options"))
    if not isinstance(listed, list) or not 0 < len(listed) <= _MAX_CHOICES:
        return ()
    found = []
    for choice in listed:
        if isinstance(choice, dict) and "value" in choice:
            label = choice.get("label", choice["value"])
            found.append((_label(label), choice["value"]))
        else:
            found.append((_label(choice), choice))
    return tuple(found)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- the form ---------------------------------------------------------------------------


def render_answer(
    item: Asked, submitted: Submitted | None = None, errors: Mapping[str, str] | None = None
) -> Markup:
    """The inside of an interrupt's answer form: its question, its fields (with what was
    `submitted` before, and `errors` by field name), its choice buttons."""
    submitted = submitted or {}
    errors = errors or {}
    parts = [html('<h3 class="question">$title</h3>', title=item.title)]
    if item.description:
        parts.append(html('<p class="description">$text</p>', text=item.description))
    if item.schema is not None:
        parts.append(_schema_fields(item, submitted, errors))
    elif item.choices:
        rest = {k: v for k, v in item.value.items() if k not in _SHOWN}
        if rest:
            parts.append(
                html(
                    '<details class="more-value"><summary>Details</summary>'
                    '<pre class="value">$value</pre></details>',
                    value=pretty(rest),
                )
            )
    else:
        name = f"j:{item.site}"
        parts.append(
            html(
                '<pre class="value" tabindex="0" aria-label="The interrupt\'s value">$value</pre>',
                value=pretty(item.value),
            )
        )
        parts.append(
            _field(
                name,
                "Answer (JSON)",
                html(
                    '<textarea name="$name" id="$id" rows="3" required spellcheck="false" '
                    "placeholder='\"approved\"' data-json>$text</textarea>",
                    name=name,
                    id=_id(name),
                    text=first_value(submitted, name, ""),
                ),
                errors.get(name),
                'Any JSON value: "text" in quotes, true, 42, {"key": "value"}.',
            )
        )
    if item.choices:
        parts.append(_choice_buttons(item))
    return join(parts)


def _choice_buttons(item: Asked) -> Markup:
    buttons = [
        html(
            '<button type="submit" class="choice" name="$name" value="$index" '
            "formnovalidate>$label</button>",
            name=f"q:{item.site}",
            index=index,
            label=label,
        )
        for index, (label, _) in enumerate(item.choices)
    ]
    return html(
        '<div class="choices" role="group" aria-label="Quick answers">$buttons</div>',
        buttons=join(buttons),
    )


def _schema_fields(item: Asked, submitted: Submitted, errors: Mapping[str, str]) -> Markup:
    schema = item.schema or {}
    properties = schema.get("properties")
    if schema.get("type", "object") == "object" and isinstance(properties, dict):
        required = set(schema.get("required") or ())
        defaults = item.default if isinstance(item.default, dict) else {}
        return join(
            _widget(
                f"a:{item.site}:{name}",
                sub if isinstance(sub, dict) else {},
                name in required,
                defaults.get(name, sub.get("default") if isinstance(sub, dict) else None),
                submitted,
                errors,
                name,
            )
            for name, sub in properties.items()
        )
    if _bare_enum(item):
        return Markup("")  # a bare enum: its buttons are the form
    return _widget(f"a:{item.site}", schema, True, item.default, submitted, errors, "Answer")


def _widget(
    name: str,
    schema: dict[str, Any],
    required: bool,
    default: Any,
    submitted: Submitted,
    errors: Mapping[str, str],
    fallback_label: str,
) -> Markup:
    label = schema.get("title") or fallback_label
    hint = schema.get("description")
    kind = widget_kind(schema)
    given = submitted.get(name)
    field_id = _id(name)
    attrs = _attributes(schema, kind, required)
    if kind == "enum":
        chosen = given[0] if given else (json.dumps(plain(default)) if default is not None else "")
        options = [] if required else [Markup('<option value="">—</option>')]
        for option in schema["enum"]:
            encoded = json.dumps(plain(option))
            options.append(
                html(
                    '<option value="$value"$selected>$label</option>',
                    value=encoded,
                    selected=Markup(" selected") if encoded == chosen else "",
                    label=_label(option),
                )
            )
        control = html(
            '<select name="$name" id="$id"$attrs>$options</select>',
            name=name,
            id=field_id,
            attrs=attrs,
            options=join(options),
        )
    elif kind == "boolean":
        checked = bool(given) if submitted else bool(default)
        control = html(
            '<input type="checkbox" name="$name" id="$id" value="true"$checked>',
            name=name,
            id=field_id,
            checked=Markup(" checked") if checked else "",
        )
        return html(
            '<div class="field check">$control<label for="$id">$label</label>$hint$error</div>',
            control=control,
            id=field_id,
            label=label,
            hint=_hint(hint),
            error=_error(name, errors.get(name)),
        )
    elif kind == "multi":
        picked = set(given or []) if submitted else {json.dumps(plain(v)) for v in default or []}
        boxes = [
            html(
                '<label class="option"><input type="checkbox" name="$name" value="$value"'
                "$checked> $label</label>",
                name=name,
                value=json.dumps(plain(option)),
                checked=Markup(" checked") if json.dumps(plain(option)) in picked else "",
                label=_label(option),
            )
            for option in schema["items"]["enum"]
        ]
        return html(
            '<fieldset class="field"><legend>$label</legend>$boxes$hint$error</fieldset>',
            label=label,
            boxes=join(boxes),
            hint=_hint(hint),
            error=_error(name, errors.get(name)),
        )
    else:
        text = given[0] if given else _text_of(default, kind)
        if kind in ("text", "json", "lines"):
            control = html(
                '<textarea name="$name" id="$id" rows="$rows"$attrs>$text</textarea>',
                name=name,
                id=field_id,
                rows=4 if kind != "text" else 3,
                attrs=attrs,
                text=text,
            )
        else:
            control = html(
                '<input type="$type" name="$name" id="$id" value="$text"$attrs>',
                type="text" if kind == "string" else kind,
                name=name,
                id=field_id,
                text=text,
                attrs=attrs,
            )
    return _field(name, label, control, errors.get(name), hint, required)


def _field(
    name: str,
    label: str,
    control: Markup,
    error: str | None,
    hint: str | None,
    required: bool = True,
) -> Markup:
    return html(
        '<div class="field"><label for="$id">$label$mark</label>$control$hint$error</div>',
        id=_id(name),
        label=label,
        mark=Markup(' <span class="required" aria-hidden="true">*</span>') if required else "",
        control=control,
        hint=_hint(hint),
        error=_error(name, error),
    )


def _hint(text: Any) -> Markup:
    return html('<p class="hint">$text</p>', text=text) if isinstance(text, str) else Markup("")


def _error(name: str, text: str | None) -> Markup:
    return html(
        '<p class="error" data-error-for="$name"$hidden>$text</p>',
        name=name,
        hidden=Markup("") if text else Markup(" hidden"),
        text=text or "",
    )


def _id(name: str) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f"_{ord(m.group()):x}", name)


def widget_kind(schema: dict[str, Any]) -> str:
    """The field a schema is shown as (see docs/inbox.md)."""
    if isinstance(schema.get("enum"), list):
        return "enum"
    kind = schema.get("type")
    if kind == "boolean":
        return "boolean"
    if kind in ("integer", "number"):
        return "number"
    if kind == "string":
        fmt = schema.get("format")
        if fmt in ("date", "email", "time"):
            return str(fmt)
        if fmt in ("uri", "url"):
            return "url"
        if fmt == "multiline" or schema.get("maxLength", 0) > 120:
            return "text"
        return "string"
    if kind == "array":
        items = schema.get("items")
        if isinstance(items, dict) and isinstance(items.get("enum"), list):
            return "multi"
        if isinstance(items, dict) and items.get("type") == "string":
            return "lines"
    return "json"


def _attributes(schema: dict[str, Any], kind: str, required: bool) -> Markup:
    attrs = []
    if required and kind not in ("boolean", "multi"):
        attrs.append(Markup(" required"))
    if kind == "number":
        step = "1" if schema.get("type") == "integer" else "any"
        attrs.append(html(' step="$step"', step=schema.get("multipleOf", step)))
        for key, attr in (("minimum", "min"), ("maximum", "max")):
            if isinstance(schema.get(key), (int, float)):
                attrs.append(html(' $attr="$value"', attr=attr, value=schema[key]))
    if kind in ("string", "text", "email", "url"):
        for key, attr in (("minLength", "minlength"), ("maxLength", "maxlength")):
            if isinstance(schema.get(key), int):
                attrs.append(html(' $attr="$value"', attr=attr, value=schema[key]))
        if kind == "string" and isinstance(schema.get("pattern"), str):
            attrs.append(html(' pattern="$value"', value=schema["pattern"]))
    if kind == "json":
        attrs.append(Markup(' spellcheck="false" data-json'))
    return join(attrs)


def _text_of(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(plain(value), indent=2, ensure_ascii=False)
    if kind == "lines" and isinstance(value, list):
        return "\n".join(str(item) for item in value)
    return str(value)


def first_value(form: Submitted, name: str, default: str) -> str:
    """The first value of field `name` in `form`, or `default`."""
    values = form.get(name)
    return values[0] if values else default
