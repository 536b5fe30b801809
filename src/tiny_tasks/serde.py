"""How values are turned into bytes for storage, and back.

`JsonSerializer` is the default: a typed JSON encoding that loads without running code
from the store. `PickleSerializer` is an explicit opt-in for trusted stores, and
`EncryptedSerializer` wraps either with authenticated encryption. A checkpointer
chooses its codec through a `serde` attribute; without one the engine uses
`default_serializer()`. See docs/serialization.md.
"""

from __future__ import annotations

import hashlib
import json.encoder
import pickle
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ._serde_json import JsonCodec
from ._serde_types import Registration, TypeRegistry, kind_of, type_label
from .errors import SerializationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "EncryptedSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "default_serializer",
    "generate_key",
]

T = TypeVar("T")
_json_string = json.encoder.encode_basestring


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back; what a checkpointer's `serde` attribute holds.

    Both methods raise `SerializationError` when a value cannot be encoded or the
    bytes cannot be decoded.
    """

    def dumps(self, value: Any) -> bytes:
        """Encode `value` as bytes; raises `SerializationError` if it cannot."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by `dumps`; raises `SerializationError` for anything else."""
        ...


class JsonSerializer:
    """The safe default codec: compact typed JSON that loads without running stored code.

    Handles JSON values (any size of int, floats including nan and infinities), dicts
    with any keys, tuples, sets, frozensets, bytes, bytearray, datetime, date, time
    (with fixed-offset or `zoneinfo` time zones), timedelta, UUID, Decimal, Enum
    members, dataclasses and Pydantic v2 models, each coming back as the same type.
    Classes are named in the data as ``"module:qualname"`` and found on load only in
    already-imported modules or among the types registered with `register`.

    `dumps` raises `SerializationError` naming the type and place of a value it cannot
    encode; `loads` raises `SerializationError` for bytes that are not a valid encoding
    or that name a type it will not load.
    """

    __slots__ = ("_codec", "_registry")

    def __init__(self) -> None:
        self._registry = TypeRegistry()
        self._codec = JsonCodec(self._registry)

    def __repr__(self) -> str:
        names = sorted(self._registry.by_name)
        return f"JsonSerializer(registered={names!r})"

    def register(
        self,
        cls: type[T],
        *,
        name: str | None = None,
        encode: Callable[[T], Any] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> None:
        """Teach this serializer a type: by a stable name, or with an encode/decode pair.

        With `encode` and `decode`, a value of exactly `cls` is stored as
        `encode(value)` (anything this serializer can store) and loaded as
        `decode(stored)`. Without them, `cls` must be an Enum, dataclass or Pydantic
        model, and is stored under `name` instead of its ``"module:qualname"`` (so it
        survives a rename or a move, and loads even if its module is not imported).
        `name` defaults to ``"module:qualname"``.

        Raises `TypeError` if `cls` is not a class, only one of `encode`/`decode` is
        given, or neither is given for a type that needs them; `ValueError` if `cls` is
        a type stored natively or `name` is taken by another class.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() needs a class, got {cls!r}")
        if self._codec.is_builtin(cls):
            raise ValueError(f"{type_label(cls)} is stored natively and cannot be registered")
        if (encode is None) != (decode is None):
            raise TypeError(f"register({cls.__qualname__}) needs both encode= and decode=")
        if encode is None and kind_of(cls) is None:
            raise TypeError(
                f"{type_label(cls)} is not an Enum, dataclass or Pydantic model; register "
                f"it with encode= and decode= functions"
            )
        stored_name = name if name is not None else f"{cls.__module__}:{cls.__qualname__}"
        self._registry.add(Registration(cls, stored_name, encode, decode))
        self._codec.forget_types()

    def dumps(self, value: Any) -> bytes:
        """Encode `value` as compact JSON bytes.

        Raises `SerializationError` naming the type and place (e.g. ``value['items'][2]``)
        of a part that cannot be encoded.
        """
        # Strings and ints first: a streamed partial is encoded before it is handed over.
        if type(value) is str:
            return _json_string(value).encode("utf-8", "surrogatepass")
        if type(value) is int:
            try:
                return b"%d" % value
            except ValueError:
                pass  # more digits than int-to-str allows: the codec says so in its words
        return self._codec.dumps(value)

    def loads(self, data: bytes) -> Any:
        """Decode bytes made by `dumps`, never importing a module or running stored code.

        Raises `SerializationError` if `data` is not valid, or names a type that is not
        imported, not registered, or not of the kind it was stored as.
        """
        return self._codec.loads(data)

    def loads_many(self, items: Sequence[bytes]) -> list[Any]:
        """Decode several values made by `dumps` at once (one parse for all of them).

        Raises `SerializationError` as `loads` does, naming the first bad item.
        """
        if not items:
            return []
        try:
            decoded = self._codec.loads(b"[" + b",".join(items) + b"]")
        except (SerializationError, TypeError):
            return [self.loads(item) for item in items]  # find and report the bad one
        if not isinstance(decoded, list) or len(decoded) != len(items):
            return [self.loads(item) for item in items]
        return decoded


class PickleSerializer:
    """Stores any picklable value with `pickle`; opt in only for a store you trust.

    Warning: loading a pickle runs code chosen by whoever wrote the bytes. Anyone who
    can write to the store can then run code in every process that loads from it. Use
    this only with a trusted store (or wrapped in `EncryptedSerializer`, which refuses
    bytes not written with your key). `dumps` and `loads` raise `SerializationError`.
    """

    __slots__ = ("protocol",)

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"

    def dumps(self, value: Any) -> bytes:
        """Pickle `value`; raises `SerializationError` if it cannot be pickled."""
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except Exception as error:
            raise SerializationError(
                f"cannot pickle a value of type {type_label(type(value))}: "
                f"{type(error).__name__}: {error}"
            ) from error

    def loads(self, data: bytes) -> Any:
        """Unpickle `data`, running any code it names; raises `SerializationError`."""
        try:
            return pickle.loads(data)
        except Exception as error:
            raise SerializationError(
                f"cannot unpickle the stored value: {type(error).__name__}: {error}"
            ) from error


_FORMAT_VERSION = 1
_KEY_ID_SIZE = 4
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = 1 + _KEY_ID_SIZE
_KEY_SIZES = (16, 24, 32)


class EncryptedSerializer:
    """Wraps another serializer with AES-GCM authenticated encryption.

    Each value gets a random 96-bit nonce. The first key encrypts; every key is tried
    (by a short key id) to decrypt, so keys can be rotated by putting a new key first
    and dropping an old one once nothing it wrote is still stored. Layout: version byte,
    4-byte key id, nonce, ciphertext with tag; version and key id are authenticated.

    Needs the `cryptography` package: raises `ImportError` naming the extra if it is
    missing, `ValueError` if no key is given or a key is not 16, 24 or 32 bytes long,
    and `TypeError` if a key is not bytes. `loads` raises `SerializationError` when a
    value cannot be authenticated (changed, or written with a key not given here).
    """

    __slots__ = ("_cipher_for", "_invalid_tag", "_keys", "inner")

    def __init__(self, inner: Serializer, key: bytes | Sequence[bytes]) -> None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as error:
            raise ImportError(
                "EncryptedSerializer needs the 'cryptography' package: "
                "pip install 'tiny-tasks[encryption]'"
            ) from error
        keys = [key] if isinstance(key, bytes | bytearray) else list(key)
        if not keys:
            raise ValueError("EncryptedSerializer needs at least one key")
        for index, one_key in enumerate(keys):
            _check_key(index, one_key)
        self.inner = inner
        self._invalid_tag = InvalidTag
        self._keys: list[tuple[bytes, AESGCM]] = [
            (_key_id(bytes(one_key)), AESGCM(bytes(one_key))) for one_key in keys
        ]

    def __repr__(self) -> str:
        return f"EncryptedSerializer({self.inner!r}, keys={len(self._keys)})"

    def dumps(self, value: Any) -> bytes:
        """Encode `value` with the inner serializer and encrypt it with the first key.

        Raises `SerializationError` if the inner serializer cannot encode `value`.
        """
        plain = self.inner.dumps(value)
        key_id, cipher = self._keys[0]
        header = bytes([_FORMAT_VERSION]) + key_id
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return header + nonce + cipher.encrypt(nonce, plain, header)

    def loads(self, data: bytes) -> Any:
        """Authenticate and decrypt `data`, then decode it with the inner serializer.

        Raises `SerializationError` if `data` is not an encrypted value, was changed, or
        was written with a key this serializer does not have.
        """
        if not isinstance(data, bytes | bytearray):
            raise SerializationError(
                f"cannot decrypt a value from {type_label(type(data))}: expected bytes"
            )
        data = bytes(data)
        if len(data) < _HEADER_SIZE + _NONCE_SIZE + _TAG_SIZE or data[0] != _FORMAT_VERSION:
            raise SerializationError(
                "the stored value could not be authenticated: it is not an "
                "EncryptedSerializer value (too short, or an unknown format version)"
            )
        header, key_id = data[:_HEADER_SIZE], data[1:_HEADER_SIZE]
        nonce = data[_HEADER_SIZE : _HEADER_SIZE + _NONCE_SIZE]
        sealed = data[_HEADER_SIZE + _NONCE_SIZE :]
        for candidate_id, cipher in self._keys:
            if candidate_id != key_id:
                continue
            try:
                plain = cipher.decrypt(nonce, sealed, header)
            except self._invalid_tag:
                continue
            return self.inner.loads(plain)
        raise SerializationError(
            "the stored value could not be authenticated: it was changed after it was "
            "written, or written with a key that is not among this serializer's "
            f"{len(self._keys)} key(s); check the keys given to EncryptedSerializer"
        )


def generate_key(size: int = 32) -> bytes:
    """A new random AES-GCM key of `size` bytes for `EncryptedSerializer`.

    Raises `ValueError` unless `size` is 16, 24 or 32.
    """
    if size not in _KEY_SIZES:
        raise ValueError(f"an AES-GCM key is 16, 24 or 32 bytes long, not {size}")
    return secrets.token_bytes(size)


def default_serializer() -> JsonSerializer:
    """A new `JsonSerializer`: the codec used when a checkpointer has no `serde`."""
    return JsonSerializer()


def _check_key(index: int, key: object) -> None:
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"encryption key {index} is a {type(key).__name__}, not bytes")
    if len(key) not in _KEY_SIZES:
        raise ValueError(
            f"encryption key {index} is {len(key)} bytes long; AES-GCM keys must be 16, 24 "
            "or 32 bytes (make one with tiny_tasks.serde.generate_key())"
        )


def _key_id(key: bytes) -> bytes:
    # A short fingerprint picks the key to try; a collision only costs one more attempt.
    return hashlib.sha256(b"tiny-tasks key id\0" + key).digest()[:_KEY_ID_SIZE]
