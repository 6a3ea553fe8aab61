"""The length of a record's canonical Avro encoding, computed from the decoded record.

Avro gives every value one shortest encoding, but fastavro also reads longer ones: varints padded
with continuation bytes, and varints past ten bytes that wrap around. An input is accepted only
if it is exactly the canonical encoding of what it decodes to (ADR 0004). Every field's canonical
encoding is the shortest possible for its value and decoding consumed the whole body, so the
body is canonical exactly when its length equals the canonical length: a padded varint makes it
longer, a wrapped one decodes to a value whose canonical form is shorter. Computing that length
is a few arithmetic steps per field, where re-encoding the record cost as much as decoding it.

Only the types our input schemas are made of are sized (records, long and int, double and
float, enums, timestamps in milliseconds, and unions of null with one of those);
:func:`sizer` returns None for any other schema, and the codec then re-encodes and compares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

Sizer = Callable[[Any], int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def varint_size(value: int) -> int:
    """Bytes of the zig-zag varint of a long."""
    if -64 <= value < 64:
        return 1
    zigzag = value << 1 if value >= 0 else (-value << 1) - 1
    return (zigzag.bit_length() + 6) // 7


def _millis(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# Every instant from mid-1970 to 2039 is a six-byte varint in milliseconds ([2^34, 2^41) ms):
# one comparison for the timestamps an input carries, the arithmetic for any other.
_SIX_BYTES = (_EPOCH + timedelta(milliseconds=2**34), _EPOCH + timedelta(milliseconds=2**41))


def _timestamp_millis_size(value: datetime) -> int:
    if _SIX_BYTES[0] <= value < _SIX_BYTES[1]:
        return 6
    return varint_size(_millis(value))


def _fixed(size: int) -> Sizer:
    return lambda _value: size


def _enum(symbols: list[str]) -> Sizer:
    sizes = {symbol: varint_size(index) for index, symbol in enumerate(symbols)}
    return sizes.__getitem__


def _nullable(branch: Sizer) -> Sizer:
    # The union's branch index is one byte either way (0 or 1).
    def size(value: Any) -> int:
        return 1 if value is None else 1 + branch(value)

    return size


def _record(fields: list[tuple[str, Sizer]]) -> Sizer:
    def size(record: Mapping[str, Any]) -> int:
        total = 0
        for name, field_size in fields:
            total += field_size(record[name])
        return total

    return size


def _primitive(name: str) -> Sizer | None:
    return {
        "null": _fixed(0),
        "long": varint_size,
        "int": varint_size,
        "double": _fixed(8),
        "float": _fixed(4),
    }.get(name)


def sizer(schema: Any) -> Sizer | None:
    """A function giving the canonical encoded length of a decoded value of ``schema`` (a
    parsed fastavro schema), or None when the schema holds a type this module does not size."""
    if isinstance(schema, str):
        return _primitive(schema)
    if isinstance(schema, list):
        return _union(schema)
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "record":
        fields = [(f["name"], sizer(f["type"])) for f in schema["fields"]]
        if any(s is None for _, s in fields):
            return None
        return _record([(name, s) for name, s in fields if s is not None])
    if kind == "enum":
        return _enum(list(schema["symbols"]))
    if kind == "long" and schema.get("logicalType") == "timestamp-millis":
        return _timestamp_millis_size
    if isinstance(kind, str) and "logicalType" not in schema:
        return _primitive(kind)
    return None


def _union(branches: list[Any]) -> Sizer | None:
    if len(branches) != 2 or "null" not in branches:
        return None
    other = sizer(branches[1] if branches[0] == "null" else branches[0])
    return None if other is None else _nullable(other)
