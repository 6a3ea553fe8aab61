"""The six topics the service needs, as a plan an operator can read, create or check.

Three inputs (one per event type, ADR 0008), two outputs and the dead-letter topic. Debezium's
change topics are not here: Kafka Connect creates them (README, "Feeding the service from
Torus with Debezium"). Partitions bound the ingest's parallelism (one consumer per partition
per group), so inputs get the most; retention covers a replay window on the inputs, a mailer's
outage on the outputs, and an investigation on the dead letters, which are kept longest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from consumer.config import Settings
from consumer.errors import CertConsumerError
from consumer.ops.offsets import TIMEOUT_SECONDS, why

DAY_MS = 24 * 3600 * 1000
BROKER_DEFAULT = -1  # the replication factor: the broker's default.replication.factor


class TopicsError(CertConsumerError):
    """The broker could not describe or create the topics."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: str
    partitions: int
    retention_ms: int
    why: str
    cleanup_policy: str = "delete"

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


@dataclass(frozen=True)
class Finding:
    """One difference between the plan and the broker: ``missing`` ones stop the service."""

    topic: str
    problem: str
    missing: bool = False


def plan(settings: Settings, input_partitions: int = 6) -> list[TopicSpec]:
    """The recommended topics for these settings (empty topic settings are not consumed)."""
    inputs = [
        TopicSpec(t, "input", input_partitions, 7 * DAY_MS, "a week covers a replay or backfill")
        for t in settings.accepted_types
    ]
    outputs = [
        TopicSpec(t, "output", 3, 7 * DAY_MS, "a week covers a mailer or PDF service outage")
        for t in (settings.granted_topic, settings.approval_topic)
    ]
    dlq = TopicSpec(
        settings.dlq_topic, "dead letters", 1, 30 * DAY_MS, "kept longest: time to investigate"
    )
    return [*inputs, *outputs, dlq]


def check(admin: AdminClient, specs: Sequence[TopicSpec]) -> list[Finding]:
    """What differs between ``specs`` and the broker: missing topics, fewer partitions,
    another cleanup policy or a shorter retention."""
    try:
        metadata = admin.list_topics(timeout=TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise TopicsError(f"could not read the cluster metadata: {why(exc)}") from exc
    findings = [
        Finding(s.name, "missing", missing=True) for s in specs if s.name not in metadata.topics
    ]
    present = [s for s in specs if s.name in metadata.topics]
    configs = _configs(admin, [s.name for s in present])
    for spec in present:
        partitions = len(metadata.topics[spec.name].partitions)
        if partitions < spec.partitions:
            findings.append(
                Finding(spec.name, f"{partitions} partition(s), {spec.partitions} planned")
            )
        found = configs[spec.name]
        if found.get("cleanup.policy") != spec.cleanup_policy:
            findings.append(Finding(spec.name, f"cleanup.policy={found.get('cleanup.policy')}"))
        retention = int(found.get("retention.ms", "-1"))
        if 0 <= retention < spec.retention_ms:
            findings.append(
                Finding(spec.name, f"retention.ms={retention}, {spec.retention_ms} planned")
            )
    return findings


def create(
    admin: AdminClient, specs: Sequence[TopicSpec], replication_factor: int = BROKER_DEFAULT
) -> tuple[list[str], list[str]]:
    """Create the topics of ``specs`` that do not exist; (created, already there). Existing
    topics are never changed: their partitions and settings are the operator's."""
    existing = set(admin.list_topics(timeout=TIMEOUT_SECONDS).topics)
    new = [s for s in specs if s.name not in existing]
    if new:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, replication_factor, config=s.configs()) for s in new],
            operation_timeout=TIMEOUT_SECONDS,
            request_timeout=TIMEOUT_SECONDS,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=TIMEOUT_SECONDS)
            except (KafkaException, TimeoutError) as exc:
                raise TopicsError(f"could not create topic {name!r}: {why(exc)}") from exc
    return [s.name for s in new], [s.name for s in specs if s.name in existing]


def _configs(admin: AdminClient, topics: Sequence[str]) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
    try:
        futures = admin.describe_configs(resources, request_timeout=TIMEOUT_SECONDS)
        return {
            resource.name: {k: str(v.value) for k, v in future.result(TIMEOUT_SECONDS).items()}
            for resource, future in futures.items()
        }
    except (KafkaException, TimeoutError) as exc:
        raise TopicsError(f"could not describe the topics' configuration: {why(exc)}") from exc
