"""End to end: the real `cert-consumer run` process against the real broker and database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer import seeding, torus
from consumer.own_schema import outbox, pending_evaluations
from tests.integration.service import (
    ActivityProducer,
    OutputReader,
    ServiceProcess,
    Topics,
    service_env,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration

PAGES = ((101, True, False), (102, True, False))


def seed_section(
    conn: sa.Connection, section_id: int, learners: list[int], *, approval: bool = False
) -> None:
    instructor = section_id * 1000
    seeding.add_users(
        conn,
        [{"id": instructor, "name": "Prof", "email": f"p{section_id}@x"}]
        + [{"id": u, "name": f"Learner {u}", "email": f"{u}@x"} for u in learners],
    )
    seeding.add_section(conn, section_id)
    seeding.enroll(conn, section_id, [instructor], role=seeding.INSTRUCTOR)
    seeding.enroll(conn, section_id, learners)
    seeding.add_pages(conn, section_id, PAGES)
    seeding.add_certificate(
        conn,
        seeding.Certificate(
            id=section_id, section_id=section_id, requires_instructor_approval=approval
        ),
    )


def pass_completion(conn: sa.Connection, section_id: int, user_id: int) -> None:
    seeding.set_scores(conn, section_id, user_id, {101: (70.0, 100.0), 102: (7.0, 10.0)})


def pass_distinction(conn: sa.Connection, section_id: int, user_id: int) -> None:
    seeding.set_scores(conn, section_id, user_id, {101: (95.0, 100.0), 102: (10.0, 10.0)})


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> Topics:
    return Topics.create(new_topic, partitions=2)


@pytest.fixture
def env(database_url: str, kafka_bootstrap: str, topics: Topics) -> dict[str, str]:
    return service_env(database_url, kafka_bootstrap, topics)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(env, tmp_path / f"service-{len(started)}.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()


@pytest.fixture
def activity(kafka_bootstrap: str, topics: Topics) -> ActivityProducer:
    return ActivityProducer(kafka_bootstrap, topics)


@pytest.fixture
def outputs(kafka_bootstrap: str, topics: Topics) -> Iterator[OutputReader]:
    reader = OutputReader(kafka_bootstrap, topics.granted, topics.approval)
    yield reader
    reader.close()


def grants(engine: sa.Engine) -> list[sa.Row]:
    g = torus.granted_certificates
    with engine.connect() as conn:
        return list(conn.execute(sa.select(g).order_by(g.c.user_id)))


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_grant_approval_and_upgrade_flow(engine, env, services, activity, outputs, topics) -> None:
    with engine.begin() as conn:
        seed_section(conn, 1, [11, 12])
        seed_section(conn, 2, [21], approval=True)
        pass_completion(conn, 1, 11)  # 12 does not pass: no certificate
        pass_completion(conn, 2, 21)
    service = services(env)
    for section_id, user_id in ((1, 11), (1, 12), (2, 21)):
        activity.score(section_id, user_id)
    activity.flush()

    records = outputs.read_until(2)
    by_topic = {topic: record for topic, record, _ in records}
    granted, approval = by_topic[topics.granted], by_topic[topics.approval]
    assert granted["student"]["user_id"] == 11 and granted["state"] == "EARNED"
    assert granted["certificate_label"] == "Certificate of Completion"
    assert approval["student"]["user_id"] == 21 and approval["state"] == "PENDING"
    assert [r["user_id"] for r in approval["recipients"]] == [2000]
    assert [(g.user_id, g.state, g.with_distinction) for g in grants(engine)] == [
        (11, "earned", False),
        (21, "pending", False),
    ]
    for _, record, headers in records:
        assert headers["ce_id"].decode() == str(record["event_id"])
        assert headers["ce_specversion"] == b"1.0"

    with engine.begin() as conn:
        pass_distinction(conn, 1, 11)
    activity.score(1, 11)
    activity.flush()
    records = outputs.read_until(3)
    upgrade = records[2][1]
    assert (upgrade["student"]["user_id"], upgrade["with_distinction"]) == (11, True)
    assert upgrade["certificate_type"] == "DISTINCTION"
    assert len({str(r["event_id"]) for _, r, _ in outputs.settle(2)}) == 3
    assert service.terminate() == 0


def test_a_burst_of_200_triggers_is_one_evaluation(
    engine, env, services, activity, outputs
) -> None:
    with engine.begin() as conn:
        seed_section(conn, 3, [31])
        pass_completion(conn, 3, 31)
    env["CERT_CONSUMER_QUIET_WINDOW_SECONDS"] = "3"
    env["CERT_CONSUMER_MAX_WAIT_SECONDS"] = "30"
    service = services(env)
    for _ in range(200):
        activity.score(3, 31)
    activity.flush()
    outputs.read_until(1)
    wait_for(lambda: count(engine, pending_evaluations) == 0, what="pending drained")
    assert service.metric("cert_consumer_events_consumed_total") == 200
    assert service.metric("cert_consumer_evaluations_total") == 1
    assert len(outputs.settle(1)) == 1
    assert service.terminate() == 0


def test_poison_record_goes_to_the_dlq_and_good_ones_are_processed(
    engine, env, services, activity, outputs, topics, kafka_bootstrap
) -> None:
    with engine.begin() as conn:
        seed_section(conn, 4, [41, 42])
        pass_completion(conn, 4, 41)
        pass_completion(conn, 4, 42)
    service = services(env)
    activity.score(4, 41)
    activity.raw(topics.scores, b"\xc3\x01garbage-that-is-no-avro", key=b"4:41")
    activity.score(4, 42)
    activity.flush()
    outputs.read_until(2)
    dlq = OutputReader.__new__(OutputReader)
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": "dlq-reader",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topics.dlq])
    dead: list = []
    wait_for(
        lambda: (
            dead.extend(m for m in consumer.consume(10, timeout=0.2) if m.error() is None) or dead
        ),
        what="DLQ record",
    )
    consumer.close()
    del dlq
    (record,) = dead
    headers = dict(record.headers())
    assert record.value() == b"\xc3\x01garbage-that-is-no-avro"
    assert headers["dlq.source.topic"].decode() == topics.scores
    assert int(headers["dlq.source.offset"]) >= 0
    assert headers["dlq.error.class"] in (b"UnknownSchemaError", b"TruncatedRecordError")
    assert headers["dlq.first.seen"]
    assert service.metric("cert_consumer_dlq_records_total") == 1
    assert {g.user_id for g in grants(engine)} == {41, 42}
    assert service.terminate() == 0
