"""Registering our schemas in a Confluent-compatible registry: every version of each event
type under ``<topic>-value`` (TopicNameStrategy), FULL_TRANSITIVE, oldest first.

Used by ``cert-consumer schemas register`` (all types, once per release) and by the relay when
``CERT_CONSUMER_REGISTER_SCHEMAS`` is set (its two output types, at start). Imports the registry
client and the catalogue; knows nothing of Kafka messages or the database.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import partial

from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.events.catalogue import Catalogue, EventType
from consumer.events.codec import call_registry

COMPATIBILITY = "FULL_TRANSITIVE"


@dataclass(frozen=True)
class Registered:
    """Where one schema version landed in the registry."""

    subject: str
    file: str
    schema_id: int
    version: int


def register_all(
    catalogue: Catalogue,
    client: SchemaRegistryClient,
    topics: Mapping[EventType, str] | None = None,
    only: Collection[EventType] | None = None,
) -> list[Registered]:
    """Set each subject to FULL_TRANSITIVE, then register its versions oldest first.

    The subject is ``<topic>-value`` (TopicNameStrategy), the topic from ``topics`` or the event
    type's default; ``only`` limits it to some event types.

    Re-registering an identical schema returns its existing id, so this is safe to repeat.
    The registry's own compatibility check is a second guard behind ``schemas check``.
    """
    done: list[Registered] = []
    for version in catalogue:
        if only is not None and version.event_type not in only:
            continue
        topic = (topics or {}).get(version.event_type, version.event_type.default_topic)
        subject = f"{topic}-value"
        if version.version == 1:
            call_registry("set_compatibility", partial(_set_level, client, subject))
        schema = RegistrySchema(version.path.read_text(encoding="utf-8"), "AVRO")
        schema_id, number = call_registry("register", partial(_register, client, subject, schema))
        done.append(Registered(subject, version.path.name, schema_id, number))
    return done


def _set_level(client: SchemaRegistryClient, subject: str) -> None:
    client.set_compatibility(subject_name=subject, level=COMPATIBILITY)


def _register(
    client: SchemaRegistryClient, subject: str, schema: RegistrySchema
) -> tuple[int, int]:
    schema_id = client.register_schema(subject, schema)
    registered = client.lookup_schema(subject, schema)
    return schema_id, int(registered.version or 0)
