"""The Kafka message around an Avro value: CloudEvents binary-mode headers and the record key.

Inputs: :func:`read_trigger` turns a consumed (key, value, headers) into a :class:`Trigger`.
The payload's schema decides the event type, so missing or unreadable headers are tolerated and
reported in ``Trigger.header_problems`` (for a log line and a metric), never fatal. The key and
the topic are not tolerated: a record whose type its topic does not carry, whose key names
another learner than its body, or whose ids are not positive 64-bit integers is poison, so a
trigger can only ever come from the place and for the learner it claims (ADR 0008).

Outputs: :func:`build_output` encodes a record and gives it its key and headers; the record's
deterministic ``event_id`` is the ``ce_id``, so a re-publish is recognisably the same event.

Keys are ``"<section_id>:<user_id>"`` (``"<section_id>"`` for section-wide events), so one
student's events stay in order on one partition.

    PoisonError
    └── EnvelopeError
        ├── InvalidKeyError      a record key that is not "<section_id>[:<user_id>]"
        └── KeyMismatchError     a key naming other ids than the record's body

Imports the codec and the catalogue; knows nothing of consumers, producers or the database.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from consumer.errors import PoisonError
from consumer.events.catalogue import Direction, EventType, parse_ce_type
from consumer.events.codec import Codec, Decoded
from consumer.events.errors import InvalidPayloadError

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/avro"
MAX_KEY_LENGTH = 39  # two 19-digit ids (the largest bigint has 19 digits) and a colon
_KEY = re.compile(rb"([1-9][0-9]{0,18})(?::([1-9][0-9]{0,18}))?")
_BIGINT_MAX = 2**63 - 1
INPUT_TYPES = frozenset(e for e in EventType if e.direction is Direction.INPUT)

Headers = list[tuple[str, bytes | str | None]]  # a record's headers, in order, as clients give them


class EnvelopeError(PoisonError):
    """The message around the value is unusable."""


class InvalidKeyError(EnvelopeError):
    """The record key is not ``"<section_id>[:<user_id>]"`` of positive ids; ``key`` is it."""

    def __init__(self, key: bytes | None) -> None:
        shown = "none" if key is None else repr(key[:MAX_KEY_LENGTH])
        super().__init__(f"record key {shown} is not '<section_id>:<user_id>'")
        self.key = key


class KeyMismatchError(EnvelopeError):
    """The key names ``key_ids`` but the body is about ``body_ids`` (section, user or None)."""

    def __init__(self, key_ids: tuple[int, int | None], body_ids: tuple[int, int | None]) -> None:
        super().__init__(f"record key names {_ids(key_ids)} but the body is about {_ids(body_ids)}")
        self.key_ids = key_ids
        self.body_ids = body_ids


def _ids(ids: tuple[int, int | None]) -> str:
    section_id, user_id = ids
    return f"section {section_id}" + ("" if user_id is None else f" user {user_id}")


@dataclass(frozen=True)
class Envelope:
    """The CloudEvents attributes of one message; None where a header was absent or unreadable."""

    id: str | None
    type: str | None
    source: str | None
    time: datetime | None
    specversion: str | None
    content_type: str | None
    problems: tuple[str, ...]


def parse_headers(headers: Headers | None) -> Envelope:
    """Read the ``ce_*`` and ``content-type`` headers; never raises, records problems instead."""
    texts: dict[str, str | None] = {}
    problems: list[str] = []
    for name, raw in headers or ():
        if name in texts:
            problems.append(f"{name}: repeated, the first value is used")
            continue
        texts[name] = _text(name, raw, problems)
    return Envelope(
        id=texts.get("ce_id"),
        type=texts.get("ce_type"),
        source=texts.get("ce_source"),
        time=_time(texts.get("ce_time"), problems),
        specversion=texts.get("ce_specversion"),
        content_type=texts.get("content-type"),
        problems=tuple(problems),
    )


def build_headers(*, event_id: str, ce_type: str, source: str, time: datetime) -> Headers:
    """The binary-mode CloudEvents headers of one produced record."""
    values = {
        "ce_id": event_id,
        "ce_type": ce_type,
        "ce_source": source,
        "ce_time": format_time(time),
        "ce_specversion": SPEC_VERSION,
        "content-type": CONTENT_TYPE,
    }
    return [(name, value.encode()) for name, value in values.items()]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2026-08-01T12:00:00.000Z``."""
    if moment.tzinfo is None:
        raise ValueError("ce_time needs a timezone-aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_key(section_id: int, user_id: int | None) -> bytes:
    """The record key; None for ``user_id`` keys a section-wide event by its section alone."""
    ids = (section_id,) if user_id is None else (section_id, user_id)
    if any(not 0 < i <= _BIGINT_MAX for i in ids):
        raise ValueError(f"ids must be positive 64-bit integers, got {ids}")
    return ":".join(str(i) for i in ids).encode()


def parse_key(key: bytes | None) -> tuple[int, int | None]:
    """``(section_id, user_id)`` from a record key; user_id None for a section-wide key."""
    match = _KEY.fullmatch(key) if key is not None and len(key) <= MAX_KEY_LENGTH else None
    if match is None:
        raise InvalidKeyError(key)
    section_id = int(match[1])
    user_id = None if match[2] is None else int(match[2])
    if section_id > _BIGINT_MAX or (user_id or 0) > _BIGINT_MAX:
        raise InvalidKeyError(key)
    return section_id, user_id


class Trigger(NamedTuple):
    """What ingest needs from one input event: whom to re-evaluate, and a trace of why.

    ``user_id`` is None for a section-wide trigger (certificate settings changed). A named
    tuple: one is made per consumed record, and a frozen dataclass costs several times more.
    """

    event_type: EventType
    writer_version: int | None
    section_id: int
    user_id: int | None
    occurred_at: datetime
    header_problems: tuple[str, ...]


def read_trigger(
    codec: Codec,
    value: bytes | None,
    headers: Headers | None,
    *,
    key: bytes | None,
    accepted: Collection[EventType] = INPUT_TYPES,
    check_headers: bool = True,
) -> Trigger:
    """Decode a consumed input into a Trigger; raises only PoisonError subclasses (or the
    codec's RegistryUnavailableError). ``accepted`` is the event types the topic carries (an
    output type is never a trigger); the key must name exactly the ids of the body. Headers
    decide nothing: with ``check_headers`` False they are not looked at (no problems).
    """
    decoded = codec.decode(value, accepted=accepted)
    record = decoded.record
    _check_longs(decoded, record)
    section_id = _positive_id(decoded, record, "section_id")
    user_id = None if "user_id" not in record else _positive_id(decoded, record, "user_id")
    key_ids = parse_key(key)
    if key_ids != (section_id, user_id):
        raise KeyMismatchError(key_ids, (section_id, user_id))
    return Trigger(
        event_type=decoded.event_type,
        writer_version=decoded.writer_version,
        section_id=section_id,
        user_id=user_id,
        occurred_at=record["occurred_at"],
        header_problems=header_problems(headers, decoded.event_type) if check_headers else (),
    )


def header_problems(headers: Headers | None, event_type: EventType) -> tuple[str, ...]:
    """What is off in a record's headers, for a log line and a metric (never fatal).

    Most records carry six well-formed ASCII headers naming the payload's own type: those are
    recognised with a dictionary and one timestamp parse. Anything else takes the full reading
    of :func:`parse_headers`, which says what is wrong.
    """
    seen: dict[str, bytes] = {}
    for name, raw in headers or ():
        if name in seen or not isinstance(raw, bytes) or not raw.isascii():
            return full_header_problems(headers, event_type)
        seen[name] = raw
    ce_type, ce_time = seen.get("ce_type"), seen.get("ce_time")
    if ce_type is None or _named_type(ce_type) is not event_type:
        return full_header_problems(headers, event_type)
    if ce_time is not None and not _is_utc_time(ce_time):
        return full_header_problems(headers, event_type)
    return ()


def full_header_problems(headers: Headers | None, event_type: EventType) -> tuple[str, ...]:
    """Every problem of the headers, read in full (what the quick check falls back to)."""
    envelope = parse_headers(headers)
    problems = list(envelope.problems)
    named = parse_ce_type(envelope.type) if envelope.type is not None else None
    if envelope.type is None:
        problems.append("ce_type: missing; the payload's schema decides")
    elif named is None or named[0] is not event_type:
        problems.append(f"ce_type: {envelope.type[:80]!r} disagrees with the payload, ignored")
    return tuple(problems)


@functools.lru_cache(maxsize=256)
def _named_type(ce_type: bytes) -> EventType | None:
    """The event type a ``ce_type`` header names (a handful of values, so cached)."""
    named = parse_ce_type(ce_type.decode("ascii"))
    return None if named is None else named[0]


def _is_utc_time(raw: bytes) -> bool:
    try:
        moment = datetime.fromisoformat(raw.decode("ascii"))
    except ValueError:
        return False
    return moment.tzinfo is not None


@dataclass(frozen=True)
class Outgoing:
    """One record to produce (``Producer.produce(topic, value, key, headers=...)``): an output
    event, a dead-letter copy or a redriven record. Plain data; ``kafka.delivery`` produces it."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers


def build_output(
    codec: Codec,
    event_type: EventType,
    record: Mapping[str, Any],
    *,
    source: str,
    time: datetime,
    topic: str | None = None,
) -> Outgoing:
    """Encode an output event with its key and headers; ``time`` is when it was decided."""
    chosen_topic = topic or event_type.default_topic
    value = codec.encode(event_type, record, topic=chosen_topic)
    return Outgoing(
        topic=chosen_topic,
        key=format_key(record["section_id"], record["student"]["user_id"]),
        value=value,
        headers=build_headers(
            event_id=str(record["event_id"]),
            ce_type=codec.catalogue.latest(event_type).ce_type,
            source=source,
            time=time,
        ),
    )


def _check_longs(decoded: Decoded, record: Mapping[str, Any]) -> None:
    """Every integer of an input must be a signed 64-bit value, as Avro's long is."""
    for field, value in record.items():
        if isinstance(value, int) and not -_BIGINT_MAX - 1 <= value <= _BIGINT_MAX:
            reason = f"{field} {value} does not fit a 64-bit long"
            raise InvalidPayloadError(decoded.framing, decoded.event_type, reason)


def _positive_id(decoded: Decoded, record: Mapping[str, Any], field: str) -> int:
    value = record.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _BIGINT_MAX:
        reason = f"{field} must be a positive id, got {value!r}"
        raise InvalidPayloadError(decoded.framing, decoded.event_type, reason)
    return value


def _text(name: str, raw: bytes | str | None, problems: list[str]) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{name}: not UTF-8")
        return None


def _time(text: str | None, problems: list[str]) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"ce_time: {text[:40]!r} is not RFC 3339")
        return None
    if moment.tzinfo is None:
        problems.append("ce_time: no UTC offset")
        return None
    return moment
