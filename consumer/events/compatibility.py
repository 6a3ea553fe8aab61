"""FULL_TRANSITIVE compatibility of the schema catalogue, and writer->reader resolution.

Compatibility is decided structurally, by the Avro specification's schema-resolution rules, on
every pair of versions of an event type in both directions. Sample data would only exercise the
enum symbols and union branches it happens to generate; the structural rules cover all of them.
The codec uses the same rules to accept a registry schema it has not seen before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastavro.schema import parse_schema

from consumer.events.catalogue import Catalogue, EventType, Schema, SchemaVersion


@dataclass(frozen=True)
class Incompatibility:
    """Data written with ``writer`` cannot be read with ``reader``; ``problems`` say where."""

    writer: SchemaVersion
    reader: SchemaVersion
    problems: tuple[str, ...]


@dataclass(frozen=True)
class CompatibilityReport:
    """The FULL_TRANSITIVE verdict over a catalogue: ok when no pair failed."""

    pairs_checked: int
    incompatibilities: tuple[Incompatibility, ...]

    @property
    def ok(self) -> bool:
        """True when every version reads, and is read by, every other version of its type."""
        return not self.incompatibilities


def check_full_transitive(catalogue: Catalogue) -> CompatibilityReport:
    """Check each version against every earlier one of its type, as writer and as reader."""
    checked = 0
    found: list[Incompatibility] = []
    for event_type in EventType:
        history = catalogue.history(event_type)
        for index, newer in enumerate(history):
            for older in history[:index]:
                for writer, reader in ((older, newer), (newer, older)):
                    checked += 1
                    problems = resolution_problems(writer.schema, reader.schema)
                    if problems:
                        found.append(Incompatibility(writer, reader, problems))
    return CompatibilityReport(checked, tuple(found))


def resolution_problems(writer: Schema, reader: Schema) -> tuple[str, ...]:
    """Why data written with ``writer`` cannot be resolved into ``reader`` (empty: it can).

    Follows the Avro specification's schema-resolution rules. A changed logical type is also
    reported: the bytes would resolve, but consumers would read a different meaning.
    """
    expanded_writer = parse_schema(writer, expand=True)
    expanded_reader = parse_schema(reader, expand=True)
    return tuple(_resolve(expanded_writer, expanded_reader, "$"))


_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def _type_of(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    return str(schema["type"]) if isinstance(schema, dict) else str(schema)


def _short_name(schema: Any) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


def _resolve(writer: Any, reader: Any, path: str) -> Iterator[str]:
    w_type, r_type = _type_of(writer), _type_of(reader)
    if w_type == "union":
        for index, branch in enumerate(writer):
            yield from _resolve(branch, reader, f"{path}<branch {index}>")
        return
    if r_type == "union":
        if not any(not list(_resolve(writer, branch, path)) for branch in reader):
            yield f"{path}: writer type {w_type} matches no branch of the reader union"
        return
    if w_type != r_type and r_type not in _PROMOTIONS.get(w_type, set()):
        yield f"{path}: writer type {w_type} cannot be read as {r_type}"
        return
    yield from _logical_type_problems(writer, reader, path)
    yield from _resolve_complex(w_type, writer, reader, path)


def _logical_type_problems(writer: Any, reader: Any, path: str) -> Iterator[str]:
    def logical(schema: Any) -> object:
        return schema.get("logicalType") if isinstance(schema, dict) else None

    if logical(writer) != logical(reader):
        yield f"{path}: logical type {logical(writer)} changed to {logical(reader)}"


def _resolve_complex(kind: str, writer: Any, reader: Any, path: str) -> Iterator[str]:
    if kind in ("record", "enum", "fixed") and _short_name(writer) != _short_name(reader):
        yield f"{path}: named type {_short_name(writer)} became {_short_name(reader)}"
    elif kind == "record":
        yield from _resolve_record(writer, reader, path)
    elif kind == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            yield f"{path}: reader enum lacks symbols {missing} and has no default"
    elif kind == "fixed" and writer["size"] != reader["size"]:
        yield f"{path}: fixed size {writer['size']} became {reader['size']}"
    elif kind == "array":
        yield from _resolve(writer["items"], reader["items"], f"{path}[]")
    elif kind == "map":
        yield from _resolve(writer["values"], reader["values"], f"{path}{{}}")


def _resolve_record(writer: Any, reader: Any, path: str) -> Iterator[str]:
    written = {field["name"]: field for field in writer["fields"]}
    for field in reader["fields"]:
        names = [field["name"], *field.get("aliases", ())]
        source = next((written[name] for name in names if name in written), None)
        if source is not None:
            yield from _resolve(source["type"], field["type"], f"{path}.{field['name']}")
        elif "default" not in field:
            yield f"{path}.{field['name']}: reader field missing from writer has no default"
