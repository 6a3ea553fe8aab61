"""What a poison record becomes on the dead-letter topic: the original bytes with ``dlq.*``
headers saying where it came from and why, cut down until it fits.

A dead-letter copy the broker refuses would hold back its partition forever (the offset is
stored only once the copy is acknowledged), so every copy is made to fit before it is sent:
the key, the original headers and the value each get a share of the budget, and whatever is
cut or dropped is named in a header (``dlq.key.truncated.from.bytes``,
``dlq.headers.dropped.count``/``.bytes``, ``dlq.value.truncated.from.bytes``). If the topic
still refuses a copy for its size (its ``max.message.bytes`` is lower than the producer's), the
copy is made again from the original on a smaller budget (see :data:`FALLBACK_BUDGETS`).

Pure functions over confluent-kafka ``Message`` objects and ``Outgoing`` records.
"""

from __future__ import annotations

from datetime import datetime

from confluent_kafka import Message

from consumer.errors import PoisonError, UnexpectedRecordError
from consumer.events.envelope import Headers, Outgoing

# Room left for the record batch framing and per-record varints, which the budget does not see.
FRAMING_BYTES = 1024
MAX_KEY_BYTES = 1024
MAX_ORIGINAL_HEADER_BYTES = 16 * 1024
ERROR_MESSAGE_BYTES = 1000
# Budgets tried in turn after the topic refused a copy for its size: small enough for any
# dead-letter topic that can hold a record at all.
FALLBACK_BUDGETS = (64 * 1024, 8 * 1024)
# What one header costs besides its name and value (length varints, attributes).
_HEADER_OVERHEAD = 8
# The headers that say a part of the original was cut, and which part (metrics label).
KEY_CUT = "dlq.key.truncated.from.bytes"
HEADERS_DROPPED = "dlq.headers.dropped.count"
HEADERS_DROPPED_BYTES = "dlq.headers.dropped.bytes"
VALUE_CUT = "dlq.value.truncated.from.bytes"
CUT_PARTS = {KEY_CUT: "key", HEADERS_DROPPED: "headers", VALUE_CUT: "value"}


def error_class(error: PoisonError) -> str:
    """The class named in headers and metrics: the original one for an unforeseen failure."""
    if isinstance(error, UnexpectedRecordError):
        return type(error.cause).__name__
    return type(error).__name__


def error_kind(error: PoisonError) -> str:
    """``unexpected`` when our code failed on the record (a bug to look at), else ``invalid``."""
    return "unexpected" if isinstance(error, UnexpectedRecordError) else "invalid"


def cut_parts(headers: Headers) -> list[str]:
    """The parts (``key``, ``headers``, ``value``) a dead-letter copy says were cut."""
    return [CUT_PARTS[name] for name, _ in headers if name in CUT_PARTS]


def header_list(msg: Message) -> Headers:
    """A record's headers as (name, value) pairs, however the client handed them over."""
    headers = msg.headers() or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def dead_letter(
    msg: Message, error: PoisonError, first_seen: datetime, *, topic: str, budget: int
) -> Outgoing:
    """The dead-letter copy of ``msg``, already cut to fit in ``budget`` bytes."""
    reasons: Headers = [
        ("dlq.source.topic", str(msg.topic()).encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.error.class", error_class(error).encode()),
        ("dlq.error.kind", error_kind(error).encode()),
        ("dlq.error.message", str(error).encode("utf-8", "replace")[:ERROR_MESSAGE_BYTES]),
        ("dlq.first.seen", first_seen.isoformat().encode()),
    ]
    original = Outgoing(topic, msg.value(), msg.key(), header_list(msg))
    return fit(original, reasons, budget)


def fit(original: Outgoing, reasons: Headers, budget: int) -> Outgoing:
    """``original`` with ``reasons`` appended, its key, headers and value cut to ``budget``.

    Shares: the key at most 1 KiB (and an eighth of the budget), the original headers at most
    16 KiB (and a quarter), the value whatever is left. Our own ``dlq.*`` headers are always
    kept whole: they are small and they are the point of the copy.
    """
    notes: Headers = []
    key = original.key
    key_limit = min(MAX_KEY_BYTES, budget // 8)
    if key is not None and len(key) > key_limit:
        notes.append((KEY_CUT, str(len(key)).encode()))
        key = key[:key_limit]
    kept, dropped = _keep_headers(original.headers, min(MAX_ORIGINAL_HEADER_BYTES, budget // 4))
    if dropped:
        notes.append((HEADERS_DROPPED, str(len(dropped)).encode()))
        notes.append((HEADERS_DROPPED_BYTES, str(_size(dropped)).encode()))
    value = original.value
    fixed = len(key or b"") + _size(kept) + _size(reasons) + _size(notes) + FRAMING_BYTES
    value_limit = max(0, budget - fixed - _size([(VALUE_CUT, b"x" * 20)]))
    if value is not None and len(value) > value_limit:
        notes.append((VALUE_CUT, str(len(value)).encode()))
        value = value[:value_limit]
    return Outgoing(original.topic, value, key, [*kept, *reasons, *notes])


def _keep_headers(headers: Headers, limit: int) -> tuple[Headers, Headers]:
    """The leading headers that fit in ``limit`` bytes, and the ones dropped."""
    kept: Headers = []
    used = 0
    for index, header in enumerate(headers):
        cost = _size([header])
        if used + cost > limit:
            return kept, list(headers[index:])
        kept.append(header)
        used += cost
    return kept, []


def _size(headers: Headers) -> int:
    return sum(
        len(name.encode("utf-8", "replace")) + len(_bytes(value)) + _HEADER_OVERHEAD
        for name, value in headers
    )


def _bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode("utf-8", "replace") if isinstance(value, str) else value
