"""The Kafka ACLs this service's principal needs, and no more (README, "Security").

Each is one operation on one literal resource. READ on a topic implies DESCRIBE (its metadata
and, for the lag gauge, its offsets); READ on the group implies DESCRIBE (committed offsets);
WRITE on a topic is also what an idempotent producer needs since Kafka 3.0 (no cluster
IDEMPOTENT_WRITE). Nothing on the cluster: the service creates no topics and changes no
configuration. Operator commands (`backfill`, `dlq redrive`, `lag`) run as an operator's
principal, not this one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consumer.config import Settings


class Operation(enum.Enum):
    READ = "READ"
    WRITE = "WRITE"


class Resource(enum.Enum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"


@dataclass(frozen=True)
class Permission:
    operation: Operation
    resource: Resource
    name: str
    why: str


def required(settings: Settings) -> list[Permission]:
    """Every permission ``run`` needs with these settings, in a stable order."""
    reads = [
        Permission(Operation.READ, Resource.TOPIC, topic, "consume the input")
        for topic in settings.input_topics
    ]
    group = Permission(
        Operation.READ, Resource.GROUP, settings.group_id, "join the group, commit offsets"
    )
    writes = [
        Permission(Operation.WRITE, Resource.TOPIC, settings.granted_topic, "publish grants"),
        Permission(Operation.WRITE, Resource.TOPIC, settings.approval_topic, "ask approvals"),
        Permission(Operation.WRITE, Resource.TOPIC, settings.dlq_topic, "dead-letter records"),
    ]
    return [*reads, group, *writes]
