"""Where partitions begin and end, asked of the broker in one ListOffsets request per bound.

On an admin client, never on the ingest's consumer: the consumer's connection to a broker
carries its long-poll fetch, and a watermark query waits behind it (``fetch.wait.max.ms``,
500 ms a partition, measured: 8 partitions took 3.7-4.0 s on the consumer and 1-4 ms here).
Raises ``KafkaException`` with the broker's message; callers decide what that means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Bounds:
    earliest: int
    log_end: int


def spec(name: str, *args: int) -> OffsetSpec:
    """OffsetSpec.earliest/latest/for_timestamp(ms): untyped in confluent-kafka (and OffsetSpec
    is missing from its ``__all__``), so they are reached through this one typed door."""
    made: OffsetSpec = getattr(OffsetSpec, name)(*args)
    return made


def list_offsets(
    admin: AdminClient, partitions: Sequence[Partition], which: OffsetSpec, *, timeout: float
) -> dict[Partition, int]:
    """One list_offsets round for every partition with the same spec."""
    if not partitions:
        return {}
    request = {TopicPartition(t, p): which for t, p in partitions}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {
        (tp.topic, tp.partition): int(f.result(timeout=timeout).offset) for tp, f in futures.items()
    }


def bounds(
    admin: AdminClient, partitions: Sequence[Partition], *, timeout: float
) -> dict[Partition, Bounds]:
    earliest = list_offsets(admin, partitions, spec("earliest"), timeout=timeout)
    latest = list_offsets(admin, partitions, spec("latest"), timeout=timeout)
    return {p: Bounds(earliest[p], latest[p]) for p in partitions}
