"""The typed JSON encoding behind `serde.JsonSerializer`: values to bytes and back.

A value JSON holds as itself is written as itself. Any other value is written as a
tagged object ``{"$": tag, "v": payload}``, and a user dict that has a ``"$"`` key (or
a key that is not a str) is written as a tagged ``"dict"`` of ``[key, value]`` pairs,
so a tag is never mistaken for data. Loading decodes tags bottom-up in the JSON
parser's object hook and never imports anything (see `_serde_types`).
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, time
from functools import partial
from typing import Any

from ._serde_builtins import (
    AS_IS,
    DECODERS,
    SCALAR_ENCODERS,
    TAG,
    VALUE,
    Malformed,
    Unsupported,
    holds_only_json_scalars,
    is_plain_json,
    parts,
    short,
)
from ._serde_types import Kind, Registration, TypeRegistry, kind_of, type_label
from .errors import SerializationError

Encoder = Callable[[Any], Any]

_SUPPORTED = (
    "JSON values, tuple, set, frozenset, bytes, bytearray, datetime, date, time, "
    "timedelta, UUID, Decimal, Enum, dataclass, Pydantic model"
)
_UNSET = object()


class JsonCodec:
    """Encodes and decodes values for one `JsonSerializer` and its registered types."""

    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        self._to_json = _json_writer()
        self._builtin_encoders: dict[type, Encoder] = {
            **SCALAR_ENCODERS,
            list: self._encode_list,
            dict: self._encode_dict,
            tuple: self._encode_tuple,
            set: partial(self._encode_set, "set"),
            frozenset: partial(self._encode_set, "frozenset"),
            datetime: partial(self._encode_clock, "datetime"),
            time: partial(self._encode_clock, "time"),
        }
        self._encoders = dict(self._builtin_encoders)
        self._decoders: dict[str, Callable[[Any], Any]] = {
            **DECODERS,
            "enum": partial(self._decode_by_name, "enum"),
            "dataclass": partial(self._decode_by_name, "dataclass"),
            "pydantic": partial(self._decode_by_name, "pydantic"),
            "custom": self._decode_custom,
        }
        self._tagged_parser = json.JSONDecoder(
            object_hook=self._decode_object, parse_constant=_reject_constant
        )
        self._plain_parser = json.JSONDecoder(parse_constant=_reject_constant)

    def is_builtin(self, cls: type) -> bool:
        """Whether values of exactly `cls` are encoded without registration."""
        return cls in self._builtin_encoders

    def forget_types(self) -> None:
        """Drop cached encoders of user types (after a registration changed)."""
        self._encoders = dict(self._builtin_encoders)

    def dumps(self, value: Any) -> bytes:
        """Encode `value`; raises `SerializationError` naming what could not be encoded."""
        try:
            tree = value if is_plain_json(value) else self.encode(value)
        except Unsupported as unsupported:
            raise unsupported.error() from None
        except RecursionError:
            raise SerializationError(
                "cannot serialise value: it is nested too deeply or contains itself "
                "(a reference cycle); store a flatter value"
            ) from None
        return self._to_json(tree).encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> Any:
        """Decode bytes from `dumps`; raises `SerializationError` for anything else."""
        if not isinstance(data, bytes | bytearray):
            raise SerializationError(
                f"cannot load a value from {type_label(type(data))}: expected bytes"
            )
        try:
            text = data.decode("utf-8", "surrogatepass")
            if b'"$"' in data:
                return self._tagged_parser.decode(text)
            return self._plain_parser.decode(text)
        except SerializationError:
            raise
        except Exception as error:
            raise SerializationError(
                "cannot load value: the stored bytes are not valid JsonSerializer data "
                f"({type(error).__name__}: {error})"
            ) from None

    # Encoding ---------------------------------------------------------------------

    def encode(self, value: Any) -> Any:
        """`value` as a tree of JSON types; raises `Unsupported`."""
        encoder = self._encoders.get(type(value))
        if encoder is None:
            encoder = self._encoder_for(type(value))
        return encoder(value)

    def _encoder_for(self, cls: type) -> Encoder:
        registration = self.registry.by_type.get(cls)
        if registration is not None and registration.encode is not None:
            encoder: Encoder = partial(self._encode_custom, registration)
        else:
            kind = kind_of(cls)
            if kind is None:
                raise Unsupported(
                    cls,
                    f"it is not a supported type ({_SUPPORTED}); convert it to one, or "
                    f"register it with serializer.register({cls.__qualname__}, "
                    "encode=..., decode=...)",
                )
            try:
                name = self.registry.stored_name(cls)
            except SerializationError as error:
                raise Unsupported(cls, str(error)) from None
            encoder = partial(_BY_NAME_ENCODERS[kind], self, name)
        self._encoders[cls] = encoder
        return encoder

    def _encode_at(self, segment: str, value: Any) -> Any:
        try:
            return self.encode(value)
        except Unsupported as unsupported:
            unsupported.path.append(segment)
            raise

    def _encode_list(self, value: Sequence[Any]) -> Sequence[Any]:
        if len(value) > 8 and holds_only_json_scalars(value):
            return value
        encode = self.encode
        out = []
        index = 0
        try:
            for index, item in enumerate(value):  # noqa: B007 (the except reads it)
                out.append(item if type(item) in AS_IS else encode(item))
        except Unsupported as unsupported:
            unsupported.path.append(f"[{index}]")
            raise
        return out

    def _encode_tuple(self, value: tuple[Any, ...]) -> dict[str, Any]:
        return {TAG: "tuple", VALUE: self._encode_list(value)}

    def _encode_set(self, tag: str, value: Iterable[Any]) -> dict[str, Any]:
        items = [self._encode_at("[<set item>]", item) for item in value]
        # Iteration order depends on string hashing, which differs per process; sorting
        # makes equal sets encode to equal bytes (step argument hashes rely on that).
        items.sort(key=self._to_json)
        return {TAG: tag, VALUE: items}

    def _encode_dict(self, value: dict[Any, Any]) -> Any:
        if TAG in value:
            return self._encode_pairs(value)
        encode = self.encode
        out = {}
        key: Any = None
        try:
            for key, item in value.items():
                if type(key) is not str:
                    break
                out[key] = item if type(item) in AS_IS else encode(item)
            else:
                return out
        except Unsupported as unsupported:
            unsupported.path.append(f"[{key!r}]")
            raise
        return self._encode_pairs(value)

    def _encode_pairs(self, value: dict[Any, Any]) -> dict[str, Any]:
        pairs = []
        for key, item in value.items():
            encoded_key = self._encode_at("[<key>]", key)
            try:
                pairs.append([encoded_key, self.encode(item)])
            except Unsupported as unsupported:
                unsupported.path.append(f"[{short(key)}]")
                raise
        return {TAG: "dict", VALUE: pairs}

    def _encode_fields(self, fields: Iterable[tuple[str, Any]]) -> Any:
        out = {name: self._encode_at(f".{name}", item) for name, item in fields}
        if TAG in out:  # a Pydantic extra named "$": escape as for any dict
            return {TAG: "dict", VALUE: [[name, item] for name, item in out.items()]}
        return out

    def _encode_clock(self, tag: str, value: datetime | time) -> dict[str, Any]:
        naive = value.replace(tzinfo=None).isoformat()
        zone = None if value.tzinfo is None else self._encode_at(".tzinfo", value.tzinfo)
        return {TAG: tag, VALUE: [naive, zone, value.fold]}

    def _encode_enum(self, name: str, value: Any) -> dict[str, Any]:
        return {TAG: "enum", VALUE: [name, self._encode_at(".value", value.value)]}

    def _encode_dataclass(self, name: str, value: Any) -> dict[str, Any]:
        fields = [
            (field.name, getattr(value, field.name, _UNSET)) for field in dataclasses.fields(value)
        ]
        set_fields = [(field, item) for field, item in fields if item is not _UNSET]
        return {TAG: "dataclass", VALUE: [name, self._encode_fields(set_fields)]}

    def _encode_model(self, name: str, value: Any) -> dict[str, Any]:
        if getattr(type(value), "__pydantic_root_model__", False):
            payload = self._encode_at(".root", value.root)
        else:
            payload = self._encode_fields(value)
        return {TAG: "pydantic", VALUE: [name, payload]}

    def _encode_custom(self, registration: Registration, value: Any) -> dict[str, Any]:
        assert registration.encode is not None
        try:
            plain = registration.encode(value)
        except Exception as error:
            raise Unsupported(
                type(value),
                f"its registered encode function raised {type(error).__name__}: {error}",
            ) from error
        payload = self._encode_at(f"<encoded by {registration.name!r}>", plain)
        return {TAG: "custom", VALUE: [registration.name, payload]}

    # Decoding ---------------------------------------------------------------------

    def _decode_object(self, obj: dict[str, Any]) -> Any:
        if TAG not in obj:
            return obj
        tag = obj[TAG]
        decoder = self._decoders.get(tag) if type(tag) is str else None
        if decoder is None or len(obj) != 2 or VALUE not in obj:
            raise Malformed(f"{short(obj)} is not a valid tagged value")
        return decoder(obj[VALUE])

    def _decode_by_name(self, kind: Kind, payload: Any) -> Any:
        name, data = parts(payload, str, object)
        if kind == "dataclass" and type(data) is not dict:
            raise Malformed(f"expected the fields of {name!r}, got {short(data)}")
        cls = self.registry.resolve(name, kind)
        try:
            if kind == "enum":
                return cls(data)
            if kind == "pydantic":
                return cls.model_validate(data)  # type: ignore[attr-defined]
            return _build_dataclass(cls, data)
        except SerializationError:
            raise
        except Exception as error:
            raise SerializationError(
                f"cannot load a value of type {name!r}: rebuilding it from its stored "
                f"data raised {type(error).__name__}: {error}. If the class changed since "
                "the value was stored, register it with encode= and decode= to convert"
            ) from None

    def _decode_custom(self, payload: Any) -> Any:
        name, data = parts(payload, str, object)
        registration = self.registry.by_name.get(name)
        if registration is None or registration.decode is None:
            raise SerializationError(
                f"cannot load a value of registered type {name!r}: no type is registered "
                f"under that name on this serializer; call serializer.register(cls, "
                f"name={name!r}, encode=..., decode=...) before loading"
            )
        try:
            return registration.decode(data)
        except Exception as error:
            raise SerializationError(
                f"cannot load a value of registered type {name!r}: its decode function "
                f"raised {type(error).__name__}: {error}"
            ) from None


_BY_NAME_ENCODERS: dict[Kind, Callable[[JsonCodec, str, Any], Any]] = {
    "enum": JsonCodec._encode_enum,
    "dataclass": JsonCodec._encode_dataclass,
    "pydantic": JsonCodec._encode_model,
}


def _reject_constant(word: str) -> Any:
    raise Malformed(f"{word} is not valid JSON")


def _json_writer() -> Callable[[Any], str]:
    """Compact JSON text of a tree of JSON types (lists, str-keyed dicts, scalars)."""
    # One reusable C encoder: `json.dumps` builds a new one per call, which costs more
    # than writing a small value. Trees given to it are acyclic (the walk or the plain
    # check would have recursed forever first) and hold only JSON types.
    make_encoder: Any = vars(json.encoder).get("c_make_encoder")
    try:
        encode = make_encoder(
            None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
    except TypeError:  # no C encoder, or one with another signature: the portable one
        pass
    else:
        return lambda tree: "".join(encode(tree, 0))
    return json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
    ).encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type_label(type(value))} reached the JSON writer unencoded")


def _build_dataclass(cls: type, values: dict[str, Any]) -> Any:
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SerializationError(
            f"cannot load a value of type {type_label(cls)}: it was stored with "
            f"field(s) {', '.join(map(repr, unknown))} that the dataclass no longer has; "
            "register it with encode= and decode= to convert old values"
        )
    instance = cls(**{name: value for name, value in values.items() if fields[name].init})
    for name, value in values.items():
        if not fields[name].init:
            object.__setattr__(instance, name, value)
    return instance
