"""librdkafka configuration for every Kafka client of the service, built in one place.

Pass-through properties from the environment (security, timeouts...) go to the clients they
are for: a consumer-only property (``session.timeout.ms``) only to the consumer, a
producer-only one (``linger.ms``) only to producers, everything else to every client, so no
client prints a CONFWARN about a property that is not its own. The properties our correctness
depends on are set last and cannot be overridden. Every client is named after the host (the
pod) and its role, so broker-side quotas, logs and metrics can tell the pods apart.
"""

from __future__ import annotations

import enum
import socket
from typing import Any

from consumer.config import Settings


class Client(enum.Enum):
    CONSUMER = "consumer"
    PRODUCER = "producer"
    ADMIN = "admin"


# librdkafka's CONFIGURATION.md marks these C (consumer) or P (producer) only.
CONSUMER_ONLY = frozenset(
    {
        "auto.commit.interval.ms",
        "auto.offset.reset",
        "check.crcs",
        "coordinator.query.interval.ms",
        "fetch.error.backoff.ms",
        "fetch.max.bytes",
        "fetch.message.max.bytes",
        "fetch.min.bytes",
        "fetch.queue.backoff.ms",
        "fetch.wait.max.ms",
        "group.remote.assignor",
        "heartbeat.interval.ms",
        "isolation.level",
        "max.partition.fetch.bytes",
        "max.poll.interval.ms",
        "queued.max.messages.kbytes",
        "queued.min.messages",
        "session.timeout.ms",
    }
)
PRODUCER_ONLY = frozenset(
    {
        "batch.num.messages",
        "batch.size",
        "compression.codec",
        "compression.level",
        "compression.type",
        "delivery.timeout.ms",
        "linger.ms",
        "message.send.max.retries",
        "message.timeout.ms",
        "partitioner",
        "queue.buffering.max.kbytes",
        "queue.buffering.max.messages",
        "queue.buffering.max.ms",
        "request.required.acks",
        "request.timeout.ms",
        "retries",
        "sticky.partitioning.linger.ms",
    }
)
_NOT_FOR = {
    Client.CONSUMER: PRODUCER_ONLY,
    Client.PRODUCER: CONSUMER_ONLY,
    Client.ADMIN: CONSUMER_ONLY | PRODUCER_ONLY,
}


# Set by the service whatever the operator passes: correctness depends on them (offsets stored
# only after the upsert commits, idempotent acks=all delivery, the membership of ADR 0009), or
# a setting of our own names them (GROUP_ID, GROUP_PROTOCOL, KAFKA_BOOTSTRAP_SERVERS).
PROTECTED = {
    "enable.auto.offset.store": "offsets are stored only after a batch's upsert commits",
    "enable.auto.commit": "stored offsets are committed by librdkafka's timer",
    "enable.partition.eof": "the ingest reads no end-of-partition events",
    "enable.idempotence": "no duplicates from librdkafka's own retries",
    "acks": "an event counts as published once every in-sync replica has it",
    "group.id": "set CERT_CONSUMER_GROUP_ID",
    "group.protocol": "set CERT_CONSUMER_GROUP_PROTOCOL",
    "group.instance.id": "set CERT_CONSUMER_GROUP_INSTANCE_ID",
    "partition.assignment.strategy": "cooperative-sticky with the classic protocol (ADR 0009)",
    "bootstrap.servers": "set CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
}


def ignored_overrides(settings: Settings) -> list[str]:
    """A warning per pass-through property the service overrides, saying why."""
    return [
        f"CERT_CONSUMER_KAFKA_{name.upper().replace('.', '_')} is ignored: {why}"
        for name, why in PROTECTED.items()
        if name in settings.kafka_properties
    ]


def passthrough(settings: Settings, client: Client) -> dict[str, str]:
    """The operator's librdkafka properties that apply to ``client``."""
    skip = _NOT_FOR[client]
    return {k: v for k, v in settings.kafka_properties.items() if k not in skip}


def client_id(settings: Settings, role: str) -> str:
    """``client.id``: the operator's if set, else ``cert-consumer-<host>-<role>``."""
    given = settings.kafka_properties.get("client.id")
    return f"{given}-{role}" if given else f"cert-consumer-{socket.gethostname()}-{role}"


def _base(settings: Settings, client: Client) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers, **passthrough(settings, client)}


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Offsets are stored by hand after the batch's upsert commits, then auto-committed.

    The group protocol is ADR 0009's choice: Kafka 4's consumer protocol (KIP-848) assigns on
    the broker without a group-wide barrier, so churn never leaves every partition unassigned;
    the classic protocol keeps incremental cooperative rebalancing. A static member id makes a
    restart in place keep its partitions instead of rebalancing the group.
    """
    membership: dict[str, Any] = {"group.protocol": settings.group_protocol}
    if settings.group_protocol == "classic":
        membership["partition.assignment.strategy"] = "cooperative-sticky"
    if settings.group_instance_id:
        membership["group.instance.id"] = settings.group_instance_id
    return (
        _base(settings, Client.CONSUMER)
        | membership
        | {
            "group.id": settings.group_id,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            # Stored offsets reach the broker within a second (librdkafka's default is 5 s):
            # lag and a restart's re-reading both shrink with it.
            "auto.commit.interval.ms": settings.kafka_properties.get(
                "auto.commit.interval.ms", "1000"
            ),
            "auto.offset.reset": settings.kafka_properties.get("auto.offset.reset", "earliest"),
            "enable.partition.eof": False,
        }
    )


def reader_config(settings: Settings, group: str) -> dict[str, Any]:
    """A consumer that reads assigned partitions and commits by hand under ``group`` (an
    operator command's, never the service's group: no membership, no auto-commit)."""
    return _base(settings, Client.CONSUMER) | {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """Idempotent producer: no duplicates or reordering from librdkafka's own retries."""
    return _base(settings, Client.PRODUCER) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.kafka_properties.get("linger.ms", "5"),
        # Every message gets a delivery report within this bound, which bounds how long the
        # relay and the dead-letter path wait (see consumer.delivery).
        "message.timeout.ms": settings.kafka_properties.get("message.timeout.ms", "20000"),
    }


def report_timeout_seconds(settings: Settings) -> float:
    """How long to wait for all delivery reports: the message timeout plus a margin."""
    return int(producer_config(settings)["message.timeout.ms"]) / 1000 + 5


def max_record_bytes(settings: Settings) -> int:
    """The largest record our producers send (librdkafka's ``message.max.bytes``, 1,000,000
    unless overridden), less room for the batch framing: what a dead-letter copy must fit."""
    return int(settings.kafka_properties.get("message.max.bytes", "1000000")) - 4096


def admin_config(settings: Settings) -> dict[str, Any]:
    return _base(settings, Client.ADMIN)
