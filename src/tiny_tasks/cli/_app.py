"""`--app` and `--key-env`: importing the user's code, its tasks and serializer, and keys."""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import importlib
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import _Failure, _Usage

# --- --app and --key-env -------------------------------------------------------------


def _serializer(args: argparse.Namespace, modules: list[types.ModuleType]) -> Any:
    """The serializer to decode with: the app's (or the default), keyed if asked.

    The modules imported for `--app` are appended to `modules`.
    """
    serde: Any = None
    for number, target in enumerate(args.app):
        module, found = _import_app(target, stands_for_main=number == 0)
        modules.append(module)
        if found is not None:
            serde = found
    if args.key_env is None:
        return serde
    from ..serde import EncryptedSerializer, JsonSerializer

    keys = _keys_from(args.key_env)
    if isinstance(serde, EncryptedSerializer):
        serde = serde.inner
    try:
        return EncryptedSerializer(serde if serde is not None else JsonSerializer(), keys)
    except ImportError as error:
        raise _Failure(str(error)) from None


def _import_app(target: str, *, stands_for_main: bool) -> tuple[types.ModuleType, Any]:
    """Import `target` (module or script): the module, and the serializer it names after
    ':', if any."""
    where, _, attribute = target.partition(":")
    if where.endswith(".py") or os.sep in where:
        module = _run_script(where, target)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as error:
            raise _Usage(
                f"cannot import --app {target!r}: {type(error).__name__}: {error}"
            ) from None
    if stands_for_main:
        # Types defined in a script run as `python app.py` were stored as "__main__:Name".
        sys.modules["__main__"] = module
    if not attribute:
        return module, None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise _Usage(f"--app {target!r}: {where} has no {attribute!r}")
        found = getattr(found, part)
    if callable(getattr(found, "loads", None)):
        return module, found
    serde = getattr(found, "serde", None)
    if serde is None:
        raise _Usage(
            f"--app {target!r}: {attribute} is neither a serializer nor a saver with a serde"
        )
    return module, serde


def _run_script(path: str, target: str) -> types.ModuleType:
    # As multiprocessing's spawn does: run it under the name "__mp_main__", so its
    # `if __name__ == "__main__":` block does not run.
    file = Path(path)
    if not file.is_file():
        raise _Usage(f"--app {target!r}: no such script")
    module = types.ModuleType("__mp_main__")
    module.__file__ = str(file)
    sys.modules["__mp_main__"] = module
    sys.path.insert(0, str(file.resolve().parent))
    try:
        code = compile(file.read_bytes(), str(file), "exec")
        exec(code, module.__dict__)
    except Exception as error:
        raise _Usage(f"cannot run --app {target!r}: {type(error).__name__}: {error}") from None
    return module


def _keys_from(name: str) -> list[bytes]:
    text = os.environ.get(name)
    if text is None:
        raise _Usage(f"--key-env {name}: the environment variable {name} is not set")
    keys = []
    for part in text.replace(",", " ").split():
        key = _decode_key(part)
        if key is None:
            raise _Usage(
                f"--key-env {name}: the variable does not hold keys of 16, 24 or 32 bytes "
                'in hex or base64 (make one with: python -c "from tiny_tasks.serde import '
                'generate_key; print(generate_key().hex())")'
            )
        keys.append(key)
    if not keys:
        raise _Usage(f"--key-env {name}: the environment variable {name} is empty")
    return keys


def _decode_key(text: str) -> bytes | None:
    """A key from hex (tried first) or base64 (standard or URL-safe, padding optional)."""
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    with contextlib.suppress(binascii.Error, ValueError):
        padded = text + "=" * (-len(text) % 4)
        candidates.append(
            base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        )
    return next((key for key in candidates if len(key) in (16, 24, 32)), None)


@contextlib.contextmanager
def _user_code_scope() -> Iterator[None]:
    """Put the current directory first on sys.path (as `python -m` does) and undo what
    importing the user's code changed in `__main__`, for callers of `main()` in-process."""
    main_module, path = sys.modules.get("__main__"), list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        sys.path[:] = path
        if main_module is not None:
            sys.modules["__main__"] = main_module


# --- check ---------------------------------------------------------------------------


def _tasks_of(targets: list[str], modules: list[types.ModuleType]) -> list[Any]:
    """Every `Task` among the top-level names of each `--app` module."""
    from .._task import Task

    found: dict[int, Any] = {}
    for target, module in zip(targets, modules, strict=True):
        tasks = [value for value in vars(module).values() if isinstance(value, Task)]
        if not tasks:
            raise _Usage(f"--app {target!r} defines no task (no Task among its names)")
        found.update((id(task), task) for task in tasks)
    return list(found.values())
