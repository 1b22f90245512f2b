"""The guard for optional extras, in one place below every layer that has one.

The server, the MCP server, the local model and the embedders each need a package that only an
extra installs; importing it through ``require`` turns a bare ``ImportError`` into the install
command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kern.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or explain which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc
