"""The codec: round trips in both framings, old/new versions, and only typed errors on garbage."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import FatalError, PoisonError, TransientError
from consumer.events.catalogue import Catalogue, EventType, crc64_avro, load_catalogue
from consumer.events.codec import Codec
from consumer.events.errors import (
    CodecError,
    EncodeError,
    Framing,
    IncompatibleSchemaError,
    InvalidPayloadError,
    RegistryUnavailableError,
    TruncatedRecordError,
    UnknownFramingError,
    UnknownSchemaError,
    UnregisteredSchemaError,
    WrongEventTypeError,
)
from tests.contracts.conftest import WriteSchema, raw_schema
from tests.contracts.strategies import datum

NOW = datetime(2026, 8, 1, 12, 0, 0, 123000, tzinfo=UTC)
SCORE = {
    "section_id": 7,
    "user_id": 42,
    "resource_id": 9,
    "score": 57.0,
    "out_of": 100.0,
    "cause": "GRADED_FINALIZE",
    "occurred_at": NOW,
}
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def register_latest(registry: SchemaRegistryClient, catalogue: Catalogue, prefix: str = "") -> None:
    for event_type in EventType:
        latest = catalogue.latest(event_type)
        schema = RegistrySchema(latest.path.read_text(), "AVRO")
        registry.register_schema(f"{prefix}{event_type.default_topic}-value", schema)


def topic(event_type: EventType, prefix: str = "") -> str:
    return prefix + event_type.default_topic


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_single_object_round_trip(
    catalogue: Catalogue, event_type: EventType, data: st.DataObject
) -> None:
    record = data.draw(datum(catalogue.latest(event_type).schema))
    value = Codec(catalogue).encode(event_type, record)
    assert value[:10] == b"\xc3\x01" + catalogue.latest(event_type).fingerprint
    decoded = Codec(catalogue).decode(value, accepted={event_type})
    assert (decoded.event_type, decoded.writer_version, decoded.framing) == (
        event_type,
        catalogue.latest(event_type).version,
        Framing.SINGLE_OBJECT,
    )
    assert decoded.record == record


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_confluent_round_trip_with_the_mock_registry(
    catalogue: Catalogue, event_type: EventType, data: st.DataObject
) -> None:
    registry = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    register_latest(registry, catalogue)
    codec = Codec(catalogue, registry)
    record = data.draw(datum(catalogue.latest(event_type).schema))
    value = codec.encode(event_type, record)
    assert value[0] == 0
    decoded = Codec(catalogue, registry).decode(value)
    assert (decoded.event_type, decoded.writer_version, decoded.framing) == (
        event_type,
        catalogue.latest(event_type).version,
        Framing.CONFLUENT,
    )
    assert decoded.record == record


def test_a_codec_with_a_registry_still_reads_single_object(
    catalogue: Catalogue, mock_registry: SchemaRegistryClient
) -> None:
    value = Codec(catalogue).encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    assert Codec(catalogue, mock_registry).decode(value).record == SCORE


def _v2(catalogue_dir: Path, write_schema: WriteSchema) -> Catalogue:
    v2 = raw_schema("page_score_updated.v1.avsc")
    v2["fields"].append({"name": "attempt", "type": "long", "default": 1, "doc": "Attempt number."})
    write_schema("page_score_updated.v2.avsc", v2)
    return load_catalogue(catalogue_dir)


def test_v1_and_v2_both_decode_into_the_latest_shape(
    catalogue: Catalogue, schemas_copy: Path, write_schema: WriteSchema
) -> None:
    with_v2 = _v2(schemas_copy, write_schema)
    old_value = Codec(catalogue).encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    new_value = Codec(with_v2).encode(EventType.PAGE_SCORE_UPDATED, SCORE | {"attempt": 3})

    old = Codec(with_v2).decode(old_value)
    new = Codec(with_v2).decode(new_value)
    assert (old.writer_version, old.record) == (1, SCORE | {"attempt": 1})
    assert (new.writer_version, new.record) == (2, SCORE | {"attempt": 3})


def test_an_old_service_cannot_place_a_v2_fingerprint(
    catalogue: Catalogue, schemas_copy: Path, write_schema: WriteSchema
) -> None:
    # Single-object encoding names the writer by fingerprint only: a consumer deployed before
    # v2 cannot read v2 until it ships v2's .avsc. (A registry lifts this: see the next test.)
    new_value = Codec(_v2(schemas_copy, write_schema)).encode(
        EventType.PAGE_SCORE_UPDATED, SCORE | {"attempt": 3}
    )
    with pytest.raises(UnknownSchemaError) as caught:
        Codec(catalogue).decode(new_value)
    assert caught.value.fingerprint == new_value[2:10]


def test_through_a_registry_an_old_service_reads_a_newer_writer(
    catalogue: Catalogue,
    schemas_copy: Path,
    write_schema: WriteSchema,
    mock_registry: SchemaRegistryClient,
) -> None:
    with_v2 = _v2(schemas_copy, write_schema)
    register_latest(mock_registry, with_v2)
    new_value = Codec(with_v2, mock_registry).encode(
        EventType.PAGE_SCORE_UPDATED, SCORE | {"attempt": 3}
    )
    decoded = Codec(catalogue, mock_registry).decode(new_value)
    assert (decoded.writer_version, decoded.record) == (None, SCORE)


def _confluent(schema_id: int, body: bytes = b"") -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def _registered(registry: SchemaRegistryClient, schema: dict[str, Any]) -> int:
    return registry.register_schema(
        f"t{uuid.uuid4().hex}-value", RegistrySchema(json.dumps(schema), "AVRO")
    )


@pytest.mark.parametrize(
    ("value", "error", "attributes"),
    [
        (None, TruncatedRecordError, {"length": 0, "framing": None}),
        (b"", TruncatedRecordError, {"length": 0}),
        (b"\xc3", TruncatedRecordError, {"length": 1}),
        (b"\xc3\x01\x00", TruncatedRecordError, {"framing": Framing.SINGLE_OBJECT, "needed": 10}),
        (b"\x00\x00\x01", TruncatedRecordError, {"framing": Framing.CONFLUENT, "needed": 5}),
        (b'{"section_id": 1}', UnknownFramingError, {"prefix": b'{"'}),
        (b"\xc3\x02" + bytes(8), UnknownFramingError, {"prefix": b"\xc3\x02"}),
        (b"\xc3\x01" + bytes(8), UnknownSchemaError, {"fingerprint": bytes(8)}),
        (
            _confluent(5),
            UnknownSchemaError,
            {"schema_id": 5, "reason": "no schema registry configured"},
        ),
    ],
)
def test_framing_errors_are_typed(
    catalogue: Catalogue, value: bytes | None, error: type[CodecError], attributes: dict[str, Any]
) -> None:
    with pytest.raises(error) as caught:
        Codec(catalogue).decode(value)
    assert isinstance(caught.value, PoisonError)
    for name, expected in attributes.items():
        assert getattr(caught.value, name) == expected


def test_wrong_event_type_names_both(catalogue: Catalogue) -> None:
    value = Codec(catalogue).encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    with pytest.raises(WrongEventTypeError) as caught:
        Codec(catalogue).decode(value, accepted={EventType.POST_CREATED})
    assert (caught.value.expected, caught.value.actual) == (
        (EventType.POST_CREATED,),
        EventType.PAGE_SCORE_UPDATED,
    )


def test_bytes_left_over_are_invalid(catalogue: Catalogue) -> None:
    value = Codec(catalogue).encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    with pytest.raises(InvalidPayloadError, match="1 bytes left over") as caught:
        Codec(catalogue).decode(value + b"\x00")
    assert caught.value.event_type is EventType.PAGE_SCORE_UPDATED


def test_a_record_cut_short_is_invalid(catalogue: Catalogue) -> None:
    value = Codec(catalogue).encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    with pytest.raises(InvalidPayloadError):
        Codec(catalogue).decode(value[:-3])


def test_registry_ids_that_are_unknown_foreign_or_incompatible(
    catalogue: Catalogue, mock_registry: SchemaRegistryClient
) -> None:
    codec = Codec(catalogue, mock_registry)
    with pytest.raises(UnknownSchemaError, match="not in the registry"):
        codec.decode(_confluent(404))
    foreign = _registered(mock_registry, {"type": "record", "name": "Other", "fields": []})
    with pytest.raises(UnknownSchemaError, match="not one of our event types"):
        codec.decode(_confluent(foreign))
    changed = copy.deepcopy(raw_schema("post_created.v1.avsc"))
    changed["fields"][0]["type"] = "string"
    incompatible = _registered(mock_registry, changed)
    with pytest.raises(IncompatibleSchemaError) as caught:
        codec.decode(_confluent(incompatible, b"\x02a"))
    assert caught.value.problems == ("$.section_id: writer type string cannot be read as long",)


def test_registry_schemas_are_fetched_once(
    catalogue: Catalogue, mock_registry: SchemaRegistryClient
) -> None:
    register_latest(mock_registry, catalogue)
    value = Codec(catalogue, mock_registry).encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    calls: list[int] = []

    class Counting:
        def get_schema(self, schema_id: int) -> RegistrySchema:
            calls.append(schema_id)
            return mock_registry.get_schema(schema_id)

    codec = Codec(catalogue, Counting())  # type: ignore[arg-type]
    for _ in range(3):
        assert codec.decode(value).record == SCORE
    assert len(calls) == 1


def test_an_unreachable_registry_is_transient_not_poison(catalogue: Catalogue) -> None:
    down = SchemaRegistryClient({"url": "http://127.0.0.1:9", "max.retries": 0})
    with pytest.raises(RegistryUnavailableError) as caught:
        Codec(catalogue, down).decode(_confluent(1, b""))
    assert isinstance(caught.value, TransientError)
    assert not isinstance(caught.value, PoisonError)


def test_encoding_a_bad_record_is_an_encode_error(catalogue: Catalogue) -> None:
    with pytest.raises(EncodeError) as caught:
        Codec(catalogue).encode(EventType.PAGE_SCORE_UPDATED, SCORE | {"cause": "GUESSED"})
    assert isinstance(caught.value, FatalError)
    assert caught.value.event_type is EventType.PAGE_SCORE_UPDATED


def test_encoding_to_an_unregistered_subject_waits_it_is_not_the_events_fault(
    catalogue: Catalogue, mock_registry: SchemaRegistryClient
) -> None:
    codec = Codec(catalogue, mock_registry)
    with pytest.raises(
        UnregisteredSchemaError, match=r"is not registered under torus\.page-score-updated-value"
    ) as caught:
        codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    assert isinstance(caught.value, TransientError)
    with pytest.raises(UnregisteredSchemaError):
        codec.check_registered(EventType.PAGE_SCORE_UPDATED, "torus.page-score-updated")
    register_latest(mock_registry, catalogue)
    codec.check_registered(EventType.PAGE_SCORE_UPDATED, "torus.page-score-updated")
    assert codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)[:1] == b"\x00"


# Fuzzing: whatever the bytes, decode raises a CodecError and nothing else.


def _decode_or_codec_error(codec: Codec, value: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec.decode(value)


@FUZZ
@given(value=st.binary(max_size=64))
def test_fuzz_any_bytes(catalogue: Catalogue, value: bytes) -> None:
    _decode_or_codec_error(Codec(catalogue), value)


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
@FUZZ
@given(body=st.binary(max_size=96))
def test_fuzz_bodies_behind_a_known_fingerprint(
    catalogue: Catalogue, event_type: EventType, body: bytes
) -> None:
    header = b"\xc3\x01" + catalogue.latest(event_type).fingerprint
    _decode_or_codec_error(Codec(catalogue), header + body)


@pytest.mark.parametrize("event_type", list(EventType), ids=str)
@FUZZ
@given(
    data=st.data(),
    cut=st.integers(min_value=0, max_value=200),
    flip=st.integers(min_value=0, max_value=255),
)
def test_fuzz_mutated_valid_records(
    catalogue: Catalogue, event_type: EventType, data: st.DataObject, cut: int, flip: int
) -> None:
    """Truncated and bit-flipped real records: the hard cases for a decoder."""
    codec = Codec(catalogue)
    value = codec.encode(event_type, data.draw(datum(catalogue.latest(event_type).schema)))
    _decode_or_codec_error(codec, value[: len(value) - cut % len(value)])
    position = 10 + cut % max(1, len(value) - 10)
    mutated = bytearray(value)
    if position < len(mutated):
        mutated[position] ^= flip
    _decode_or_codec_error(codec, bytes(mutated))


@FUZZ
@given(body=st.binary(max_size=64), schema_id=st.integers(min_value=0, max_value=2**32 - 1))
def test_fuzz_confluent_framed(
    catalogue: Catalogue, mock_registry: SchemaRegistryClient, body: bytes, schema_id: int
) -> None:
    _decode_or_codec_error(Codec(catalogue, mock_registry), _confluent(schema_id, body))


def test_crc_helper_matches_the_catalogue(catalogue: Catalogue) -> None:
    latest = catalogue.latest(EventType.POST_CREATED)
    assert crc64_avro(raw_schema("post_created.v1.avsc")) == latest.fingerprint
    buffer = io.BytesIO()
    schemaless_writer(
        buffer,
        latest.schema,
        {
            "section_id": 1,
            "user_id": 2,
            "post_id": 3,
            "annotated_resource_id": None,
            "visibility": "PUBLIC",
            "occurred_at": NOW,
        },
    )
    value = b"\xc3\x01" + latest.fingerprint + buffer.getvalue()
    assert Codec(catalogue).decode(value).record["visibility"] == "PUBLIC"
