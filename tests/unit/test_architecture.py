"""The functional core stays pure: the rules and their values import only the standard library
(and each other), so they can never reach a database, a broker or a clock by accident."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"
PURE = {"rules.py": {"consumer.model"}, "model.py": set(), "errors.py": set()}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_import_only_the_standard_library(module: str) -> None:
    allowed = PURE[module] | {"__future__"}
    foreign = {
        name
        for name in imported_modules(PACKAGE / module)
        if name not in allowed and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert foreign == set()
