"""What a consumed batch becomes, driven with confluent-kafka's own Message objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer

from consumer.batches import (
    TRUNCATED_VALUE_BYTES,
    dead_letter_headers,
    decode_batch,
    next_offsets,
    record_consumer_lag,
    truncated,
)
from consumer.codec import Codec
from consumer.codec_errors import UnknownFramingError
from consumer.contracts import EventType, load_catalogue, locate_schemas_dir
from consumer.delivery import Outgoing, deliver
from consumer.envelope import format_key
from consumer.metrics import Metrics

CODEC = Codec(load_catalogue(locate_schemas_dir({})))


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


def settings_changed(section_id: int, offset: int) -> Message:
    record = {"section_id": section_id, "occurred_at": datetime(2026, 11, 25, tzinfo=UTC)}
    return Message(
        topic="settings",
        partition=0,
        offset=offset,
        value=CODEC.encode(EventType.CERTIFICATE_SETTINGS_CHANGED, record),
    )


def test_a_batch_coalesces_keys_and_separates_poison() -> None:
    garbage = Message(topic="scores", partition=0, offset=3, value=b"junk")
    batch = decode_batch(
        CODEC, [score(1, 2, 0), score(1, 2, 1), score(1, 3, 2), garbage, settings_changed(7, 0)]
    )
    assert batch.triggers.counts == {(1, 2): 2, (1, 3): 1}
    assert batch.triggers.wide_sections == frozenset({7})
    (poison,) = batch.poison
    assert poison.message is garbage
    assert isinstance(poison.error, UnknownFramingError)
    assert len(batch.tolerated) == 4  # none of these carry CloudEvents headers
    assert all("ce_type: missing" in " ".join(t.problems) for t in batch.tolerated)


def test_next_offsets_are_one_past_the_highest_per_partition() -> None:
    messages = [score(1, 1, 9, 0), score(1, 1, 4, 1), score(1, 1, 7, 0)]
    assert [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(messages)] == [
        ("scores", 0, 10),
        ("scores", 1, 5),
    ]


def test_dead_letter_headers_keep_the_original_and_say_why() -> None:
    msg = Message(topic="scores", partition=2, offset=41, value=b"x", headers=[("ce_id", b"e1")])
    headers = dict(
        dead_letter_headers(msg, UnknownFramingError(b"x"), datetime(2026, 1, 1, tzinfo=UTC))
    )
    assert headers["ce_id"] == b"e1"
    assert headers["dlq.source.topic"] == b"scores"
    assert headers["dlq.source.partition"] == b"2"
    assert headers["dlq.source.offset"] == b"41"
    assert headers["dlq.error.class"] == b"UnknownFramingError"
    assert headers["dlq.first.seen"] == b"2026-01-01T00:00:00+00:00"


def test_consumer_lag_comes_from_librdkafka_statistics() -> None:
    metrics = Metrics()
    stats = {
        "topics": {
            "scores": {
                "partitions": {
                    "0": {"consumer_lag_stored": 12, "fetch_state": "active"},
                    "1": {"consumer_lag_stored": -1, "fetch_state": "active"},
                    "-1": {"consumer_lag_stored": 99, "fetch_state": "none"},
                }
            }
        }
    }
    record_consumer_lag(metrics, json.dumps(stats))
    sample = metrics.registry.get_sample_value
    assert (
        sample("cert_consumer_consumer_lag_messages", {"topic": "scores", "partition": "0"}) == 12
    )
    assert (
        sample("cert_consumer_consumer_lag_messages", {"topic": "scores", "partition": "1"}) is None
    )
    record_consumer_lag(metrics, "not json")  # ignored, not raised


def test_an_oversized_dead_letter_record_is_cut_with_a_note() -> None:
    big = Outgoing("dlq", b"x" * 200_000, b"1:1", [("ce_id", b"e1")])
    cut = truncated(big)
    assert cut.value == b"x" * TRUNCATED_VALUE_BYTES
    assert cut.headers == [("ce_id", b"e1"), ("dlq.value.truncated.from.bytes", b"200000")]


def test_a_message_refused_before_sending_is_reported_not_raised() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": 1000})
    try:
        (outcome,) = deliver(producer, [Outgoing("t", b"x" * 5000, None, [])], report_timeout=1)
    finally:
        producer.purge()
    assert outcome is not None
    assert outcome.code() == KafkaError.MSG_SIZE_TOO_LARGE
