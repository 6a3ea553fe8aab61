"""What one consumed batch becomes: coalesced triggers, poison records (their dead-letter copies
are ``consumer.dead_letters``'), the offsets to store once the batch is durable, and the lag of
a partition.

Pure functions over confluent-kafka ``Message`` objects (unit-tested with real ones); the ingest
loop owns the I/O around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message, TopicPartition

from consumer.errors import PoisonError, TransientError, UnexpectedRecordError
from consumer.events.catalogue import EventType
from consumer.events.codec import Codec
from consumer.events.envelope import Trigger, read_trigger
from consumer.kafka.dead_letters import header_list
from consumer.store import debounce


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


def decode_batch(
    codec: Codec, messages: Sequence[Message], accepted: Mapping[str, frozenset[EventType]]
) -> DecodedBatch:
    """Turn records into coalesced triggers; a record that cannot be one becomes poison.

    ``accepted`` maps each input topic to the event types it may carry. Only a transient
    failure (the registry is down) escapes, and it fails the whole batch, which is retried.
    """
    keys: list[tuple[int, int]] = []
    wide: set[int] = set()
    poison: list[Poison] = []
    tolerated: list[Tolerated] = []
    for msg in messages:
        outcome = classify(codec, msg, accepted.get(str(msg.topic()), frozenset()))
        if isinstance(outcome, Poison):
            poison.append(outcome)
            continue
        if outcome.header_problems:
            tolerated.append(Tolerated(msg, outcome.header_problems))
        if outcome.user_id is None:
            wide.add(outcome.section_id)
        else:
            keys.append((outcome.section_id, outcome.user_id))
    return DecodedBatch(debounce.TriggerBatch.of(keys, wide), poison, tolerated)


def classify(codec: Codec, msg: Message, accepted: frozenset[EventType]) -> Trigger | Poison:
    """One record as a trigger or as poison: the per-record boundary of the ingest.

    Whatever one record makes our code raise ends here as that record's poison, never as the
    loop's failure; only a transient error (retry the batch) passes.
    """
    try:
        return read_trigger(codec, msg.value(), header_list(msg), key=msg.key(), accepted=accepted)
    except PoisonError as exc:
        return Poison(msg, exc)
    except TransientError:
        raise
    except Exception as exc:  # the per-record boundary: classified, never fatal
        return Poison(msg, UnexpectedRecordError(exc))


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last record of the batch."""
    highest: dict[tuple[str, int], int] = {}
    for msg in messages:
        tp = (str(msg.topic()), int(msg.partition() or 0))
        highest[tp] = max(highest.get(tp, -1), int(msg.offset() or 0))
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(highest.items())]


def partition_lag(committed: int, low: int, high: int) -> int:
    """Records of a partition the group has yet to process: high watermark minus the committed
    offset, or minus the low watermark when nothing was committed (``auto.offset.reset`` is
    earliest, so everything retained is still to read)."""
    start = committed if committed >= 0 else low
    return max(0, high - max(start, low))
