"""The end-state check every fault scenario ends with, and the figures it reports.

Exactly one correct grant per learner the rules say qualifies and none for the others; every
transition's outbox event published and on its output topic; re-published duplicates of one
event id counted (allowed: delivery is at-least-once), ids with differing content and missing
ids counted (must be 0).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition

from consumer.events.codec import Codec
from consumer.store import torus
from consumer.store.service_tables import outbox, pending_evaluations
from tests.faults.world import Key, World, expected_grants
from tests.integration.service import Topics


@dataclass
class Verdict:
    scenario: str
    expected_grants: int
    actual_grants: int
    missing_grants: int
    wrong_grants: int
    duplicate_grants: int
    outbox_events: int
    events_on_topics: int
    distinct_event_ids: int
    duplicated_event_ids: int
    differing_content_ids: int
    missing_event_ids: int
    unknown_event_ids: int
    extra: dict[str, Any] = field(default_factory=dict)

    def assert_correct(self) -> None:
        assert self.missing_grants == 0, self
        assert self.wrong_grants == 0, self
        assert self.duplicate_grants == 0, self
        assert self.differing_content_ids == 0, self
        assert self.missing_event_ids == 0, self
        assert self.unknown_event_ids == 0, self

    def record(self) -> None:
        """Print the figures, and append them to $CERT_CONSUMER_FAULTS_REPORT when set."""
        line = json.dumps(asdict(self), sort_keys=True)
        print(f"\nfaults: {line}")
        target = os.environ.get("CERT_CONSUMER_FAULTS_REPORT")
        if target:
            with Path(target).open("a", encoding="utf-8") as out:
                out.write(line + "\n")


def _grants(engine: sa.Engine) -> dict[Key, list[tuple[str, bool]]]:
    g, c = torus.granted_certificates, torus.certificates
    query = sa.select(c.c.section_id, g.c.user_id, g.c.state, g.c.with_distinction).join(
        c, c.c.id == g.c.certificate_id
    )
    found: dict[Key, list[tuple[str, bool]]] = {}
    with engine.connect() as conn:
        for section_id, user_id, state, distinction in conn.execute(query):
            found.setdefault((section_id, user_id), []).append((str(state), bool(distinction)))
    return found


def _settled(engine: sa.Engine, expected: dict[Key, tuple[str, bool]]) -> bool:
    with engine.connect() as conn:
        pending = conn.execute(sa.select(sa.func.count()).select_from(pending_evaluations))
        unpublished = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
        if pending.scalar_one() or unpublished.scalar_one():
            return False
    return len(_grants(engine)) >= len(expected)


def read_topic(bootstrap: str, topic: str, **config: object) -> list[Any]:
    """Every record of ``topic`` up to its current end (``config``: e.g. a secured client's)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verdict-{topic}",
            "enable.auto.commit": False,
        }
        | config
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Any] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 120
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    continue
                records.append(msg)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        assert len(done) == len(ends), f"could not read {topic} to its end"
        return records
    finally:
        consumer.close()


def verdict(
    scenario: str,
    engine: sa.Engine,
    world: World,
    bootstrap: str,
    topics: Topics,
    codec: Codec,
    *,
    timeout: float = 240,
    kafka_config: dict[str, object] | None = None,
) -> Verdict:
    """Wait until the service has settled (nothing pending, everything published), then judge."""
    expected = expected_grants(engine, world)
    deadline = time.monotonic() + timeout
    while not _settled(engine, expected) and time.monotonic() < deadline:
        time.sleep(0.5)
    actual = _grants(engine)
    wrong = sum(1 for key, rows in actual.items() if expected.get(key) != rows[0])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.event_id, outbox.c.published_at)).all()
    outbox_ids = {str(event_id) for event_id, _ in rows}
    contents: dict[str, set[str]] = {}
    seen: Counter[str] = Counter()
    for topic in (topics.granted, topics.approval):
        for msg in read_topic(bootstrap, topic, **(kafka_config or {})):
            record = codec.decode(msg.value()).record
            event_id = str(record["event_id"])
            seen[event_id] += 1
            contents.setdefault(event_id, set()).add(
                json.dumps(record, sort_keys=True, default=str)
            )
    return Verdict(
        scenario=scenario,
        expected_grants=len(expected),
        actual_grants=sum(len(r) for r in actual.values()),
        missing_grants=sum(1 for key in expected if key not in actual),
        wrong_grants=wrong,
        duplicate_grants=sum(len(r) - 1 for r in actual.values()),
        outbox_events=len(outbox_ids),
        events_on_topics=sum(seen.values()),
        distinct_event_ids=len(seen),
        duplicated_event_ids=sum(1 for n in seen.values() if n > 1),
        differing_content_ids=sum(1 for c in contents.values() if len(c) > 1),
        missing_event_ids=len(outbox_ids - set(seen)),
        unknown_event_ids=len(set(seen) - outbox_ids),
    )
