"""What a consumed batch becomes, driven with confluent-kafka's own Message objects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, Message, Producer

from consumer.errors import UnexpectedRecordError
from consumer.events.catalogue import EventType, load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec
from consumer.events.envelope import KeyMismatchError, Outgoing, format_key
from consumer.events.errors import UnknownFramingError, WrongEventTypeError
from consumer.kafka.dead_letters import FALLBACK_BUDGETS, dead_letter
from consumer.kafka.delivery import deliver
from consumer.pipeline.batches import (
    Poison,
    Routes,
    classify,
    decode_batch,
    next_offsets,
    partition_lag,
)

CODEC = Codec(load_catalogue(locate_schemas_dir()))


def score(section_id: int, user_id: int, offset: int, partition: int = 0) -> Message:
    record = {
        "section_id": section_id,
        "user_id": user_id,
        "resource_id": 5,
        "score": 1.0,
        "out_of": 2.0,
        "cause": "MANUAL_GRADING",
        "occurred_at": datetime(2026, 11, 25, tzinfo=UTC),
    }
    return Message(
        topic="scores",
        partition=partition,
        offset=offset,
        key=format_key(section_id, user_id),
        value=CODEC.encode(EventType.PAGE_SCORE_UPDATED, record),
    )


def settings_changed(section_id: int, offset: int, topic: str = "settings") -> Message:
    record = {"section_id": section_id, "occurred_at": datetime(2026, 11, 25, tzinfo=UTC)}
    return Message(
        topic=topic,
        partition=0,
        offset=offset,
        key=format_key(section_id, None),
        value=CODEC.encode(EventType.CERTIFICATE_SETTINGS_CHANGED, record),
    )


ACCEPTED = {
    "scores": frozenset({EventType.PAGE_SCORE_UPDATED}),
    "settings": frozenset({EventType.CERTIFICATE_SETTINGS_CHANGED}),
}
ROUTES = Routes(ACCEPTED)
FIRST_SEEN = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_batch_coalesces_keys_and_separates_poison() -> None:
    garbage = Message(topic="scores", partition=0, offset=3, value=b"junk")
    batch = decode_batch(
        CODEC,
        [score(1, 2, 0), score(1, 2, 1), score(1, 3, 2), garbage, settings_changed(7, 0)],
        ROUTES,
    )
    assert batch.triggers.counts == {(1, 2): 2, (1, 3): 1}
    assert batch.triggers.wide_sections == frozenset({7})
    (poison,) = batch.poison
    assert poison.message is garbage
    assert isinstance(poison.error, UnknownFramingError)
    # None of these carry CloudEvents headers; those at offset 0 (one in HEADER_SAMPLE) are read.
    assert [t.message.offset() for t in batch.tolerated] == [0, 0]
    assert all("ce_type: missing" in " ".join(t.problems) for t in batch.tolerated)


def test_next_offsets_are_one_past_the_highest_per_partition() -> None:
    messages = [score(1, 1, 9, 0), score(1, 1, 4, 1), score(1, 1, 7, 0)]
    assert [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(messages)] == [
        ("scores", 0, 10),
        ("scores", 1, 5),
    ]


def test_a_settings_event_fans_out_only_from_the_settings_topic() -> None:
    batch = decode_batch(CODEC, [settings_changed(7, 0, topic="scores")], ROUTES)
    assert batch.triggers.wide_sections == frozenset()
    (poison,) = batch.poison
    assert isinstance(poison.error, WrongEventTypeError)


def test_a_key_that_disagrees_with_the_body_is_poison() -> None:
    msg = score(1, 2, 0)
    forged = Message(topic="scores", partition=0, offset=1, key=b"1:3", value=msg.value())
    outcome = classify(CODEC, forged, ROUTES)
    assert isinstance(outcome, Poison)
    assert isinstance(outcome.error, KeyMismatchError)


class ExplodingCodec(Codec):
    def decode(self, value: bytes | None, **_: object) -> object:  # type: ignore[override]
        raise KeyError("occurred_at")


def test_an_unforeseen_exception_on_one_record_is_that_records_poison() -> None:
    outcome = classify(ExplodingCodec(CODEC.catalogue), score(1, 2, 0), ROUTES)
    assert isinstance(outcome, Poison)
    assert isinstance(outcome.error, UnexpectedRecordError)
    copy = dead_letter(outcome.message, outcome.error, FIRST_SEEN, topic="dlq", budget=10**6)
    headers = dict(copy.headers)
    assert headers["dlq.error.class"] == b"KeyError"
    assert headers["dlq.error.kind"] == b"unexpected"


def test_dead_letter_headers_keep_the_original_and_say_why() -> None:
    msg = Message(topic="scores", partition=2, offset=41, value=b"x", headers=[("ce_id", b"e1")])
    copy = dead_letter(msg, UnknownFramingError(b"x"), FIRST_SEEN, topic="dlq", budget=10**6)
    headers = dict(copy.headers)
    assert (copy.topic, copy.value, copy.key) == ("dlq", b"x", None)
    assert headers["ce_id"] == b"e1"
    assert headers["dlq.source.topic"] == b"scores"
    assert headers["dlq.source.partition"] == b"2"
    assert headers["dlq.source.offset"] == b"41"
    assert headers["dlq.error.class"] == b"UnknownFramingError"
    assert headers["dlq.error.kind"] == b"invalid"
    assert headers["dlq.first.seen"] == b"2026-01-01T00:00:00+00:00"
    assert not any(name.startswith("dlq.") and "truncated" in name for name in headers)


def _size(copy: Outgoing) -> int:
    headers = sum(len(n) + len(v or b"") for n, v in copy.headers)
    return len(copy.key or b"") + len(copy.value or b"") + headers


@pytest.mark.parametrize("budget", [1_000_000 - 4096, *FALLBACK_BUDGETS])
def test_every_part_of_an_oversized_record_is_cut_to_fit(budget: int) -> None:
    huge_headers = [(f"h{i}", b"v" * 5000) for i in range(150)]
    msg = Message(
        topic="scores",
        partition=0,
        offset=5,
        key=b"k" * 900_000,
        value=b"x" * 2_000_000,
        headers=huge_headers,
    )
    copy = dead_letter(msg, UnknownFramingError(b"xx"), FIRST_SEEN, topic="dlq", budget=budget)
    headers = dict(copy.headers)
    assert _size(copy) <= budget
    assert headers["dlq.key.truncated.from.bytes"] == b"900000"
    assert headers["dlq.value.truncated.from.bytes"] == b"2000000"
    assert int(headers["dlq.headers.dropped.count"]) > 0
    assert headers["dlq.error.class"] == b"UnknownFramingError"  # our headers always kept
    assert copy.value == b"x" * len(copy.value or b"")  # a head, not a mangle


@pytest.mark.parametrize(
    ("committed", "low", "high", "lag"),
    [
        (40, 0, 100, 60),  # committed: what is left after it
        (-1001, 10, 100, 90),  # nothing committed: everything retained is still to read
        (5, 10, 100, 90),  # committed below the retained range: only what is retained
        (100, 0, 100, 0),
        (120, 0, 100, 0),  # never negative
    ],
)
def test_partition_lag(committed: int, low: int, high: int, lag: int) -> None:
    assert partition_lag(committed, low, high) == lag


def test_a_message_refused_before_sending_is_reported_not_raised() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": 1000})
    try:
        (outcome,) = deliver(producer, [Outgoing("t", b"x" * 5000, None, [])], report_timeout=1)
    finally:
        producer.purge()
    assert outcome is not None
    assert outcome.code() == KafkaError.MSG_SIZE_TOO_LARGE
