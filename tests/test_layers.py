"""Layers point one way: agent → learn → search → db, with models and tools below.

Every module of the package is read as source (``ast``, so nothing is imported and imports
inside functions or ``TYPE_CHECKING`` blocks count too) and each ``kern`` import it makes is
checked against the table below. A new top-level module or package fails until it is placed
in a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kern

# Which layer each part of the package belongs to (the longest matching prefix wins).
LAYER_OF = {
    # Below everything: the package root (the version and the distribution name, nothing
    # else), the error tree, the sync facade, the run context, words of a text, the
    # optional-extras guard, the app-spec loader and the input limits.
    "kern": "foundation",
    "kern.errors": "foundation",
    "kern._sync": "foundation",
    "kern.context": "foundation",
    "kern._text": "foundation",
    "kern._extras": "foundation",
    "kern._load": "foundation",  # `module:name` specs (serve --app, mcp --app)
    "kern.limits": "foundation",  # input limits and the checks every entry point applies
    "kern.models": "models",
    "kern.tools": "tools",
    "kern.db": "db",
    "kern.search": "search",
    "kern.learn": "learn",
    "kern.agent": "agent",
    # Applications built on the library: they may use any layer.
    "kern.cli": "apps",
    "kern.mcp": "apps",
    "kern.server": "apps",
    "kern.worker": "apps",  # the `kern worker` process: loads the app's Agent or machine
}

# The layers a layer may import, itself included. Nothing may import upwards.
FOUNDATION = {"foundation"}
MAY_IMPORT = {
    "foundation": FOUNDATION,
    "models": FOUNDATION | {"models"},
    "tools": FOUNDATION | {"models", "tools"},
    "db": FOUNDATION | {"db"},
    "search": FOUNDATION | {"models", "db", "search"},
    "learn": FOUNDATION | {"models", "tools", "db", "search", "learn"},
    "agent": FOUNDATION | {"models", "tools", "db", "search", "learn", "agent"},
    "apps": set(LAYER_OF.values()),
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYER_OF.get(".".join(parts[:end]))
        if layer is not None and (end > 1 or module == "kern"):
            return layer
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str) -> list[tuple[str, int]]:
    """Every ``kern`` module ``path`` imports, anywhere in the file, with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
    return [(name, line) for name, line in found if name == "kern" or name.startswith("kern.")]


def upward_imports(root: Path) -> list[str]:
    """The imports under the package folder ``root`` that break the layer table."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(root, path)
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module}: in no layer (add it to LAYER_OF)")
            continue
        for target, line in imported_modules(path, module):
            target_layer = layer_of(target)
            if target_layer is None or target_layer not in MAY_IMPORT[layer]:
                problems.append(
                    f"{path.relative_to(root.parent)}:{line}: {module} ({layer}) imports "
                    f"{target} ({target_layer})"
                )
    return problems


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(Path(kern.__file__).parent) == []


def test_the_walk_finds_function_level_and_relative_imports(tmp_path: Path) -> None:
    db = tmp_path / "kern" / "db"
    db.mkdir(parents=True)
    (tmp_path / "kern" / "__init__.py").write_text("")
    (db / "__init__.py").write_text("from . import sql\n")
    (db / "sql.py").write_text(
        "from kern.errors import StorageError\n\n"
        "def load():\n"
        "    from kern.search.query import tsquery\n"
        "    from ..learn import machine\n"
    )
    (tmp_path / "kern" / "extra.py").write_text("")
    assert upward_imports(tmp_path / "kern") == [
        "kern/db/sql.py:4: kern.db.sql (db) imports kern.search.query (search)",
        "kern/db/sql.py:5: kern.db.sql (db) imports kern.learn (learn)",
        "kern.extra: in no layer (add it to LAYER_OF)",
    ]
