"""librdkafka configuration for every Kafka client of the service, built in one place.

Pass-through properties from the environment (security, timeouts...) apply to all clients;
the properties our correctness depends on are set last and cannot be overridden.
"""

from __future__ import annotations

from typing import Any

from consumer.config import Settings


def _base(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.bootstrap_servers, **settings.kafka_properties}


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
        _base(settings)
        | membership
        | {
            "group.id": settings.group_id,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            "auto.offset.reset": settings.kafka_properties.get("auto.offset.reset", "earliest"),
            "enable.partition.eof": False,
        }
    )


def producer_config(settings: Settings) -> dict[str, Any]:
    """Idempotent producer: no duplicates or reordering from librdkafka's own retries."""
    return _base(settings) | {
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
    return _base(settings)
