"""Hostile input records by kind, each with the dead-letter reason(s) it must end with.

A record whose ``expected`` is empty is a good record in a hostile wrapping (wrong or missing
headers, headers near the size limit): it must be processed, not dead-lettered.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumer.events.catalogue import EventType
from consumer.events.codec import Codec
from consumer.events.envelope import build_headers, format_key
from tests.faults.world import World, post_record, score_record, settings_record
from tests.integration.service import Topics

Headers = list[tuple[str, bytes]] | None
BIG_LIMIT_TOPIC_BYTES = 3_000_000  # the scores topic of the hostile scenario takes big records
_NOW = datetime(2026, 12, 1, tzinfo=UTC)
_MILLIS = int(_NOW.timestamp() * 1000)


@dataclass(frozen=True)
class Hostile:
    kind: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    expected: frozenset[str]


def zigzag(n: int) -> bytes:
    """An Avro long, canonical (``pad`` continuation bytes make it over-long)."""
    z = (n << 1) ^ (n >> 63) if -(2**63) <= n < 2**63 else n << 1
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def padded(n: int, extra: int) -> bytes:
    """The same long with ``extra`` redundant continuation bytes (an over-long varint)."""
    plain = bytearray(zigzag(n))
    plain[-1] |= 0x80
    return bytes(plain) + b"\x80" * (extra - 1) + b"\x00"


def score_body(
    section: bytes, user: bytes, *, union: int = 0, enum: int = 0, resource: int = 101
) -> bytes:
    """A page_score_updated body from pre-encoded ids, with chosen union/enum indexes."""
    return (
        section
        + user
        + zigzag(resource)
        + zigzag(union)
        + zigzag(0)
        + zigzag(enum)
        + zigzag(_MILLIS)
    )


class Generator:
    """Draws hostile records for the world's topics, all kinds in proportion."""

    def __init__(self, codec: Codec, topics: Topics, world: World, rng: random.Random) -> None:
        self.codec = codec
        self.topics = topics
        self.world = world
        self.rng = rng
        self.fingerprint = codec.catalogue.latest(EventType.PAGE_SCORE_UPDATED).fingerprint
        self.inputs = {
            topics.scores: EventType.PAGE_SCORE_UPDATED,
            topics.posts: EventType.POST_CREATED,
            topics.settings: EventType.CERTIFICATE_SETTINGS_CHANGED,
        }

    # -- building blocks --------------------------------------------------------------------
    def _key(self) -> tuple[int, int]:
        return self.rng.choice(self.world.keys)

    def _valid(self, event_type: EventType, section_id: int, user_id: int) -> dict[str, Any]:
        records: dict[EventType, dict[str, Any]] = {
            EventType.PAGE_SCORE_UPDATED: score_record(section_id, user_id, _NOW),
            EventType.POST_CREATED: post_record(section_id, user_id, _NOW),
            EventType.CERTIFICATE_SETTINGS_CHANGED: settings_record(section_id, _NOW),
        }
        if event_type in records:
            return records[event_type]
        return _output_record(event_type, section_id, user_id)

    def _encoded_score(self, section_id: int, user_id: int) -> bytes:
        record = self._valid(EventType.PAGE_SCORE_UPDATED, section_id, user_id)
        return self.codec.encode(EventType.PAGE_SCORE_UPDATED, record)

    def _headers(self, event_type: EventType = EventType.PAGE_SCORE_UPDATED) -> Headers:
        return build_headers(
            event_id=f"h-{self.rng.random()}",
            ce_type=self.codec.catalogue.latest(event_type).ce_type,
            source="urn:hostile",
            time=_NOW,
        )

    def _so(self, body: bytes) -> bytes:
        return b"\xc3\x01" + self.fingerprint + body

    def _bad(self, kind: str, value: bytes | None, *expected: str, key: bytes | None = None):
        s, u = self._key()
        return Hostile(
            kind,
            self.topics.scores,
            format_key(s, u) if key is None else key,
            value,
            self._headers(),
            frozenset(expected),
        )

    # -- the kinds ---------------------------------------------------------------------------
    def random_bytes(self) -> Hostile:
        first = self.rng.choice([b for b in range(256) if b not in (0x00, 0xC3)])
        tail = self.rng.randbytes(self.rng.randrange(0, 60))
        return self._bad("random_bytes", bytes([first]) + tail, "UnknownFramingError")

    def wrong_magic(self) -> Hostile:
        value = b"\xc3" + bytes([self.rng.choice([0, 2, 0xFF])]) + self.rng.randbytes(20)
        return self._bad("wrong_magic", value, "UnknownFramingError")

    def truncated(self) -> Hostile:
        s, u = self._key()
        value = self._encoded_score(s, u)
        cut = value[: self.rng.randrange(1, len(value))]
        return self._bad("truncated", cut, "TruncatedRecordError", "InvalidPayloadError")

    def unknown_fingerprint(self) -> Hostile:
        value = b"\xc3\x01" + self.rng.randbytes(8) + self.rng.randbytes(20)
        return self._bad("unknown_fingerprint", value, "UnknownSchemaError")

    def unknown_schema_id(self) -> Hostile:
        value = b"\x00" + struct.pack(">I", self.rng.randrange(2**32)) + self.rng.randbytes(20)
        return self._bad("unknown_schema_id", value, "UnknownSchemaError")

    def other_type(self) -> Hostile:
        topic, accepted = self.rng.choice(list(self.inputs.items()))
        event_type = self.rng.choice([e for e in EventType if e is not accepted])
        s, u = self._key()
        user = None if event_type is EventType.CERTIFICATE_SETTINGS_CHANGED else u
        value = self.codec.encode(event_type, self._valid(event_type, s, u))
        return Hostile(
            f"other_type:{event_type.value}",
            topic,
            format_key(s, user),
            value,
            self._headers(event_type),
            frozenset({"WrongEventTypeError"}),
        )

    def negative_id(self) -> Hostile:
        s, u = self._key()
        body = score_body(zigzag(-s), zigzag(u))
        return self._bad("negative_id", self._so(body), "InvalidPayloadError")

    def overflowing_id(self) -> Hostile:
        s, u = self._key()
        body = score_body(zigzag(s), zigzag(2**64 + u))  # 10+ bytes; wraps in fastavro
        return self._bad("overflowing_id", self._so(body), "InvalidPayloadError")

    def over_long_varint(self) -> Hostile:
        s, u = self._key()
        body = score_body(padded(s, self.rng.randrange(1, 12)), zigzag(u))
        return self._bad("over_long_varint", self._so(body), "InvalidPayloadError")

    def enum_out_of_range(self) -> Hostile:
        s, u = self._key()
        body = score_body(zigzag(s), zigzag(u), enum=self.rng.randrange(4, 100))
        return self._bad("enum_out_of_range", self._so(body), "InvalidPayloadError")

    def union_out_of_range(self) -> Hostile:
        s, u = self._key()
        body = score_body(zigzag(s), zigzag(u), union=self.rng.randrange(2, 100))
        return self._bad("union_out_of_range", self._so(body), "InvalidPayloadError")

    def key_mismatch(self) -> Hostile:
        s, u = self._key()
        return self._bad(
            "key_mismatch", self._encoded_score(s, u), "KeyMismatchError", key=format_key(s, u + 1)
        )

    def bad_key(self) -> Hostile:
        s, u = self._key()
        key = self.rng.choice([b"", b"abc", b"0:1", f"{s}:{u}:1".encode(), b"-1:2", b"9" * 40])
        return self._bad("bad_key", self._encoded_score(s, u), "InvalidKeyError", key=key)

    def missing_key(self) -> Hostile:
        s, u = self._key()
        value = self._encoded_score(s, u)
        return Hostile(
            "missing_key",
            self.topics.scores,
            None,
            value,
            self._headers(),
            frozenset({"InvalidKeyError"}),
        )

    def empty_value(self) -> Hostile:
        return self._bad("empty_value", b"", "TruncatedRecordError")

    def tombstone(self) -> Hostile:
        return self._bad("tombstone", None, "TruncatedRecordError")

    def tolerated_headers(self) -> Hostile:
        """A good record with missing, wrong or garbage headers: processed, not dead-lettered."""
        s, u = self._key()
        headers = self.rng.choice(
            [
                None,
                [("ce_type", b"org.oli.torus.post_created.v1")],
                [("ce_type", b"\xff\xfe"), ("ce_time", b"yesterday")],
                [("ce_id", self.rng.randbytes(30)), ("ce_id", b"again")],
            ]
        )
        return Hostile(
            "tolerated_headers",
            self.topics.scores,
            format_key(s, u),
            self._encoded_score(s, u),
            headers,
            frozenset(),
        )

    # -- near and past the size limits (few, they are big) --------------------------------------
    def huge_key(self) -> Hostile:
        s, u = self._key()
        key = b"k" * self.rng.randrange(800_000, 990_000)
        return self._bad("huge_key", self._encoded_score(s, u), "InvalidKeyError", key=key)

    def huge_headers(self) -> Hostile:
        s, u = self._key()
        headers = [(f"x-{i}", b"h" * 5000) for i in range(self.rng.randrange(150, 190))]
        return Hostile(
            "huge_headers",
            self.topics.scores,
            format_key(s, u),
            b"\x07" + self.rng.randbytes(100),
            headers,
            frozenset({"UnknownFramingError"}),
        )

    def huge_value(self) -> Hostile:
        size = self.rng.randrange(990_000, BIG_LIMIT_TOPIC_BYTES - 100_000)
        return self._bad("huge_value", b"\x00\xff\xff\xff\xff" + b"z" * size, "UnknownSchemaError")

    def huge_valid_headers(self) -> Hostile:
        """A good record carrying ~0.9 MB of headers: processed, not dead-lettered."""
        s, u = self._key()
        headers = [(f"x-{i}", b"h" * 5000) for i in range(180)]
        return Hostile(
            "huge_valid_headers",
            self.topics.scores,
            format_key(s, u),
            self._encoded_score(s, u),
            headers,
            frozenset(),
        )

    def small_kinds(self) -> list[Callable[[], Hostile]]:
        return [
            self.random_bytes,
            self.wrong_magic,
            self.truncated,
            self.unknown_fingerprint,
            self.unknown_schema_id,
            self.other_type,
            self.negative_id,
            self.overflowing_id,
            self.over_long_varint,
            self.enum_out_of_range,
            self.union_out_of_range,
            self.key_mismatch,
            self.bad_key,
            self.missing_key,
            self.empty_value,
            self.tombstone,
            self.tolerated_headers,
        ]

    def big_kinds(self) -> list[Callable[[], Hostile]]:
        return [self.huge_key, self.huge_headers, self.huge_value, self.huge_valid_headers]

    def draw(self, small: int, big_each: int) -> Iterator[Hostile]:
        """``small`` records of the small kinds in equal shares, ``big_each`` of each big kind,
        shuffled together."""
        kinds = self.small_kinds()
        makers = [kinds[i % len(kinds)] for i in range(small)]
        makers += [k for k in self.big_kinds() for _ in range(big_each)]
        self.rng.shuffle(makers)
        for make in makers:
            yield make()


def _output_record(event_type: EventType, section_id: int, user_id: int) -> dict[str, Any]:
    """A valid output event (certificate_granted / approval_requested), for wrong-topic tests."""
    person = {"user_id": user_id, "name": "N", "email": "n@x"}
    common = {
        "event_id": "00000000-0000-4000-8000-000000000001",
        "granted_certificate_id": 1,
        "guid": "00000000-0000-4000-8000-000000000002",
        "state": "EARNED",
        "with_distinction": False,
        "certificate_label": "Certificate",
        "certificate_type": "COMPLETION",
        "student": person,
        "course_title": "C",
        "section_id": section_id,
        "section_slug": "s",
        "issued_at": _NOW,
    }
    if event_type is EventType.APPROVAL_REQUESTED:
        return common | {"state": "PENDING", "recipients": [person | {"role": "INSTRUCTOR"}]}
    return common
