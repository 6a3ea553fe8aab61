"""The catalogue: what schemas/ holds, how versions are named, fingerprinted and validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

from consumer.errors import ConfigError
from consumer.events.catalogue import (
    Catalogue,
    Direction,
    EventType,
    crc64_avro,
    load_catalogue,
    locate_schemas_dir,
    parse_ce_type,
)
from tests.contracts.conftest import SCHEMAS, WriteSchema, raw_schema


def test_every_event_type_has_a_v1(catalogue: Catalogue) -> None:
    for event_type in EventType:
        assert catalogue.history(event_type)[0].version == 1


@pytest.mark.parametrize(
    ("event_type", "ce_type", "topic", "direction"),
    [
        (
            EventType.PAGE_SCORE_UPDATED,
            "org.oli.torus.page_score_updated.v1",
            "torus.page-score-updated",
            Direction.INPUT,
        ),
        (
            EventType.POST_CREATED,
            "org.oli.torus.post_created.v1",
            "torus.post-created",
            Direction.INPUT,
        ),
        (
            EventType.CERTIFICATE_SETTINGS_CHANGED,
            "org.oli.torus.certificate_settings_changed.v1",
            "torus.certificate-settings-changed",
            Direction.INPUT,
        ),
        (
            EventType.CERTIFICATE_GRANTED,
            "org.oli.torus.certificate_granted.v2",
            "torus.certificate-granted",
            Direction.OUTPUT,
        ),
        (
            EventType.APPROVAL_REQUESTED,
            "org.oli.torus.approval_requested.v1",
            "torus.approval-requested",
            Direction.OUTPUT,
        ),
    ],
)
def test_names_topics_and_directions(
    catalogue: Catalogue, event_type: EventType, ce_type: str, topic: str, direction: Direction
) -> None:
    assert catalogue.latest(event_type).ce_type == ce_type
    assert event_type.default_topic == topic
    assert event_type.direction is direction
    assert parse_ce_type(ce_type) == (event_type, int(ce_type.rsplit(".v", 1)[1]))


@pytest.mark.parametrize(
    "ce_type",
    [
        "",
        "org.oli.torus.nope.v1",
        "org.oli.torus.post_created",
        "org.oli.torus.post_created.v0",
        "com.example.post_created.v1",
        "org.oli.torus.post_created.v1 ",
        "org.oli.torus.post_created.v1\n",
    ],
)
def test_foreign_ce_types_are_not_ours(ce_type: str) -> None:
    assert parse_ce_type(ce_type) is None


def test_crc64_avro_matches_the_spec_test_vector() -> None:
    # Fingerprint of the schema "null" from the Avro test suite: 0x63dd24e7cc258f8a, stored
    # little-endian in single-object headers.
    assert crc64_avro("null") == (0x63DD24E7CC258F8A).to_bytes(8, "little")  # type: ignore[arg-type]


def test_canonical_form_strips_logical_types_as_the_spec_says() -> None:
    # [STRIP] keeps only type/name/fields/symbols/items/values/size, and [PRIMITIVES] turns
    # {"type": "long"} into "long": a timestamp-millis long has the fingerprint of a long.
    # (The `avro` Python package keeps {"type":"long"} here, so its fingerprints differ.)
    assert to_parsing_canonical_form({"type": "long", "logicalType": "timestamp-millis"}) == (
        '"long"'
    )


def test_fingerprints_are_of_the_canonical_form(catalogue: Catalogue) -> None:
    for version in catalogue:
        assert version.fingerprint == crc64_avro(json.loads(version.path.read_text()))
        assert catalogue.by_fingerprint(version.fingerprint) is version
    assert len({v.fingerprint for v in catalogue}) == len(catalogue.versions)


def _docs_missing(schema: Any, where: str) -> list[str]:
    if isinstance(schema, list):
        return [m for i, branch in enumerate(schema) for m in _docs_missing(branch, f"{where}|{i}")]
    if not isinstance(schema, dict):
        return []
    missing = [] if schema.get("type") not in ("record", "enum") or "doc" in schema else [where]
    for field in schema.get("fields", ()):
        if "doc" not in field:
            missing.append(f"{where}.{field['name']}")
        missing += _docs_missing(field["type"], f"{where}.{field['name']}")
    if schema.get("type") == "array":
        missing += _docs_missing(schema["items"], f"{where}[]")
    return missing


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.avsc")), ids=lambda p: p.name)
def test_every_record_enum_and_field_is_documented(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["namespace"] == "org.oli.torus.certificates"
    assert _docs_missing(schema, schema["name"]) == []


def test_the_catalogue_is_parsed_once_per_folder() -> None:
    assert load_catalogue(SCHEMAS) is load_catalogue(SCHEMAS / ".." / "schemas")


def test_the_configured_schemas_dir_wins_over_the_packaged_one(tmp_path: Path) -> None:
    assert locate_schemas_dir(str(tmp_path)) == tmp_path
    # In a checkout the package's schemas folder is the top-level schemas/ (a link, no copy).
    assert locate_schemas_dir().resolve() == SCHEMAS.resolve()


@pytest.mark.parametrize(
    ("file_name", "content", "expected"),
    [
        ("nonsense.v1.avsc", "{}", "nonsense.v1.avsc: file name is not"),
        ("post_created.v3.avsc", None, "post_created: versions [1, 3]"),
        ("post_created.v2.avsc", "{not json", "post_created.v2.avsc:"),
        ("post_created.v2.avsc", '"long"', "top-level schema must be a record"),
        (
            "post_created.v2.avsc",
            '{"type": "record", "name": "X", "fields": [{"name": "a"}]}',
            "post_created.v2.avsc:",
        ),
    ],
)
def test_a_bad_folder_is_a_config_error_naming_the_file(
    write_schema: WriteSchema,
    schemas_copy: Path,
    file_name: str,
    content: str | None,
    expected: str,
) -> None:
    if content is None:
        write_schema(file_name, raw_schema("post_created.v1.avsc") | {"doc": "changed"})
    else:
        (schemas_copy / file_name).write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_catalogue(schemas_copy)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_every_problem_is_listed_at_once(write_schema: WriteSchema, schemas_copy: Path) -> None:
    (schemas_copy / "post_created.v2.avsc").write_text("{")
    renamed = raw_schema("page_score_updated.v1.avsc") | {"name": "Renamed", "doc": "x"}
    write_schema("page_score_updated.v2.avsc", renamed)
    with pytest.raises(ConfigError) as caught:
        load_catalogue(schemas_copy)
    assert len(caught.value.problems) == 2, caught.value.problems
    assert "record name changed" in caught.value.problems[1]


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        load_catalogue(tmp_path / "absent")
