"""Shadow mode on the real broker and database: the pipeline decides on live topics, records
each decision, writes no grant and publishes nothing; ``audit --shadow`` then compares it
with what Torus's worker did in the same period, and finds exactly the planted differences."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from consumer.cli import main as cli
from consumer.events.catalogue import EventType
from consumer.store import torus
from consumer.store.service_tables import outbox, pending_evaluations, shadow_decisions
from consumer.testing import seeding as s
from tests.faults.verdict import read_topic
from tests.faults.world import Triggers, score_record
from tests.integration.service import Launcher, Topics, codec, service_env
from tests.support import wait_for

pytestmark = pytest.mark.integration
KEYS = [(1, 101), (1, 102), (1, 104), (2, 201), (2, 202)]


def _world(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        s.add_users(conn, [{"id": u, "name": f"P{u}"} for _, u in KEYS] + [{"id": 9, "name": "I"}])
        for section_id, cert in (
            (1, s.Certificate(1, 1, min_percentage_for_completion=57.0)),
            (2, s.Certificate(2, 2, required_discussion_posts=1)),
        ):
            s.add_section(conn, section_id)
            s.enroll(conn, section_id, [9], role=s.INSTRUCTOR)
            s.enroll(conn, section_id, [u for k, u in KEYS if k == section_id])
            s.add_pages(conn, section_id, [(10 * section_id, True, False)])
            s.add_certificate(conn, cert)
        for user_id, score in {101: 57.0, 102: 95.0, 104: 50.0}.items():
            s.set_scores(conn, 1, user_id, {10: (score, 100.0)})
        for user_id in (201, 202):
            s.set_scores(conn, 2, user_id, {20: (1.0, 1.0)})
        s.add_posts(conn, 2, 201, discussion=1, status="deleted")
        s.add_posts(conn, 2, 202, discussion=1)


def _torus_worker(engine: sa.Engine) -> None:
    """What Torus's CheckCertification worker did meanwhile: its own grants, with its own
    arithmetic (57/100 fails 57 there, so 101 got nothing) and counting (a deleted post)."""
    with engine.begin() as conn:
        s.add_earned(conn, ((102, 1, True), (201, 2, False), (202, 2, True)))
        utc_now = datetime.now(UTC).replace(tzinfo=None)
        g = torus.granted_certificates
        conn.execute(sa.update(g).values(inserted_at=utc_now, updated_at=utc_now))


def test_a_shadow_run_writes_and_publishes_nothing_and_its_audit_finds_the_differences(
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    launch: Launcher,
    capsys: pytest.CaptureFixture[str],
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    _world(engine)
    _torus_worker(engine)
    topics = Topics.create(new_topic)
    service = launch(
        service_env(database_url, kafka_bootstrap, topics, CERT_CONSUMER_SHADOW="true")
    )
    triggers = Triggers(kafka_bootstrap, topics, codec())
    now = datetime.now(UTC)
    for section_id, user_id in KEYS:
        triggers.send(
            topics.scores, EventType.PAGE_SCORE_UPDATED, score_record(section_id, user_id, now)
        )
    triggers.flush()

    def recorded() -> bool:
        with engine.connect() as conn:
            done = conn.execute(sa.select(sa.func.count()).select_from(shadow_decisions)).scalar()
            left = conn.execute(
                sa.select(sa.func.count()).select_from(pending_evaluations)
            ).scalar()
        return done == len(KEYS) and left == 0

    wait_for(recorded, timeout=60, what="every key decided in shadow")
    assert "shadow_mode" in service.logs()
    assert service.terminate() == 0
    with engine.connect() as conn:
        grants = conn.execute(
            sa.select(
                torus.granted_certificates.c.user_id, torus.granted_certificates.c.with_distinction
            )
        ).all()
        assert sorted(grants) == [(102, True), (201, False), (202, True)]  # Torus's rows only
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 0
    assert read_topic(kafka_bootstrap, topics.granted) == []
    assert read_topic(kafka_bootstrap, topics.approval) == []

    args = ["audit", "--shadow", "--since", since.isoformat(), "--database-url", database_url]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["compared"], report["agreements"]) == (5, 3)
    assert report["agreement_rate"] == 0.6
    parted = {(d["section_id"], d["user_id"]): d for d in report["disagreements"]}
    assert set(parted) == {(1, 101), (2, 201)}
    assert (parted[1, 101]["service"], parted[1, 101]["torus"]) == ("create earned", "nothing")
    assert "56.99999999999999" in parted[1, 101]["notes"][0]
    assert (parted[2, 201]["service"], parted[2, 201]["torus"]) == ("nothing", "create earned")
    assert parted[2, 201]["reason"] == "participation_not_met"
    assert parted[2, 201]["notes"] == [
        "1 deleted discussion post(s) and 0 deleted class note(s) are not counted; Torus counts "
        "them"
    ]
