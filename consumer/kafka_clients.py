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
    """Offsets are stored by hand after the batch's upsert commits, then auto-committed."""
    return _base(settings) | {
        "group.id": settings.group_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.offset.store": False,
        "enable.auto.commit": True,
        "auto.offset.reset": settings.kafka_properties.get("auto.offset.reset", "earliest"),
        "enable.partition.eof": False,
    }


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


def admin_config(settings: Settings) -> dict[str, Any]:
    return _base(settings)
