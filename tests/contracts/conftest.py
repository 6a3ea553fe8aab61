"""Fixtures for the contract tests: the real catalogue, copies of it to evolve, registries.

``schema_registry_url`` (in ``tests/conftest.py``) is a real Confluent-compatible registry
(Apicurio) shared by the session. Tests that use it give their subjects random topic names.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.events.catalogue import Catalogue, load_catalogue

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"

WriteSchema = Callable[[str, dict[str, Any]], Path]


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(SCHEMAS)


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    """A private copy of schemas/ that a test may add versions to."""
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, folder)
    return folder


@pytest.fixture
def write_schema(schemas_copy: Path) -> WriteSchema:
    """Write ``<file name>`` into the copy, e.g. a v2 derived from v1."""

    def write(name: str, schema: dict[str, Any]) -> Path:
        path = schemas_copy / name
        path.write_text(json.dumps(schema, indent=2), encoding="utf-8")
        return path

    return write


def raw_schema(name: str) -> dict[str, Any]:
    """A schemas/ file as plain JSON, to derive new versions from."""
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def mock_registry() -> SchemaRegistryClient:
    """confluent-kafka's in-process registry; a fresh one per test (state is per URL)."""
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


@pytest.fixture
def topic_prefix() -> str:
    """A random topic prefix, so registry subjects of different tests never meet."""
    return f"test-{uuid.uuid4().hex[:12]}."
