"""The user types a stored value may name, and how they are found again on load.

A class is named in stored data as ``"module:qualname"`` (or a name it was registered
under). Loading finds it only in a registry or in a module that is already imported:
nothing is ever imported because stored data named it, and only Enum classes,
dataclasses, Pydantic models and registered types are accepted.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from .errors import SerializationError, UnknownTypeError

Kind = Literal["enum", "dataclass", "pydantic"]

KIND_LABELS: dict[Kind, str] = {
    "enum": "an Enum class",
    "dataclass": "a dataclass",
    "pydantic": "a Pydantic model",
}


@dataclass(frozen=True, slots=True)
class Registration:
    """A type registered on one serializer: its stored name and, optionally, a codec."""

    cls: type
    name: str
    encode: Callable[[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None


def pydantic_model_base() -> type | None:
    """Pydantic v2's `BaseModel` if pydantic is already imported, else `None`."""
    module = sys.modules.get("pydantic.main")
    base = vars(module).get("BaseModel") if module is not None else None
    if isinstance(base, type) and hasattr(base, "model_validate"):
        return base
    return None


def kind_of(cls: type) -> Kind | None:
    """Which of the by-name kinds `cls` is, if any."""
    if issubclass(cls, enum.Enum):
        return "enum"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    base = pydantic_model_base()
    if base is not None and issubclass(cls, base):
        return "pydantic"
    return None


def class_name(cls: type) -> str:
    """The ``"module:qualname"`` a class is stored under unless registered otherwise."""
    return f"{cls.__module__}:{cls.__qualname__}"


def type_label(cls: type) -> str:
    """A class's name as a message shows it (builtins without their module)."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def find_class(name: str) -> object:
    """Look `name` (``"module:qualname"``) up among imported modules, without importing.

    Raises `SerializationError` if the name is malformed, its module is not imported,
    or the module has no such attribute. Only module and class namespaces are read
    (never `getattr`), so no module-level `__getattr__` or descriptor runs.
    """
    module_name, colon, qualname = name.partition(":")
    if not (colon and module_name and qualname):
        raise UnknownTypeError(
            f"cannot load a value of type {name!r}: it is neither registered on this "
            "serializer nor a 'module:qualname' name; register the type with "
            f"serializer.register(cls, name={name!r}, ...)",
            type_name=name,
            module=None,
        )
    module = sys.modules.get(module_name)
    if module is None:
        raise UnknownTypeError(
            f"cannot load a value of type {name!r}: module {module_name!r} is not "
            "imported, and tiny-tasks never imports a module because stored data names "
            f"it; import {module_name} before loading, or register the type on the "
            "serializer",
            type_name=name,
            module=module_name,
        )
    found: object = module
    for part in qualname.split("."):
        namespace = vars(found) if isinstance(found, ModuleType | type) else {}
        found = namespace.get(part, _MISSING)
        if found is _MISSING:
            raise UnknownTypeError(
                f"cannot load a value of type {name!r}: module {module_name!r} has no "
                f"{qualname!r} (was it renamed or moved?); register the current class "
                f"with serializer.register(cls, name={name!r}) to load old values",
                type_name=name,
                module=module_name,
            )
    return found


_MISSING = object()


class TypeRegistry:
    """The types registered on one serializer, by class and by stored name."""

    def __init__(self) -> None:
        self.by_type: dict[type, Registration] = {}
        self.by_name: dict[str, Registration] = {}

    def add(self, registration: Registration) -> None:
        """Record `registration`, replacing an earlier one for the same class.

        Raises `ValueError` if its name is taken by another class.
        """
        taken = self.by_name.get(registration.name)
        if taken is not None and taken.cls is not registration.cls:
            raise ValueError(
                f"name {registration.name!r} is already registered for "
                f"{type_label(taken.cls)}; choose another name"
            )
        old = self.by_type.pop(registration.cls, None)
        if old is not None:
            del self.by_name[old.name]
        self.by_type[registration.cls] = registration
        self.by_name[registration.name] = registration

    def stored_name(self, cls: type) -> str:
        """The name `cls` is written under; raises `SerializationError` if it cannot be found.

        An unregistered class must be findable again by its ``"module:qualname"``
        (so not a class defined inside a function, and not shadowed).
        """
        registration = self.by_type.get(cls)
        if registration is not None:
            return registration.name
        name = class_name(cls)
        try:
            found = find_class(name)
        except SerializationError:
            found = None
        if found is not cls:
            raise SerializationError(
                f"type {type_label(cls)} cannot be found again as {name!r} when loading "
                "(a class defined inside a function, or one whose name now refers to "
                "something else); define it at module level, or register it with "
                "serializer.register(cls, name=...)"
            )
        return name

    def resolve(self, name: str, kind: Kind) -> type:
        """The class stored as `name`, which must be of `kind`.

        Raises `SerializationError` if it is not registered, not found among imported
        modules, or is not of that kind.
        """
        registration = self.by_name.get(name)
        found = registration.cls if registration is not None else find_class(name)
        is_plain_registration = registration is None or registration.encode is None
        if isinstance(found, type) and kind_of(found) == kind and is_plain_registration:
            return found
        if isinstance(found, type):
            what = f"the class {type_label(found)}, which is not {KIND_LABELS[kind]}"
        else:
            what = f"a {type(found).__qualname__} object, not {KIND_LABELS[kind]}"
        raise SerializationError(
            f"cannot load a value of type {name!r}: it was stored as "
            f"{KIND_LABELS[kind]}, but {name!r} is {what}; only Enum classes, "
            "dataclasses, Pydantic models and registered types are loaded by name. "
            "Import the module that defines the intended class, or register it with "
            f"serializer.register(cls, name={name!r})"
        )
