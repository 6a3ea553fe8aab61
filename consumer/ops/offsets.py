"""Consumer-group offsets for operators: where a replay would move a group, and its lag.

Two layers, so the arithmetic is testable without a broker:

- pure: ``resolve_targets``, ``plan_replay`` and ``compute_lag`` work on plain mappings of
  (topic, partition) to offsets and return frozen values;
- Kafka: thin functions that take an ``AdminClient`` (committed offsets, earliest/latest/
  by-time offsets, active members, committing new offsets), raising ``OffsetsError`` with the
  broker's message. ``build_replay_plan`` and ``measure_lag`` join the two.

Targets follow ``kafka-consumer-groups --reset-offsets``: explicit offsets are clamped into
the partition's [earliest, log-end] range, and a time after the last record moves to log-end.
Must not import the database or the runtime loops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from consumer.errors import CertConsumerError
from consumer.kafka import watermarks
from consumer.kafka.watermarks import Bounds, Partition, spec

TIMEOUT_SECONDS = 15.0  # a broker that does not answer within this is reported down


class OffsetsError(CertConsumerError):
    """A group or topic could not be read or changed on the broker."""


class GroupActiveError(OffsetsError):
    """The group has live members: committing offsets under them would be overwritten."""

    def __init__(self, group: str, members: int) -> None:
        self.group, self.members = group, members
        super().__init__(
            f"group {group!r} has {members} active member(s); stop its consumers "
            "(e.g. scale the Deployment to 0) and run again"
        )


@dataclass(frozen=True)
class ToEarliest:
    """Re-read everything still retained."""


@dataclass(frozen=True)
class ToTimestamp:
    """The first record at or after this time (ms since the epoch), per partition."""

    ms: int


@dataclass(frozen=True)
class ToOffsets:
    """Explicit offsets; only these partitions move."""

    offsets: Mapping[Partition, int]


ReplayTarget = ToEarliest | ToTimestamp | ToOffsets


@dataclass(frozen=True)
class PartitionMove:
    """One partition of a replay plan; ``committed`` is None when the group never committed."""

    topic: str
    partition: int
    committed: int | None
    target: int
    log_end: int

    @property
    def rereads(self) -> int:
        """Records the group already processed and will process again."""
        return max(0, self.committed - self.target) if self.committed is not None else 0

    @property
    def skips(self) -> int:
        """Records the group had not processed yet and will now never see."""
        return max(0, self.target - self.committed) if self.committed is not None else 0


@dataclass(frozen=True)
class ReplayPlan:
    group: str
    moves: tuple[PartitionMove, ...]

    @property
    def rereads(self) -> int:
        return sum(m.rereads for m in self.moves)

    @property
    def skips(self) -> int:
        return sum(m.skips for m in self.moves)

    def targets(self) -> dict[Partition, int]:
        return {(m.topic, m.partition): m.target for m in self.moves}


@dataclass(frozen=True)
class Member:
    """The group member a partition is assigned to, as kafka-consumer-groups names it."""

    consumer_id: str
    host: str
    client_id: str


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    log_end: int
    member: Member | None = None  # None: assigned to no live member

    @property
    def lag(self) -> int | None:
        """None without a committed offset, as kafka-consumer-groups prints "-"."""
        return self.log_end - self.committed if self.committed is not None else None


@dataclass(frozen=True)
class LagReport:
    group: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    @property
    def uncommitted(self) -> int:
        """Partitions without a committed offset (their lag is unknown, not zero)."""
        return sum(1 for p in self.partitions if p.committed is None)


# --- pure ---------------------------------------------------------------------------------


def resolve_targets(
    target: ReplayTarget,
    bounds: Mapping[Partition, Bounds],
    by_time: Mapping[Partition, int] | None = None,
) -> dict[Partition, int]:
    """The offset each partition moves to, clamped as kafka-consumer-groups does."""
    if isinstance(target, ToEarliest):
        return {p: b.earliest for p, b in bounds.items()}
    if isinstance(target, ToOffsets):
        return {p: _clamp(o, bounds[p]) for p, o in target.offsets.items()}
    found = by_time or {}
    # list_offsets answers -1 when no record is that recent: nothing to re-read there.
    return {p: (found[p] if found.get(p, -1) >= 0 else b.log_end) for p, b in bounds.items()}


def _clamp(offset: int, bounds: Bounds) -> int:
    return min(max(offset, bounds.earliest), bounds.log_end)


def plan_replay(
    group: str,
    committed: Mapping[Partition, int],
    bounds: Mapping[Partition, Bounds],
    targets: Mapping[Partition, int],
) -> ReplayPlan:
    moves = tuple(
        PartitionMove(p[0], p[1], committed.get(p), targets[p], bounds[p].log_end)
        for p in sorted(targets)
    )
    return ReplayPlan(group, moves)


def compute_lag(
    group: str,
    committed: Mapping[Partition, int],
    log_ends: Mapping[Partition, int],
    members: Mapping[Partition, Member] | None = None,
) -> LagReport:
    owners = members or {}
    rows = tuple(
        PartitionLag(p[0], p[1], committed.get(p), log_ends[p], owners.get(p))
        for p in sorted(log_ends)
    )
    return LagReport(group, rows)


def why(exc: BaseException) -> str:
    """The broker's words, or for a request that got no answer what to check."""
    return str(exc) or (
        f"no answer within {TIMEOUT_SECONDS:g} s: check CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS "
        "and that the brokers are up"
    )


# --- Kafka --------------------------------------------------------------------------------


def fetch_committed(admin: AdminClient, group: str) -> dict[Partition, int]:
    """Every partition the group has a committed offset for (an unknown group has none)."""
    request = [ConsumerGroupTopicPartitions(group)]
    try:
        future = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_SECONDS)
        result = future[group].result(timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise OffsetsError(f"could not read the offsets of group {group!r}: {why(exc)}") from exc
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def topic_partitions(admin: AdminClient, topics: Iterable[str]) -> list[Partition]:
    """All partitions of the named topics; an unknown topic is an error, never auto-created."""
    try:
        metadata = admin.list_topics(timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise OffsetsError(f"could not read the cluster metadata: {why(exc)}") from exc
    found: list[Partition] = []
    for topic in topics:
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise OffsetsError(f"unknown topic {topic!r}")
        found.extend((topic, p) for p in sorted(described.partitions))
    return found


def fetch_offsets(
    admin: AdminClient, partitions: Sequence[Partition], which: OffsetSpec
) -> dict[Partition, int]:
    """One list_offsets round for every partition with the same spec."""
    try:
        return watermarks.list_offsets(admin, partitions, which, timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise OffsetsError(f"could not list offsets: {why(exc)}") from exc


def fetch_bounds(admin: AdminClient, partitions: Sequence[Partition]) -> dict[Partition, Bounds]:
    try:
        return watermarks.bounds(admin, partitions, timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise OffsetsError(f"could not list offsets: {why(exc)}") from exc


class UnknownGroupError(OffsetsError):
    """The group has no member and no committed offset: most likely a mistyped name."""

    def __init__(self, group: str) -> None:
        super().__init__(
            f"consumer group {group!r} does not exist (no members, no committed offsets)"
        )


def assignments(admin: AdminClient, group: str) -> dict[Partition, Member]:
    """Each partition assigned to a live member of the group, and that member (an empty or
    unknown group has none)."""
    try:
        future = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_SECONDS)
        description = future[group].result(timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        if (
            exc.args
            and isinstance(exc.args[0], KafkaError)
            and exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
        ):
            return {}
        raise OffsetsError(f"could not describe group {group!r}: {why(exc)}") from exc
    owned: dict[Partition, Member] = {}
    for member in description.members or []:
        who = Member(member.member_id, member.host, member.client_id)
        for tp in member.assignment.topic_partitions if member.assignment else []:
            owned[(tp.topic, tp.partition)] = who
    return owned


def active_members(admin: AdminClient, group: str) -> int:
    """Members currently in the group; 0 for an empty or unknown group."""
    try:
        future = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_SECONDS)
        description = future[group].result(timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise OffsetsError(f"could not describe group {group!r}: {why(exc)}") from exc
    return len(description.members or [])


def commit_offsets(admin: AdminClient, group: str, targets: Mapping[Partition, int]) -> None:
    """Commit ``targets`` for the group; the broker itself refuses while members are live."""
    request = [
        ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p, o) for (t, p), o in sorted(targets.items())]
        )
    ]
    try:
        future = admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT_SECONDS)
        result = future[group].result(timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise OffsetsError(f"could not commit offsets of group {group!r}: {why(exc)}") from exc
    failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
    if failed:
        first = failed[0]
        raise OffsetsError(
            f"the broker refused {len(failed)} offset(s) of group {group!r}, e.g. "
            f"{first.topic}:{first.partition}: {first.error}"
        )


# --- both ---------------------------------------------------------------------------------


def build_replay_plan(
    admin: AdminClient, group: str, target: ReplayTarget, topics: Sequence[str]
) -> ReplayPlan:
    """Read what the plan needs from the broker and compute it; changes nothing."""
    if isinstance(target, ToOffsets):
        partitions = sorted(target.offsets)
        known = set(topic_partitions(admin, sorted({t for t, _ in partitions})))
        unknown = [p for p in partitions if p not in known]
        if unknown:
            raise OffsetsError(f"no such partition(s): {', '.join(f'{t}:{p}' for t, p in unknown)}")
    else:
        partitions = topic_partitions(admin, topics)
    bounds = fetch_bounds(admin, partitions)
    by_time = (
        fetch_offsets(admin, partitions, spec("for_timestamp", target.ms))
        if isinstance(target, ToTimestamp)
        else None
    )
    targets = resolve_targets(target, bounds, by_time)
    return plan_replay(group, fetch_committed(admin, group), bounds, targets)


def execute_replay(admin: AdminClient, plan: ReplayPlan) -> None:
    """Commit the plan's targets, refusing while the group has members (they would overwrite
    the new offsets with their own at the next auto-commit)."""
    members = active_members(admin, plan.group)
    if members:
        raise GroupActiveError(plan.group, members)
    commit_offsets(admin, plan.group, plan.targets())


def measure_lag(admin: AdminClient, group: str, topics: Sequence[str] = ()) -> LagReport:
    """As ``kafka-consumer-groups --describe``: every partition the group has committed or a
    live member owns (committed or not), plus every partition of ``topics``, with its owner.
    ``UnknownGroupError`` when the group has neither members nor offsets."""
    committed = fetch_committed(admin, group)
    owned = assignments(admin, group)
    if not committed and not owned:
        raise UnknownGroupError(group)
    wanted = set(topics)
    partitions = {p for p in (*committed, *owned) if not wanted or p[0] in wanted}
    partitions.update(topic_partitions(admin, sorted(wanted)))
    log_ends = fetch_offsets(admin, sorted(partitions), spec("latest"))
    return compute_lag(group, committed, log_ends, owned)
