"""The import rules of DESIGN.md, checked on the source of every module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# package -> top-level packages of this project it must never import.
FORBIDDEN = {
    "ils": {"sip2server", "kiosk", "drivers"},
    "sip2server": {"kiosk", "drivers"},
    "kiosk": {"ils"},
    "drivers": {"ils", "kiosk"},
}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules_of(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downwards(package: str) -> None:
    """No module imports a package above it or beside it (DESIGN.md, Layout)."""
    offences = []
    for path in _modules_of(package):
        for module in _imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                offences.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert offences == []


def test_codec_imports_only_the_standard_library() -> None:
    """The SIP2 codec is sans-I/O and depends on nothing but the standard library."""
    offences = []
    for path in _modules_of("sip2server/protocol"):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            if top == "sip2server" and module.startswith("sip2server.protocol"):
                continue
            if top not in sys.stdlib_module_names and top != "__future__":
                offences.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
    assert offences == []


_LOG_CALLS = {
    "debug",
    "info",
    "warning",
    "warn",
    "error",
    "exception",
    "critical",
    "log",
}


def _emits_logs(path: Path) -> bool:
    # Reading another library's warnings (pymarc's, during import) is allowed;
    # writing log records of our own is not.
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if "twisted.logger" in _imported_modules(path):
        return True
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id == "logging":
            if node.func.attr in _LOG_CALLS:
                return True
            own_logger = any(
                isinstance(arg, ast.Name) and arg.id == "__name__" for arg in node.args
            )
            if node.func.attr == "getLogger" and own_logger:
                return True
    return False


def test_core_does_not_log() -> None:
    """The circulation core returns or raises; only adapters log (STYLE.md, 7)."""
    offences = [
        str(path.relative_to(REPO_ROOT))
        for path in _modules_of("ils")
        if _emits_logs(path)
    ]
    assert offences == []
