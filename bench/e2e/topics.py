"""Topics of one benchmark run, and the two offsets the ingest figures compare: where each
partition ends and what a consumer group has committed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.e2e.waiting import until
from consumer.kafka import watermarks

_TIMEOUT = 30.0


@dataclass(frozen=True)
class Topics:
    """The service's input and output topics for one run (random names, deleted after)."""

    scores: str
    posts: str
    granted: str
    approval: str
    dlq: str

    @property
    def inputs(self) -> tuple[str, str]:
        return (self.scores, self.posts)

    @property
    def outputs(self) -> tuple[str, str]:
        return (self.granted, self.approval)

    @property
    def all(self) -> tuple[str, ...]:
        return (self.scores, self.posts, self.granted, self.approval, self.dlq)


def create(admin: AdminClient, prefix: str, partitions: int) -> Topics:
    """Input topics with ``partitions`` partitions, output and dead-letter topics with one."""
    suffix = uuid.uuid4().hex[:8]
    names = {n: f"bench-{prefix}-{n}-{suffix}" for n in ("scores", "posts", "granted", "approval")}
    names["dlq"] = f"bench-{prefix}-dlq-{suffix}"
    wanted = [
        NewTopic(name, partitions if kind in ("scores", "posts") else 1, 1)
        for kind, name in names.items()
    ]
    for future in admin.create_topics(wanted, operation_timeout=_TIMEOUT).values():
        future.result(_TIMEOUT)
    until(
        lambda: set(names.values()) <= set(admin.list_topics(timeout=5).topics),
        timeout=_TIMEOUT,
        what=f"topics {prefix}",
    )
    return Topics(**names)


def delete(admin: AdminClient, names: Sequence[str]) -> None:
    if names:
        for future in admin.delete_topics(list(names), operation_timeout=_TIMEOUT).values():
            future.result(_TIMEOUT)


def partitions(admin: AdminClient, names: Sequence[str]) -> list[tuple[str, int]]:
    metadata = admin.list_topics(timeout=10).topics
    return [(t, p) for t in names for p in sorted(metadata[t].partitions)]


def end_offsets(admin: AdminClient, names: Sequence[str]) -> dict[tuple[str, int], int]:
    """Each partition's high watermark (log end offset)."""
    return watermarks.list_offsets(
        admin, partitions(admin, names), watermarks.spec("latest"), timeout=_TIMEOUT
    )


def total_end(admin: AdminClient, names: Sequence[str]) -> int:
    return sum(end_offsets(admin, names).values())


def committed(admin: AdminClient, group: str, names: Sequence[str]) -> dict[tuple[str, int], int]:
    """The group's committed offset of each partition (0 where nothing is committed yet)."""
    from confluent_kafka import ConsumerGroupTopicPartitions  # noqa: PLC0415

    request = [
        ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p) for t, p in partitions(admin, names)]
        )
    ]
    result = admin.list_consumer_group_offsets(request, request_timeout=10)[group].result(10)
    return {(tp.topic, tp.partition): max(int(tp.offset), 0) for tp in result.topic_partitions}


def all_committed(admin: AdminClient, group: str, ends: dict[tuple[str, int], int]) -> bool:
    """True when the group has committed every partition up to its end."""
    names = sorted({t for t, _ in ends})
    got = committed(admin, group, names)
    return all(got.get(tp, 0) >= end for tp, end in ends.items())


def balanced(admin: AdminClient, group: str, members: int, partition_count: int) -> bool:
    """True when the group has ``members`` members, every partition is assigned, and no member
    holds fewer than its even share (the broker has finished spreading the partitions)."""
    description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(10)
    sizes = [len(m.assignment.topic_partitions) for m in description.members]
    return (
        len(sizes) == members
        and sum(sizes) == partition_count
        and min(sizes) >= partition_count // members
    )
