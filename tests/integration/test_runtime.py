"""End to end: the real `cert-consumer run` process against the real broker and database."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.store.service_tables import outbox, pending_evaluations
from consumer.testing import seeding
from tests.integration.conftest import (
    count,
    grants,
    pass_completion,
    pass_distinction,
    seed_section,
)
from tests.integration.service import ServiceProcess, read_raw, service_env
from tests.support import wait_for

pytestmark = pytest.mark.integration


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
    dead = read_raw(kafka_bootstrap, topics.dlq, 1)
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


def test_settings_change_re_evaluates_every_enrolled_learner(
    engine, env, services, activity, outputs
) -> None:
    learners = [51, 52, 53, 54]
    with engine.begin() as conn:
        seed_section(conn, 5, learners)
        seeding.add_users(conn, [{"id": 59, "name": "Suspended"}])
        seeding.enroll(conn, 5, [59], status="suspended")
        for u in [*learners, 59]:
            pass_completion(conn, 5, u)
    services(env)
    activity.settings_changed(5)
    activity.flush()
    records = outputs.read_until(4)
    assert sorted(r["student"]["user_id"] for _, r, _ in records) == learners
    assert len(outputs.settle(1)) == 4


def _seed_many(engine: sa.Engine, section_id: int, learners: list[int]) -> None:
    with engine.begin() as conn:
        seed_section(conn, section_id, learners)
        for u in learners:
            pass_completion(conn, section_id, u)


def _all_published(engine: sa.Engine, expected: int) -> bool:
    with engine.connect() as conn:
        published = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_not(None))
        ).scalar_one()
    return published == expected and count(engine, pending_evaluations) == 0


def _assert_one_event_per_grant(records: list, expected_users: set[int]) -> None:
    by_id: dict[str, dict] = {}
    for _, record, _ in records:
        event_id = str(record["event_id"])
        assert by_id.setdefault(event_id, record) == record, "same id, different content"
    assert {r["student"]["user_id"] for r in by_id.values()} == expected_users
    assert len(by_id) == len(expected_users)


def test_two_consumers_one_killed_mid_stream_lose_nothing(
    engine, env, services, activity, outputs, new_topic, database_url, kafka_bootstrap, topics
) -> None:
    learners = list(range(6001, 6301))
    _seed_many(engine, 6, learners)
    env["CERT_CONSUMER_LEASE_SECONDS"] = "3"
    env["CERT_CONSUMER_CONSUME_BATCH_SIZE"] = "20"
    env["CERT_CONSUMER_EVALUATION_BATCH_SIZE"] = "20"
    first = services(env)
    second = services(env | {"CERT_CONSUMER_METRICS_PORT": str(first.port + 1)})
    for u in learners:
        activity.score(6, u)
    activity.flush()
    wait_for(lambda: len(grants(engine)) > 0, what="first grants")
    first.kill()
    wait_for(lambda: _all_published(engine, len(learners)), timeout=120, what="all published")
    _assert_one_event_per_grant(outputs.read_distinct(len(learners)), set(learners))
    assert len(grants(engine)) == len(learners)
    assert second.terminate() == 0


def test_sigterm_under_load_exits_cleanly_and_a_restart_finishes(
    engine, env, services, activity, outputs
) -> None:
    learners = list(range(7001, 7401))
    _seed_many(engine, 7, learners)
    env["CERT_CONSUMER_CONSUME_BATCH_SIZE"] = "50"
    env["CERT_CONSUMER_EVALUATION_BATCH_SIZE"] = "20"
    service = services(env)
    for _ in range(3):
        for u in learners:
            activity.score(7, u)
    activity.flush()
    wait_for(lambda: len(grants(engine)) > 0, what="first grants")
    stopping = time.monotonic()
    assert service.terminate(timeout=30) == 0
    assert time.monotonic() - stopping < 15 + 5
    assert '"event": "service_stopped"' in service.logs()
    services(env)
    wait_for(lambda: _all_published(engine, len(learners)), timeout=120, what="all published")
    _assert_one_event_per_grant(outputs.read_distinct(len(learners)), set(learners))


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def test_database_outage_pauses_and_resumes_without_loss(
    own_database, kafka_bootstrap, topics, services, activity, outputs
) -> None:
    server, url = own_database
    engine = sa.create_engine(url)
    learners = list(range(8001, 8101))
    _seed_many(engine, 8, learners)
    env = service_env(url, kafka_bootstrap, topics)
    group = env["CERT_CONSUMER_GROUP_ID"]
    service = services(env)
    for u in learners[:50]:
        activity.score(8, u)
    activity.flush()
    wait_for(lambda: _all_published(engine, 50), timeout=60, what="first half published")
    wait_for(
        lambda: _committed(kafka_bootstrap, group, topics.scores, 2) == 50,
        what="first half committed",
    )
    engine.dispose()

    server.stop()
    for u in learners[50:]:
        activity.score(8, u)
    activity.flush()
    time.sleep(10)  # the outage itself is the scenario, not a synchronisation
    assert _committed(kafka_bootstrap, group, topics.scores, 2) == 50
    assert service.healthy()
    server.start()

    wait_for(lambda: _all_published(engine, 100), timeout=90, what="second half published")
    wait_for(
        lambda: _committed(kafka_bootstrap, group, topics.scores, 2) == 100, what="all committed"
    )
    _assert_one_event_per_grant(outputs.read_distinct(100), set(learners))
    assert service.metric("cert_consumer_database_failures_total") > 0
    assert service.terminate() == 0
    engine.dispose()


def _readiness(service: ServiceProcess) -> str:
    """/readyz's body when not ready, "" when ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/readyz", timeout=3):
            return ""
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def test_relay_backs_off_while_a_topic_is_missing_and_delivers_once_it_exists(
    engine, env, services, activity, kafka_bootstrap
) -> None:
    missing = f"approval-missing-{uuid.uuid4().hex[:8]}"
    env["CERT_CONSUMER_APPROVAL_TOPIC"] = missing
    env["CERT_CONSUMER_KAFKA_MESSAGE_TIMEOUT_MS"] = "2000"
    with engine.begin() as conn:
        seed_section(conn, 11, [111], approval=True)
        pass_completion(conn, 11, 111)
    service = services(env)
    activity.score(11, 111)
    activity.flush()
    wait_for(
        lambda: service.metric("cert_consumer_relay_publish_failures_total") >= 2,
        timeout=60,
        what="failed deliveries",
    )
    assert count(engine, outbox) == 1  # one event, retried, never duplicated in the outbox
    wait_for(
        lambda: f"output topic {missing} does not exist" in _readiness(service),
        timeout=30,
        what="readiness naming the missing output topic",
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(missing, 1, 1)])[missing].result(30)
    try:
        wait_for(lambda: _all_published(engine, 1), timeout=60, what="published after recovery")
        (record,) = read_raw(kafka_bootstrap, missing, 1)
        assert dict(record.headers())["ce_type"].endswith(b"approval_requested.v1")
        assert service.terminate() == 0
    finally:
        admin.delete_topics([missing])[missing].result(30)


def test_a_poison_record_too_big_for_the_dlq_is_truncated_not_stuck(
    engine, env, services, activity, outputs, topics, kafka_bootstrap
) -> None:
    small_dlq = f"dlq-small-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    limited = NewTopic(small_dlq, 1, 1, config={"max.message.bytes": "70000"})
    admin.create_topics([limited])[small_dlq].result(30)
    env["CERT_CONSUMER_DLQ_TOPIC"] = small_dlq
    with engine.begin() as conn:
        seed_section(conn, 12, [121])
        pass_completion(conn, 12, 121)
    try:
        service = services(env)
        activity.raw(topics.scores, b"\x00" + b"\xff" * 200_000, key=b"12:121")
        activity.score(12, 121)
        activity.flush()
        outputs.read_until(1)  # the good record behind the poison one was processed
        (record,) = read_raw(kafka_bootstrap, small_dlq, 1)
        headers = dict(record.headers())
        assert 60_000 < len(record.value()) < 64 * 1024  # the fallback budget, all parts in
        assert record.value() == (b"\x00" + b"\xff" * 200_000)[: len(record.value())]
        assert headers["dlq.value.truncated.from.bytes"] == b"200001"
        assert headers["dlq.error.class"] == b"UnknownSchemaError"
        assert service.terminate() == 0
    finally:
        admin.delete_topics([small_dlq])[small_dlq].result(30)


def test_an_unencodable_outbox_event_is_set_aside_and_the_rest_published(
    engine, env, services, activity, outputs
) -> None:
    with engine.begin() as conn:
        seed_section(conn, 13, [131])
        pass_completion(conn, 13, 131)
        conn.execute(  # e.g. a payload edited by hand: no student
            sa.insert(outbox).values(
                event_id=uuid.uuid4(),
                event_type="certificate_granted",
                message_key="13:999",
                payload={"section_id": 13, "issued_at": "2026-11-25T00:00:00+00:00"},
            )
        )
    service = services(env)
    activity.score(13, 131)
    activity.flush()
    (record,) = [r for _, r, _ in outputs.read_until(1)]
    assert record["student"]["user_id"] == 131
    with engine.connect() as conn:
        bad = conn.execute(sa.select(outbox).where(outbox.c.message_key == "13:999")).one()
    assert bad.published_at is None and bad.failed_at is not None
    assert bad.error.startswith("EncodeError")
    assert service.metric("cert_consumer_outbox_set_aside_total") == 1
    assert service.terminate() == 0
