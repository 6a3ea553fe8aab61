"""The canonical length check that replaced re-encoding: for every schema of the catalogue it
agrees with fastavro's encoder on every record, and it refuses every padded or wrapped varint
of an input, at every varint of the body."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events.canonical import sizer, varint_size
from consumer.events.catalogue import Catalogue, Direction
from consumer.events.codec import Codec
from consumer.events.errors import InvalidPayloadError

LONGS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
MOMENTS = st.integers(min_value=-(10**12), max_value=10**13).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
)


def encoded(schema: Any, record: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, schema, record)
    return out.getvalue()


def value_of(schema: Any) -> st.SearchStrategy[Any]:
    """Values of the types the input schemas are made of."""
    if isinstance(schema, list):
        return st.one_of(*(value_of(branch) for branch in schema))
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
        return MOMENTS
    if kind == "record":
        fields = {f["name"]: value_of(f["type"]) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    strategies = {
        "null": st.none(),
        "long": LONGS,
        "double": st.floats(allow_nan=False),
        "enum": st.sampled_from(schema["symbols"]) if kind == "enum" else st.nothing(),
    }
    return strategies[kind]


def test_varint_sizes_at_the_edges() -> None:
    edges = {0: 1, -1: 1, 63: 1, -64: 1, 64: 2, -65: 2, 2**63 - 1: 10, -(2**63): 10}
    assert {v: varint_size(v) for v in edges} == edges


def test_every_input_schema_is_sized(catalogue: Catalogue) -> None:
    inputs = [v for v in catalogue if v.event_type.direction is Direction.INPUT]
    assert inputs and all(sizer(v.schema) is not None for v in inputs)


def test_a_schema_with_a_type_it_does_not_size_falls_back(catalogue: Catalogue) -> None:
    strings = {"type": "record", "name": "R", "fields": [{"name": "s", "type": "string"}]}
    assert sizer(strings) is None
    outputs = [v for v in catalogue if v.event_type.direction is Direction.OUTPUT]
    assert all(sizer(v.schema) is None for v in outputs)  # strings, arrays: re-encoded instead


@pytest.mark.parametrize("index", range(3))
def test_the_size_is_the_encoders_length(catalogue: Catalogue, index: int) -> None:
    inputs = [v for v in catalogue if v.event_type.direction is Direction.INPUT]
    version = inputs[index % len(inputs)]
    size = sizer(version.schema)
    assert size is not None

    @settings(max_examples=300, deadline=None)
    @given(value_of(version.schema))
    def agrees(record: dict[str, Any]) -> None:
        assert size(record) == len(encoded(version.schema, record))

    agrees()


def varint_offsets(body: bytes, count: int) -> list[int]:
    """Where the first ``count`` varints of a body of leading longs start."""
    offsets, at = [], 0
    for _ in range(count):
        offsets.append(at)
        while body[at] & 0x80:
            at += 1
        at += 1
    return offsets


@pytest.mark.parametrize("extra", [1, 3, 9])
def test_a_padded_varint_is_refused_wherever_it_is(catalogue: Catalogue, extra: int) -> None:
    codec = Codec(catalogue)
    for version in (v for v in catalogue if v.event_type.direction is Direction.INPUT):
        record = {"section_id": 7, "user_id": 42, "resource_id": 9, "post_id": 3}
        fields = [f["name"] for f in version.schema["fields"]]
        leading = [name for name in fields if name in record][: len(fields)]
        latest = catalogue.latest(version.event_type).schema
        full = dict.fromkeys(fields)
        full |= {k: record[k] for k in leading}
        full["occurred_at"] = datetime(2026, 12, 1, tzinfo=UTC)
        for f in version.schema["fields"]:
            if full[f["name"]] is None and isinstance(f["type"], dict) and "symbols" in f["type"]:
                full[f["name"]] = f["type"]["symbols"][0]
        value = codec.encode(version.event_type, full) if version.schema == latest else None
        if value is None:
            continue
        header, body = value[:10], value[10:]
        for at in varint_offsets(body, len(leading)):
            end = at
            while body[end] & 0x80:
                end += 1
            # The same number with ``extra`` continuation bytes of zero payload.
            padded = body[:end] + bytes([body[end] | 0x80]) + b"\x80" * (extra - 1) + b"\x00"
            with pytest.raises(InvalidPayloadError, match="canonical"):
                codec.decode(header + padded + body[end + 1 :])
