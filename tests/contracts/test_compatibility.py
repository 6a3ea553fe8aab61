"""FULL_TRANSITIVE compatibility: the structural check, and fastavro agreeing with it."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import parse_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.events.catalogue import Catalogue, EventType, load_catalogue
from consumer.events.compatibility import check_full_transitive, resolution_problems
from tests.contracts.conftest import WriteSchema, raw_schema
from tests.contracts.strategies import datum

V1 = raw_schema("page_score_updated.v1.avsc")


def evolved(change: Any) -> dict[str, Any]:
    """A copy of page_score_updated v1 with ``change`` applied to it."""
    schema = copy.deepcopy(V1)
    change(schema)
    return schema


def add_field(**field: Any) -> Any:
    return lambda s: s["fields"].append({"doc": "new", **field})


def set_type(index: int, new_type: Any) -> Any:
    return lambda s: s["fields"][index].__setitem__("type", new_type)


def drop_field(name: str) -> Any:
    return lambda s: s.__setitem__("fields", [f for f in s["fields"] if f["name"] != name])


def add_symbol(s: dict[str, Any]) -> None:
    s["fields"][5]["type"]["symbols"].append("LTI_PASSBACK")


COMPATIBLE = {
    "added optional field": add_field(name="trace_id", type=["null", "string"], default=None),
    "added defaulted long": add_field(name="attempt", type="long", default=0),
    "doc changed": lambda s: s.__setitem__("doc", "reworded"),
    "dropped defaulted field": drop_field("out_of"),
    "enum default added": lambda s: s["fields"][5]["type"].__setitem__("default", "MANUAL_GRADING"),
}
INCOMPATIBLE = {
    "added field without default": add_field(name="attempt", type="long"),
    "long became string": set_type(0, "string"),
    "nullable became required": lambda s: s["fields"][3].update(type="double", default=0.0),
    "dropped required field": drop_field("resource_id"),
    "enum symbol added": add_symbol,
    "record renamed": lambda s: s.__setitem__("name", "ScoreChanged"),
    "logical type dropped": set_type(6, "long"),
}


@pytest.mark.parametrize("change", COMPATIBLE.values(), ids=COMPATIBLE.keys())
def test_compatible_changes_resolve_both_ways(change: Any) -> None:
    v2 = evolved(change)
    assert resolution_problems(V1, v2) == ()
    assert resolution_problems(v2, V1) == ()


@pytest.mark.parametrize("change", INCOMPATIBLE.values(), ids=INCOMPATIBLE.keys())
def test_incompatible_changes_are_reported_in_some_direction(change: Any) -> None:
    v2 = evolved(change)
    assert resolution_problems(V1, v2) + resolution_problems(v2, V1) != ()


def test_a_new_enum_symbol_needs_a_default_in_the_old_reader() -> None:
    # Why v1 enums without a default freeze their symbols: an old reader meets the new symbol.
    v2 = evolved(add_symbol)
    assert resolution_problems(V1, v2) == ()
    assert resolution_problems(v2, V1) == (
        "$.cause: reader enum lacks symbols ['LTI_PASSBACK'] and has no default",
    )
    with_default = evolved(COMPATIBLE["enum default added"])
    assert resolution_problems(v2, with_default) == ()


def test_type_promotion_is_one_way() -> None:
    widened = evolved(set_type(0, "double"))
    assert resolution_problems(V1, widened) == ()
    assert resolution_problems(widened, V1) == (
        "$.section_id: writer type double cannot be read as long",
    )


def test_the_real_folder_is_full_transitive(catalogue: Catalogue) -> None:
    report = check_full_transitive(catalogue)
    assert report.ok, report.incompatibilities


def test_a_defaulted_v2_passes_and_every_pair_is_checked(
    write_schema: WriteSchema, schemas_copy: Path
) -> None:
    write_schema("page_score_updated.v2.avsc", evolved(COMPATIBLE["added optional field"]))
    write_schema("page_score_updated.v3.avsc", evolved(COMPATIBLE["added defaulted long"]))
    report = check_full_transitive(load_catalogue(schemas_copy))
    assert report.ok, report.incompatibilities
    # (v1,v2), (v1,v3), (v2,v3) of page_score_updated, each in both directions, and the two
    # directions of certificate_granted (v1,v2)
    assert report.pairs_checked == 8


def test_an_incompatible_v3_fails_against_v1_even_when_v2_is_fine(
    write_schema: WriteSchema, schemas_copy: Path
) -> None:
    # v2 drops a defaulted field; v3 re-adds it as a string: fine next to v2, not next to v1.
    write_schema("page_score_updated.v2.avsc", evolved(drop_field("out_of")))
    v3 = evolved(drop_field("out_of"))
    v3["fields"].append({"name": "out_of", "type": ["null", "string"], "default": None, "doc": "x"})
    write_schema("page_score_updated.v3.avsc", v3)
    report = check_full_transitive(load_catalogue(schemas_copy))
    assert not report.ok
    assert {(i.writer.version, i.reader.version) for i in report.incompatibilities} == {
        (1, 3),
        (3, 1),
    }


@pytest.mark.parametrize(
    ("name", "change"),
    [(n, c) for n, c in {**COMPATIBLE, **INCOMPATIBLE}.items() if n != "record renamed"],
)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fastavro_agrees_with_the_structural_check(
    name: str, change: Any, data: st.DataObject
) -> None:
    """Where the check says a pair resolves, fastavro reads every generated record of it."""
    v2 = evolved(change)
    for writer, reader in ((V1, v2), (v2, V1)):
        record = data.draw(datum(writer))
        buffer = io.BytesIO()
        schemaless_writer(buffer, parse_schema(writer), record)
        buffer.seek(0)
        if resolution_problems(writer, reader):
            continue  # fastavro may or may not notice on this record; the check is stricter
        decoded = schemaless_reader(buffer, parse_schema(writer), parse_schema(reader))
        shared = set(record) & set(decoded)
        assert {k: decoded[k] for k in shared} == {k: record[k] for k in shared}


def test_fastavro_refuses_a_field_without_default() -> None:
    v2 = evolved(INCOMPATIBLE["added field without default"])
    buffer = io.BytesIO()
    record = {
        "section_id": 1,
        "user_id": 2,
        "resource_id": 3,
        "score": None,
        "out_of": None,
        "cause": "MANUAL_GRADING",
        "occurred_at": 0,
    }
    schemaless_writer(buffer, parse_schema(V1), record)
    buffer.seek(0)
    with pytest.raises(SchemaResolutionError):
        schemaless_reader(buffer, parse_schema(V1), parse_schema(v2))


def test_every_event_type_is_checked(catalogue: Catalogue) -> None:
    assert {v.event_type for v in catalogue} == set(EventType)
