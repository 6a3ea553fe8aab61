"""Against a real Confluent-compatible registry (Apicurio): register, then the framed round trip."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.cli.schemas import add_commands, register_all
from consumer.errors import CheckFailedError
from consumer.events.catalogue import Catalogue, EventType, load_catalogue
from consumer.events.codec import Codec
from consumer.events.envelope import read_trigger
from consumer.events.errors import Framing
from tests.contracts.conftest import WriteSchema, raw_schema

NOW = datetime(2026, 8, 1, 12, 0, 0, 123000, tzinfo=UTC)
SCORE = {
    "section_id": 7,
    "user_id": 42,
    "resource_id": 9,
    "score": 3.5,
    "out_of": 4.0,
    "cause": "INSTRUCTOR_EDIT",
    "occurred_at": NOW,
}


def topics(prefix: str) -> dict[EventType, str]:
    return {e: prefix + e.default_topic for e in EventType}


def test_register_then_confluent_round_trip(
    schema_registry_url: str, catalogue: Catalogue, topic_prefix: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    registered = register_all(catalogue, client, topics(topic_prefix))
    assert [r.subject for r in registered] == [
        f"{topic_prefix}{v.event_type.default_topic}-value" for v in catalogue
    ]
    # Each subject's versions in file order: certificate_granted v1 then v2.
    assert [r.version for r in registered] == [v.version for v in catalogue]
    assert client.get_compatibility(registered[0].subject) == "FULL_TRANSITIVE"
    assert register_all(catalogue, client, topics(topic_prefix)) == registered  # idempotent

    producer_side = Codec(catalogue, client)
    value = producer_side.encode(
        EventType.PAGE_SCORE_UPDATED, SCORE, topic=topic_prefix + "torus.page-score-updated"
    )
    schema_id = int.from_bytes(value[1:5], "big")
    assert (
        schema_id
        == registered[
            [v.event_type for v in catalogue].index(EventType.PAGE_SCORE_UPDATED)
        ].schema_id
    )

    consumer_side = Codec(catalogue, SchemaRegistryClient({"url": schema_registry_url}))
    decoded = consumer_side.decode(value, accepted={EventType.PAGE_SCORE_UPDATED})
    assert (decoded.framing, decoded.writer_version, decoded.record) == (
        Framing.CONFLUENT,
        1,
        SCORE,
    )
    assert read_trigger(consumer_side, value, None, key=b"7:42").user_id == 42


def test_a_v2_registers_and_an_old_reader_reads_it(
    schema_registry_url: str,
    catalogue: Catalogue,
    topic_prefix: str,
    schemas_copy: Path,
    write_schema: WriteSchema,
) -> None:
    v2 = raw_schema("page_score_updated.v1.avsc")
    v2["fields"].append({"name": "attempt", "type": "long", "default": 1, "doc": "Attempt number."})
    write_schema("page_score_updated.v2.avsc", v2)
    with_v2 = load_catalogue(schemas_copy)
    client = SchemaRegistryClient({"url": schema_registry_url})
    registered = register_all(with_v2, client, topics(topic_prefix))
    assert [r.version for r in registered if r.file.startswith("page_score")] == [1, 2]

    value = Codec(with_v2, client).encode(
        EventType.PAGE_SCORE_UPDATED,
        SCORE | {"attempt": 2},
        topic=topic_prefix + "torus.page-score-updated",
    )
    old_reader = Codec(catalogue, SchemaRegistryClient({"url": schema_registry_url}))
    assert old_reader.decode(value).record == SCORE


def test_the_registry_refuses_an_incompatible_version(
    schema_registry_url: str,
    catalogue: Catalogue,
    topic_prefix: str,
    schemas_copy: Path,
    write_schema: WriteSchema,
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    register_all(catalogue, client, topics(topic_prefix))
    v2 = raw_schema("post_created.v1.avsc")
    v2["fields"][0]["type"] = "string"
    write_schema("post_created.v2.avsc", v2)

    parser = argparse_parser()
    args = parser.parse_args(
        [
            "schemas",
            "register",
            "--schemas-dir",
            str(schemas_copy),
            "--registry-url",
            schema_registry_url,
        ]
        + [f"--topic={e.value}={t}" for e, t in topics(topic_prefix).items()]
    )
    out = io.StringIO()
    with pytest.raises(CheckFailedError) as refused:  # the CLI says it in one line, exit 3
        args.handler(args, out)
    assert str(refused.value).startswith("the registry refused a schema: ")
    assert "409" in str(refused.value)
    assert all(json.loads(line)["subject"] for line in out.getvalue().splitlines())


def argparse_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cert-consumer")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture(autouse=True)
def _no_env_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERT_CONSUMER_SCHEMA_REGISTRY_URL", raising=False)
