"""The codec is sans-I/O and imports nothing but the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import sip2server.protocol

PACKAGE = Path(sip2server.protocol.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_codec_modules_import_only_the_standard_library() -> None:
    """Every absolute import in sip2server/protocol names a standard module."""
    outside = {
        f"{path.name}: {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name != "__future__"
    }
    assert set() == outside


def test_every_codec_module_says_what_layer_it_is() -> None:
    """Each module's docstring names its layer, as the house style asks."""
    missing = [
        path.name
        for path in sorted(PACKAGE.glob("*.py"))
        if "Layer:" not in (ast.get_docstring(ast.parse(path.read_text("utf-8"))) or "")
    ]
    assert [] == missing
