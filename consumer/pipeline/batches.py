"""What one consumed batch becomes: coalesced triggers, granted certificates to announce,
records skipped on purpose, poison records (their dead-letter copies are
``consumer.kafka.dead_letters``'), the offsets to store once the batch is durable, and the lag
of a partition.

Pure functions over confluent-kafka ``Message`` objects (unit-tested with real ones); the ingest
loop owns the I/O around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Message, TopicPartition

from consumer.errors import PoisonError, TransientError, UnexpectedRecordError
from consumer.events.catalogue import EventType
from consumer.events.cdc import Approved, CdcTable, Change, Skip, SkipReason, read_change
from consumer.events.codec import Codec
from consumer.events.envelope import Trigger, read_trigger
from consumer.kafka.dead_letters import header_list
from consumer.store import debounce

# Headers only feed a metric and a debug line: one record in this many (by offset) has them
# read, which finds a producer sending bad ones within that many records. Reading them was a
# seventh of the ingest's time (the client builds a list of tuples per call).
HEADER_SAMPLE = 16


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
class Skipped:
    """A change record that is not a trigger, on purpose (a delete, a snapshot read, ...)."""

    message: Message
    reason: SkipReason


@dataclass(frozen=True)
class DecodedBatch:
    triggers: debounce.TriggerBatch
    poison: list[Poison]
    tolerated: list[Tolerated]
    skipped: list[Skipped] = field(default_factory=list)
    earned: tuple[int, ...] = ()  # granted certificates a change shows earned (to announce)


@dataclass(frozen=True)
class Routes:
    """What each input topic carries: Avro activity events of some types, or one table's
    Debezium changes."""

    accepted: Mapping[str, frozenset[EventType]]
    changes: Mapping[str, CdcTable] = field(default_factory=dict)


def decode_batch(codec: Codec, messages: Sequence[Message], routes: Routes) -> DecodedBatch:
    """Turn records into coalesced triggers; a record that cannot be one is skipped (a change
    that cannot matter) or becomes poison.

    Only a transient failure (the registry is down) escapes, and it fails the whole batch,
    which is retried.
    """
    keys: list[tuple[int, int]] = []
    wide: set[int] = set()
    poison: list[Poison] = []
    tolerated: list[Tolerated] = []
    skipped: list[Skipped] = []
    earned: list[int] = []
    for msg in messages:
        outcome = classify(codec, msg, routes)
        if isinstance(outcome, Poison):
            poison.append(outcome)
        elif isinstance(outcome, Skip):
            skipped.append(Skipped(msg, outcome.reason))
        elif isinstance(outcome, Approved):
            earned.append(outcome.granted_certificate_id)
        elif outcome.user_id is None:
            wide.add(outcome.section_id)
        else:
            keys.append((outcome.section_id, outcome.user_id))
        if isinstance(outcome, Trigger) and outcome.header_problems:
            tolerated.append(Tolerated(msg, outcome.header_problems))
    triggers = debounce.TriggerBatch.of(keys, wide)
    return DecodedBatch(triggers, poison, tolerated, skipped, tuple(earned))


def classify(
    codec: Codec, msg: Message, routes: Routes
) -> Trigger | Change | Approved | Skip | Poison:
    """One record as a trigger (or a change), or as poison: the per-record boundary of the
    ingest.

    Whatever one record makes our code raise ends here as that record's poison, never as the
    loop's failure; only a transient error (retry the batch) passes.
    """
    topic = str(msg.topic())
    try:
        table = routes.changes.get(topic)
        if table is not None:
            return read_change(table, msg.value(), key=msg.key())
        accepted = routes.accepted.get(topic, frozenset())
        sampled = int(msg.offset() or 0) % HEADER_SAMPLE == 0
        headers = header_list(msg) if sampled else None
        return read_trigger(
            codec, msg.value(), headers, key=msg.key(), accepted=accepted, check_headers=sampled
        )
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
