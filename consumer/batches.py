"""What one consumed batch becomes: coalesced triggers, poison records with their dead-letter
headers, the offsets to store once the batch is durable, and the lag librdkafka reports.

Pure functions over confluent-kafka ``Message`` objects (unit-tested with real ones); the ingest
loop owns the I/O around them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from confluent_kafka import Message, TopicPartition

from consumer import debounce
from consumer.codec import Codec
from consumer.delivery import Headers, Outgoing
from consumer.envelope import Trigger, read_trigger
from consumer.errors import PoisonError
from consumer.metrics import Metrics


@dataclass(frozen=True)
class Poison:
    message: Message
    error: PoisonError


@dataclass(frozen=True)
class Tolerated:
    """A record decoded from its payload although its CloudEvents headers were off."""

    message: Message
    problems: tuple[str, ...]


@dataclass(frozen=True)
class DecodedBatch:
    triggers: debounce.TriggerBatch
    poison: list[Poison]
    tolerated: list[Tolerated]


def decode_batch(codec: Codec, messages: Sequence[Message]) -> DecodedBatch:
    """Turn records into coalesced triggers; undecodable ones become poison, not failures."""
    keys: list[tuple[int, int]] = []
    wide: set[int] = set()
    poison: list[Poison] = []
    tolerated: list[Tolerated] = []
    for msg in messages:
        try:
            trigger: Trigger = read_trigger(codec, msg.value(), header_list(msg))
        except PoisonError as exc:
            poison.append(Poison(msg, exc))
            continue
        if trigger.header_problems:
            tolerated.append(Tolerated(msg, trigger.header_problems))
        if trigger.user_id is None:
            wide.add(trigger.section_id)
        else:
            keys.append((trigger.section_id, trigger.user_id))
    return DecodedBatch(debounce.TriggerBatch.of(keys, wide), poison, tolerated)


def header_list(msg: Message) -> list[tuple[str, Any]]:
    """A record's headers as (name, value) pairs, however the client handed them over."""
    headers = msg.headers() or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def dead_letter_headers(msg: Message, error: PoisonError, first_seen: datetime) -> Headers:
    """The original headers plus where the record came from and why it was rejected."""
    return [
        *header_list(msg),
        ("dlq.source.topic", str(msg.topic()).encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.error.class", type(error).__name__.encode()),
        ("dlq.error.message", str(error)[:1000].encode()),
        ("dlq.first.seen", first_seen.isoformat().encode()),
    ]


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last record of the batch."""
    highest: dict[tuple[str, int], int] = {}
    for msg in messages:
        tp = (str(msg.topic()), int(msg.partition() or 0))
        highest[tp] = max(highest.get(tp, -1), int(msg.offset() or 0))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(highest.items())]


def record_consumer_lag(metrics: Metrics, stats_json: str) -> None:
    """Per assigned partition lag from librdkafka's statistics (log end - committed/position).

    librdkafka reports -1 where it does not know yet; those partitions are left as they were.
    """
    try:
        stats = json.loads(stats_json)
    except ValueError:
        return
    for topic, data in stats.get("topics", {}).items():
        for partition, pdata in data.get("partitions", {}).items():
            lag = pdata.get("consumer_lag_stored", pdata.get("consumer_lag", -1))
            if partition != "-1" and pdata.get("fetch_state") != "none" and lag >= 0:
                metrics.consumer_lag.labels(topic, partition).set(lag)


TRUNCATED_VALUE_BYTES = 64 * 1024


def truncated(outgoing: Outgoing) -> Outgoing:
    """A dead-letter record cut to its first 64 KiB, with the original size in a header."""
    value = outgoing.value or b""
    headers = [
        *outgoing.headers,
        ("dlq.value.truncated.from.bytes", str(len(value)).encode()),
    ]
    return replace(outgoing, value=value[:TRUNCATED_VALUE_BYTES], headers=headers)
