"""End to end through a real Debezium pipeline: rows written to the Torus tables in PostgreSQL
-> the Debezium PostgreSQL connector on Kafka Connect -> Kafka -> `cert-consumer run` ->
granted certificates and output events. Nothing here produces an activity event."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from consumer.events.cdc import CdcTable
from consumer.kafka import watermarks
from consumer.store.service_tables import outbox
from consumer.testing import seeding
from tests.cdc.conftest import Pipeline
from tests.cdc.harness import Capture
from tests.integration.conftest import grants, pass_completion, seed_section
from tests.integration.service import OutputReader, read_raw
from tests.support import wait_for

pytestmark = pytest.mark.integration
SKIPPED = "cert_consumer_cdc_records_skipped_total"


def grants_of(engine: sa.Engine) -> dict[int, tuple[str, bool]]:
    return {g.user_id: (str(g.state), bool(g.with_distinction)) for g in grants(engine)}


def run_sql(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def seed_world(engine: sa.Engine) -> None:
    """Five sections, each waiting for one kind of change to make a learner earn."""
    with engine.begin() as conn:
        # 1: scores and enrollments. 11 has nothing yet; 12 fails; 13 passes but is suspended;
        # 14 passes page 101 only (page 102 is about to be hidden); 15 fails.
        seed_section(conn, 1, [11, 12, 14, 15])
        seeding.add_users(conn, [{"id": 13}])
        seeding.enroll(conn, 1, [13], status="suspended")
        seeding.set_scores(conn, 1, 12, {101: (10.0, 100.0), 102: (1.0, 10.0)})
        pass_completion(conn, 1, 13)
        seeding.set_scores(conn, 1, 14, {101: (80.0, 100.0), 102: (0.0, 10.0)})
        seeding.set_scores(conn, 1, 15, {101: (5.0, 100.0), 102: (0.0, 10.0)})
        # 2: needs one discussion post; 21 passes the pages.
        seed_section(conn, 2, [21])
        conn.execute(sa.text("UPDATE certificates SET required_discussion_posts = 1 WHERE id = 2"))
        pass_completion(conn, 2, 21)
        # 3: instructor approval; 31 is about to pass.
        seed_section(conn, 3, [31], approval=True)
        # 4: certificates off; 41 passes.
        seed_section(conn, 4, [41])
        conn.execute(sa.text("UPDATE sections SET certificate_enabled = false WHERE id = 4"))
        pass_completion(conn, 4, 41)
        # 5: the pass mark is 70 and 51 has 60.
        seed_section(conn, 5, [51])
        conn.execute(
            sa.text("UPDATE certificates SET min_percentage_for_completion = 70 WHERE id = 5")
        )
        seeding.set_scores(conn, 5, 51, {101: (60.0, 100.0), 102: (6.0, 10.0)})


def test_changes_of_every_table_become_certificates(pipeline: Pipeline) -> None:
    capture, cdc_engine, cdc_topics = pipeline.capture, pipeline.engine, pipeline.topics
    seed_world(cdc_engine)
    capture.start_capture()  # everything above is an initial-snapshot read: skipped
    service = pipeline.launch(pipeline.env)
    outputs = OutputReader(capture.bootstrap, cdc_topics.granted, cdc_topics.approval)
    posts_topic = capture.topic(CdcTable.POSTS)

    with cdc_engine.begin() as conn:
        pass_completion(conn, 1, 11)  # resource_accesses inserts
    run_sql(
        cdc_engine,
        # an update under REPLICA IDENTITY DEFAULT: no before image, still a trigger
        "UPDATE resource_accesses SET score = 90 WHERE section_id = 1 AND user_id = 12 AND resource_id = 101",  # noqa: E501
        "UPDATE resource_accesses SET score = 9 WHERE section_id = 1 AND user_id = 12 AND resource_id = 102",  # noqa: E501
        # a reinstated enrollment: 13 qualified while suspended
        "UPDATE enrollments SET status = 'enrolled' WHERE section_id = 1 AND user_id = 13",
        # a curriculum change: hiding page 102 makes 14 pass
        "UPDATE section_resources SET hidden = true WHERE section_id = 1 AND resource_id = 102",
        # certificates turned on, and a lowered pass mark (both tables are REPLICA IDENTITY FULL)
        "UPDATE sections SET certificate_enabled = true WHERE id = 4",
        "UPDATE certificates SET min_percentage_for_completion = 50 WHERE id = 5",
        # an edit that touches no rule column: skipped on its before image
        "UPDATE certificates SET title = 'Renamed' WHERE id = 5",
    )
    # A malformed record and one too large for the dead-letter topic as it is, on a change
    # topic, ahead of a post that must still be processed.
    producer = Producer({"bootstrap.servers": capture.bootstrap, "message.max.bytes": 1_048_000})
    producer.produce(posts_topic, b"not json at all", b'{"id": 1}')
    producer.produce(posts_topic, b"{" + b" " * 1_040_000, b'{"id": 2}')
    assert producer.flush(30) == 0
    with cdc_engine.begin() as conn:
        seeding.add_posts(conn, 2, 21, discussion=1)  # 21's required post
        seeding.set_scores(conn, 3, 31, {101: (70.0, 100.0), 102: (7.0, 10.0)})  # pending

    expected = {11, 12, 13, 14, 21, 31, 41, 51}
    wait_for(lambda: set(grants_of(cdc_engine)) >= expected, timeout=90, what="every grant")
    assert grants_of(cdc_engine)[31] == ("pending", False)
    assert 15 not in grants_of(cdc_engine)

    # The instructor approves 31 in Torus: the PDF service must hear of it.
    run_sql(cdc_engine, "UPDATE granted_certificates SET state = 'earned' WHERE user_id = 31")
    # A deleted post and a rewritten score (REPLICA IDENTITY FULL) are not triggers.
    run_sql(
        cdc_engine,
        "ALTER TABLE resource_accesses REPLICA IDENTITY FULL",
        "UPDATE resource_accesses SET score = score WHERE section_id = 1 AND user_id = 15",
        "DELETE FROM posts WHERE section_id = 2",
    )
    records = list(outputs.read_until(9, timeout=90))
    granted = [r for topic, r, _ in records if topic == cdc_topics.granted]
    assert sorted(r["student"]["user_id"] for r in granted) == [11, 12, 13, 14, 21, 31, 41, 51]
    causes = {r["student"]["user_id"]: r["cause"] for r in granted}
    assert causes.pop(31) == "INSTRUCTOR_APPROVAL"
    assert set(causes.values()) == {"RULES"}
    (approval,) = [r for topic, r, _ in records if topic == cdc_topics.approval]
    assert approval["student"]["user_id"] == 31

    dead = read_raw(capture.bootstrap, cdc_topics.dlq, 2)
    assert [dict(m.headers())["dlq.error.class"] for m in dead] == [
        b"MalformedChangeError",
        b"MalformedChangeError",
    ]
    assert "dlq.value.truncated.from.bytes" in dict(dead[1].headers())

    def counted(table: CdcTable, reason: str) -> float:
        return service.metric(SKIPPED, {"topic": capture.topic(table), "reason": reason})

    wait_for(lambda: counted(CdcTable.POSTS, "tombstone") == 1, what="the tombstone counted")
    assert counted(CdcTable.POSTS, "delete") == 1
    assert counted(CdcTable.RESOURCE_ACCESSES, "snapshot") >= 8
    assert counted(CdcTable.CERTIFICATES, "no_rule_change") == 1
    wait_for(
        lambda: counted(CdcTable.RESOURCE_ACCESSES, "score_unchanged") == 2,
        what="the unchanged scores skipped",
    )
    assert len(outputs.settle(2.0)) == len(records)  # nothing more: no duplicate, none for 15
    outputs.close()


def test_replayed_changes_make_no_new_transition_and_no_new_event(pipeline: Pipeline) -> None:
    capture, cdc_engine, cdc_topics = pipeline.capture, pipeline.engine, pipeline.topics
    cdc_env, launch = pipeline.env, pipeline.launch
    with cdc_engine.begin() as conn:
        seed_section(conn, 1, [11])
        seed_section(conn, 3, [31], approval=True)
    capture.start_capture(schemas=True)  # the converter's schema wrapper, read as well
    first = launch(cdc_env)
    outputs = OutputReader(capture.bootstrap, cdc_topics.granted, cdc_topics.approval)
    with cdc_engine.begin() as conn:
        pass_completion(conn, 1, 11)
        pass_completion(conn, 3, 31)
    wait_for(lambda: len(grants_of(cdc_engine)) == 2, timeout=60, what="two grants")
    run_sql(cdc_engine, "UPDATE granted_certificates SET state = 'earned' WHERE user_id = 31")
    records = list(outputs.read_until(3, timeout=60))
    assert first.terminate() == 0

    with cdc_engine.connect() as conn:
        events = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
    before = grants_of(cdc_engine)
    consumed = changes_on_topics(capture)
    # A new group reads every change again from offset 0.
    replay = launch(cdc_env | {"CERT_CONSUMER_GROUP_ID": f"{cdc_env['CERT_CONSUMER_GROUP_ID']}-2"})
    wait_for(
        lambda: replay.metric("cert_consumer_events_consumed_total") >= consumed,
        timeout=60,
        what="every change consumed again",
    )
    wait_for(
        lambda: (
            replay.metric("cert_consumer_pending_evaluations") == 0
            and replay.metric("cert_consumer_evaluations_total") > 0
        ),
        timeout=60,
        what="the replayed triggers evaluated",
    )
    with cdc_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == events
    assert grants_of(cdc_engine) == before
    assert len(outputs.settle(3.0)) == len(records)
    outputs.close()


def changes_on_topics(capture: Capture) -> int:
    """Every record on the change topics now (the sum of their high watermarks)."""
    admin = AdminClient({"bootstrap.servers": capture.bootstrap})
    ends = watermarks.bounds(admin, [(capture.topic(t), 0) for t in CdcTable], timeout=10)
    return sum(end.log_end for end in ends.values())
