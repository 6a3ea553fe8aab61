"""Hypothesis strategies that generate any datum an Avro schema accepts.

Built from the expanded schema (named types inlined), so a strategy never needs a name table.
Timestamps are whole milliseconds and floats are never NaN, so a round trip compares equal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastavro.schema import parse_schema
from hypothesis import strategies as st

_LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_INT = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": _INT,
    "long": _LONG,
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=30),
    "bytes": st.binary(max_size=30),
}


def _timestamp_millis() -> st.SearchStrategy[datetime]:
    moments = st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
    return moments.map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))


def datum(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value valid for ``schema`` (a .avsc dict or fastavro-parsed schema)."""
    return _for(parse_schema(schema, expand=True))


def _for(schema: Any) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.one_of([_for(branch) for branch in schema])
    if isinstance(schema, str):
        return _PRIMITIVES[schema]
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        return _timestamp_millis()
    if logical == "uuid":
        return st.uuids()
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: _for(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(_for(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), _for(schema["values"]), max_size=4)
    return _PRIMITIVES[kind]
