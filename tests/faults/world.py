"""A seeded world of sections and learners for the fault scenarios, the triggers that drive it,
and the oracle: what the pure rules say the final state must be.

Sections: 1 plain, 2 requires instructor approval, 3 certificates disabled, 4 requires one
public discussion post. Learners get a random profile (distinction, completion, fail, not
enrolled, suspended; with or without a post); a section whose draw gave no earning profile gets
one from its last learner, so sections 1 and 2 of every seed have a certificate to grant. Facts
are written before any trigger and never change, so the right end state is one decision per
learner on the final facts, whatever was killed or stopped on the way. Score events carry a
perfect score whatever the database says: a trigger that lies (not enrolled, suspended,
disabled, failing) must never grant.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from confluent_kafka import KafkaError, Message, Producer

from consumer.domain.model import DecisionKind
from consumer.domain.rules import decide
from consumer.events.catalogue import EventType
from consumer.events.codec import Codec
from consumer.events.envelope import build_headers, format_key
from consumer.store.facts import load_facts
from consumer.testing import seeding
from tests.integration.service import Topics

Key = tuple[int, int]
PAGES = ((101, True, False), (102, True, False), (103, True, False))
PROFILES = ("distinction", "completion", "fail", "not_enrolled", "suspended")
_SCORES = {"distinction": 95.0, "completion": 70.0, "fail": 30.0}
_EARNING = ("distinction", "completion")


@dataclass(frozen=True)
class World:
    keys: tuple[Key, ...]
    sections: tuple[int, ...]


def seed_world(engine: sa.Engine, learners_per_section: int, seed: int) -> World:
    """Four sections of ``learners_per_section`` learners each, profiles drawn from ``seed``."""
    rng = random.Random(seed)
    sections = (1, 2, 3, 4)
    keys: list[Key] = []
    with engine.begin() as conn:
        users = [
            {"id": s * 100_000 + i, "name": f"L{i}", "email": f"{s}-{i}@x"}
            for s in sections
            for i in range(1, learners_per_section + 1)
        ]
        seeding.add_users(conn, [{"id": s * 1000, "name": "Prof"} for s in sections] + users)
        for section_id in sections:
            seeding.add_section(conn, section_id, enabled=section_id != 3)
            seeding.enroll(conn, section_id, [section_id * 1000], role=seeding.INSTRUCTOR)
            seeding.add_pages(conn, section_id, PAGES)
            seeding.add_certificate(
                conn,
                seeding.Certificate(
                    id=section_id,
                    section_id=section_id,
                    requires_instructor_approval=section_id == 2,
                    required_discussion_posts=1 if section_id == 4 else 0,
                ),
            )
            enrolled, suspended = [], []
            earning = False
            for i in range(1, learners_per_section + 1):
                user_id = section_id * 100_000 + i
                profile = rng.choice(PROFILES)
                if i == learners_per_section and not earning:
                    profile = "completion"
                earning = earning or profile in _EARNING
                keys.append((section_id, user_id))
                if profile == "not_enrolled":
                    continue
                (suspended if profile == "suspended" else enrolled).append(user_id)
                percent = _SCORES.get(profile, 99.0)
                scores = {rid: (percent, 100.0) for rid, _, _ in PAGES}
                seeding.set_scores(conn, section_id, user_id, scores)
                if rng.random() < 0.7:
                    seeding.add_posts(conn, section_id, user_id, discussion=1)
            seeding.enroll(conn, section_id, enrolled)
            seeding.enroll(conn, section_id, suspended, status="suspended")
    return World(tuple(keys), sections)


def expected_grants(engine: sa.Engine, world: World) -> dict[Key, tuple[str, bool]]:
    """(state, with_distinction) per key that must hold a grant: the rules on the final facts,
    as a first evaluation would see them."""
    with engine.connect() as conn:
        facts = load_facts(conn, world.keys)
    expected = {}
    for key, snapshot in facts.items():
        decision = decide(replace(snapshot, grant=None))
        if decision.kind is DecisionKind.CREATE:
            assert decision.state is not None
            expected[key] = (decision.state.value, bool(decision.with_distinction))
    return expected


class Triggers:
    """Produces the world's input events the way Torus would (keys, CloudEvents headers)."""

    def __init__(self, bootstrap: str, topics: Topics, codec: Codec, **config: object) -> None:
        self.topics = topics
        self.codec = codec
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
            | {"log_level": 0}  # outages are the scenario: no connection-refused noise
            | config
        )
        self.sent = 0

    def send(self, topic: str, event_type: EventType, record: dict[str, object]) -> None:
        user_id = record.get("user_id")
        key = format_key(
            int(str(record["section_id"])), None if user_id is None else int(str(user_id))
        )
        headers = build_headers(
            event_id=f"in-{self.sent}",
            ce_type=self.codec.catalogue.latest(event_type).ce_type,
            source="urn:faults",
            time=datetime.now(UTC),
        )
        produce(
            self.producer, topic, self.codec.encode(event_type, record, topic=topic), key, headers
        )
        self.sent += 1

    def round(self, world: World, rng: random.Random) -> None:
        """One event per key (a score, or a post in section 4), in random order, plus a
        settings change of one section."""
        now = datetime.now(UTC)
        for section_id, user_id in rng.sample(list(world.keys), len(world.keys)):
            if section_id == 4 and rng.random() < 0.5:
                self.send(
                    self.topics.posts, EventType.POST_CREATED, post_record(section_id, user_id, now)
                )
            else:
                self.send(
                    self.topics.scores,
                    EventType.PAGE_SCORE_UPDATED,
                    score_record(section_id, user_id, now),
                )
        changed = rng.choice(world.sections)
        self.send(
            self.topics.settings,
            EventType.CERTIFICATE_SETTINGS_CHANGED,
            settings_record(changed, now),
        )

    def flush(self) -> None:
        assert self.producer.flush(120) == 0  # a restarted broker can take a while


def rounds(world: World, triggers: Triggers, count: int, seed: int) -> Iterator[int]:
    """Play ``count`` rounds, yielding after each so a scenario can inject a fault between."""
    rng = random.Random(seed)
    for index in range(count):
        triggers.round(world, rng)
        triggers.producer.poll(0)
        yield index
    triggers.flush()


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Produce one record, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)


def score_record(section_id: int, user_id: int, now: datetime) -> dict[str, Any]:
    # A perfect score in the event, whatever the database holds: only the database counts.
    return {
        "section_id": section_id,
        "user_id": user_id,
        "resource_id": 101,
        "score": 1.0,
        "out_of": 1.0,
        "cause": "GRADED_FINALIZE",
        "occurred_at": now,
    }


def post_record(section_id: int, user_id: int, now: datetime) -> dict[str, Any]:
    return {
        "section_id": section_id,
        "user_id": user_id,
        "post_id": user_id,
        "annotated_resource_id": None,
        "visibility": "PUBLIC",
        "occurred_at": now,
    }


def settings_record(section_id: int, now: datetime) -> dict[str, Any]:
    return {"section_id": section_id, "occurred_at": now}
