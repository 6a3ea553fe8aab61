"""The layout is the architecture: which room of ``consumer/`` may import which, checked on the
source, so a forbidden import fails here before it ships (ADR 0011 draws the rooms).

Every boundary a docstring states ("must not import the database", "the product never imports
it") is one rule below; the rules are read from the code's imports with ``ast``, nothing is run.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"
MAX_MODULES_PER_FOLDER = 12
KAFKA_MESSAGES = "confluent_kafka"
REGISTRY_CLIENT = "confluent_kafka.schema_registry"
DATABASE = "sqlalchemy"


@dataclass(frozen=True)
class Import:
    module: str  # the module imported from, or a name under it ("consumer.cli.ops")
    lazy: bool  # inside a function: only paid for when the function runs
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text())
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append(Import(child.module, lazy, child.lineno))
                found.extend(
                    Import(f"{child.module}.{a.name}", lazy, child.lineno) for a in child.names
                )
            visit(child, inner)

    visit(tree, False)
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def room(module: str) -> str:
    """``consumer.store.outbox`` -> ``store``; ``consumer.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


ROOMS = {
    *("errors", "config", "evaluation", "runtime"),  # top-level modules
    *("domain", "events", "store", "kafka", "observability", "pipeline", "ops", "cli"),
    *("testing", "demo"),
}
# room -> rooms of consumer/ it must never import (a room is a folder or a top-level module)
FORBIDDEN_ROOMS: dict[str, set[str]] = {
    "errors": ROOMS - {"errors"},
    "domain": ROOMS - {"domain"},
    "config": ROOMS - {"config", "errors", "events"},
    "events": {"store", "kafka", "observability", "pipeline", "ops", "cli", "runtime", "demo"},
    "store": {"kafka", "observability", "pipeline", "ops", "cli", "runtime", "evaluation"},
    "kafka": {"store", "observability", "pipeline", "ops", "cli", "runtime", "evaluation"},
    "observability": {"store", "pipeline", "ops", "cli", "runtime", "evaluation"},
    "evaluation": {"kafka", "observability", "pipeline", "ops", "cli", "runtime"},
    "pipeline": {"ops", "cli", "runtime"},
    "ops": {"pipeline", "cli", "runtime", "evaluation"},
    "runtime": {"cli"},
    "testing": {"pipeline", "ops", "cli", "runtime", "evaluation"},
    "demo": {"cli"},
}
# Module docstrings that name a boundary of their own, beyond their room's.
BOUNDARIES: dict[str, tuple[str, ...]] = {
    # "knows nothing of Kafka messages or the database"
    "consumer.events": (DATABASE, "consumer.store"),
    # "Imports fastavro, never confluent_kafka: the registry is the codec's and the CLI's"
    "consumer.events.catalogue": ("confluent_kafka.schema_registry",),
    # "Must not import the database or the runtime loops."
    "consumer.ops.offsets": (DATABASE, "consumer.store", "consumer.pipeline"),
    # "Must not import Kafka or the runtime loops."
    "consumer.ops.backfill": (KAFKA_MESSAGES, "consumer.kafka", "consumer.pipeline"),
    # "Must not import the runtime loops or the database."
    "consumer.cli.schemas": ("consumer.pipeline", "consumer.runtime", DATABASE, "consumer.store"),
    # "It must not import the runtime loops"
    "consumer.cli.ops": ("consumer.pipeline", "consumer.runtime"),
    # "No database, no Kafka, no service"
    "consumer.demo.expected": (DATABASE, KAFKA_MESSAGES, "consumer.store", "consumer.runtime"),
    # no broker and no database in the pure rooms, whatever their imports of each other
    "consumer.domain": (DATABASE, KAFKA_MESSAGES),
    "consumer.store": (KAFKA_MESSAGES,),
    "consumer.kafka": (DATABASE,),
}


def violations() -> Iterator[str]:
    for module, path in product_modules().items():
        here = room(module)
        forbidden = FORBIDDEN_ROOMS.get(here, set())
        for imp in imports_of(path):
            yield from _room_violation(module, here, forbidden, imp)
            yield from _boundary_violation(module, imp)
            yield from _kit_violation(module, here, imp)


def _room_violation(module: str, here: str, forbidden: set[str], imp: Import) -> Iterator[str]:
    if under(imp.module, "consumer") and room(imp.module) in forbidden:
        banned = room(imp.module)
        yield f"{module}:{imp.line} imports {imp.module} (room {here} never imports {banned})"
    if here in {"errors", "domain"} and not under(imp.module, "consumer"):
        top = imp.module.split(".")[0]
        if top not in sys.stdlib_module_names and top != "__future__":
            yield f"{module}:{imp.line} imports {imp.module} (standard library only)"


def _boundary_violation(module: str, imp: Import) -> Iterator[str]:
    for owner, banned in BOUNDARIES.items():
        if not under(module, owner):
            continue
        for name in banned:
            registry_ok = name == KAFKA_MESSAGES and under(imp.module, REGISTRY_CLIENT)
            if under(imp.module, name) and not registry_ok:
                yield f"{module}:{imp.line} imports {imp.module} (its docstring forbids {name})"


def _kit_violation(module: str, here: str, imp: Import) -> Iterator[str]:
    """The test kit and the demo stay out of the product: nothing imports the kit but the demo
    (and tests and benchmarks, outside the package); only the CLI's ``demo`` command imports the
    demo, inside the function, so a product install never loads its optional dependencies."""
    if under(imp.module, "consumer.testing") and here not in {"testing", "demo"}:
        yield f"{module}:{imp.line} imports the test kit {imp.module}"
    lazy_in_cli = module == "consumer.cli.main" and imp.lazy
    if under(imp.module, "consumer.demo") and here != "demo" and not lazy_in_cli:
        yield f"{module}:{imp.line} imports the demo {imp.module} (only cli.main, lazily)"


def test_every_room_keeps_its_import_rules() -> None:
    assert list(violations()) == []


def test_every_module_lives_in_a_known_room() -> None:
    assert {room(m) for m in product_modules()} - {""} <= ROOMS


@pytest.mark.parametrize(
    "folder", sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
)
def test_no_folder_holds_more_than_twelve_modules(folder: str) -> None:
    modules = [p for p in (PACKAGE / folder).glob("*.py") if p.name not in {"__init__.py"}]
    assert len(modules) <= MAX_MODULES_PER_FOLDER, sorted(p.name for p in modules)


def test_a_forbidden_import_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard guards: a store module importing a loop is reported."""
    fake = tmp_path / "consumer"
    (fake / "store").mkdir(parents=True)
    (fake / "store" / "bad.py").write_text("from consumer.pipeline.relay import RelayLoop\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert [v.split(" (")[0] for v in violations()] == [
        "consumer.store.bad:1 imports consumer.pipeline.relay",
        "consumer.store.bad:1 imports consumer.pipeline.relay.RelayLoop",
    ]


# --- SQL ownership: every statement on the service's own tables is in consumer/store/

SERVICE_TABLES = re.compile(r"\bcert_consumer\.|\b(pending_evaluations|outbox|schema_migrations)\b")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|ALTER|CREATE|pg_try_advisory_lock)\b")


def sql_strings(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and id(node) not in docstrings and SQL.search(text):
            yield node.lineno, text


def test_sql_on_the_service_tables_lives_in_the_store() -> None:
    misplaced = [
        f"{module}:{line}"
        for module, path in product_modules().items()
        if room(module) != "store"
        for line, text in sql_strings(path)
        if SERVICE_TABLES.search(text)
    ]
    assert misplaced == []


def test_the_loops_hold_no_sql_text() -> None:
    misplaced = [
        f"{module}:{line}"
        for module, path in product_modules().items()
        if room(module) == "pipeline"
        for line, _ in sql_strings(path)
    ]
    assert misplaced == []


def test_only_config_reads_the_environment() -> None:
    """Settings are read and validated in one place; elsewhere a variable would escape both."""
    readers = [
        module
        for module, path in product_modules().items()
        if module != "consumer.config" and re.search(r"\bos\.(environ|getenv)\b", path.read_text())
    ]
    assert readers == []


def test_engines_come_from_one_factory() -> None:
    """``store.database.create_engine`` gives every engine the same connect timeout."""
    makers = [
        module
        for module, path in product_modules().items()
        if module != "consumer.store.database"
        and re.search(r"\b(sa|sqlalchemy)\.create_engine\b|import create_engine", path.read_text())
    ]
    assert makers == []


def test_only_the_composition_roots_load_settings() -> None:
    """The CLI, the runtime and the demo build Settings; everything else is handed them."""
    loaders = {
        module
        for module, path in product_modules().items()
        for imp in imports_of(path)
        if imp.module == "consumer.config.load_settings"
    }
    assert {room(m) for m in loaders} <= {"cli", "runtime", "demo"}, loaders
