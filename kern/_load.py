"""``module:name`` specs (``kern serve --app``, ``kern mcp --app``): import the module of the
working directory, take the attribute, call it when it is a factory."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from kern.errors import ConfigError

__all__ = ["load_spec"]


def load_spec(spec: str, *, accept: Callable[[object], bool], what: str) -> object:
    """The object ``spec`` names: ``name`` itself when ``accept`` takes it, else the result of
    calling it with no arguments (a factory). ``what`` names the expected kinds in errors."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--app takes 'module:name' (e.g. 'myapp:agent'), got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules of the working directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}")
    if callable(target) and not accept(target):
        try:
            target = target()
        except TypeError as exc:
            raise ConfigError(
                f"{spec!r} is not {what}, nor a function with no arguments returning one ({exc})"
            ) from exc
    if not accept(target):
        raise ConfigError(f"{spec!r} is a {type(target).__name__}, not {what}")
    return target
