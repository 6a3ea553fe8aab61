"""The evaluator loop on real PostgreSQL: a key that cannot be written does not block others."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from consumer.config import load_settings
from consumer.observability.dependencies import Dependencies
from consumer.observability.metrics import Metrics
from consumer.pipeline.evaluator import EvaluatorLoop
from consumer.store import debounce, torus
from consumer.store.service_tables import outbox
from consumer.store.service_tables import pending_evaluations as pending
from consumer.testing import seeding
from tests.integration.conftest import pass_completion, seed_section

pytestmark = pytest.mark.integration
TOO_BIG_FOR_INT4 = 3_000_000_000  # granted_certificates.issued_by is int4, users.id is bigint


def test_a_key_that_fails_alone_is_parked_and_the_batch_goes_on(
    engine: sa.Engine, database_url: str
) -> None:
    with engine.begin() as conn:
        seed_section(conn, 21, [2101])
        pass_completion(conn, 21, 2101)
        # Bad data: the section's earliest enrollment (its issuer) has an id int4 cannot hold.
        seeding.add_users(conn, [{"id": TOO_BIG_FOR_INT4, "name": "Founder"}])
        seeding.add_section(conn, 22)
        seeding.enroll(
            conn, 22, [TOO_BIG_FOR_INT4], role=seeding.INSTRUCTOR, inserted_at=datetime(2020, 1, 1)
        )
        seeding.add_users(conn, [{"id": 2201, "name": "Learner"}])
        seeding.enroll(conn, 22, [2201])
        seeding.add_pages(conn, 22, ((101, True, False), (102, True, False)))
        seeding.add_certificate(conn, seeding.Certificate(id=22, section_id=22))
        pass_completion(conn, 22, 2201)
        debounce.upsert(
            conn, debounce.TriggerBatch.of([(21, 2101), (22, 2201)]), quiet=0, max_wait=0
        )
    metrics = Metrics()
    loop = EvaluatorLoop(
        engine=engine,
        settings=load_settings({"CERT_CONSUMER_DATABASE_URL": database_url}),
        metrics=metrics,
        stop=threading.Event(),
        beat=lambda: None,
        now=lambda: datetime.now(UTC),
        dependencies=Dependencies(metrics.dependency_up),
    )

    assert loop.step() is True
    with engine.connect() as conn:
        granted = conn.execute(sa.select(torus.granted_certificates.c.user_id)).scalars().all()
        events = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
        (parked,) = conn.execute(sa.select(pending)).all()
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
    assert granted == [2101] and events == 1
    assert (parked.section_id, parked.user_id) == (22, 2201)
    assert parked.claimed_version is None
    assert parked.due_at > now + timedelta(seconds=500)  # retried in 10 minutes, not lost
    assert metrics.registry.get_sample_value("cert_consumer_evaluation_failures_total") == 1
    assert loop.step() is False  # nothing else is due; the parked key waits
