"""The durable debounce on real PostgreSQL: due times, leases, and no swallowed trigger."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consumer.store import debounce
from consumer.store.service_tables import pending_evaluations as pending
from consumer.testing import seeding

pytestmark = pytest.mark.integration

KEY = (1, 10)


def upsert(
    engine: sa.Engine, *keys: tuple[int, int], quiet: float = 2, max_wait: float = 3
) -> None:
    with engine.begin() as conn:
        debounce.upsert(conn, debounce.TriggerBatch.of(keys), quiet=quiet, max_wait=max_wait)


def row(engine: sa.Engine) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(sa.select(pending)).one()


def claim(engine: sa.Engine, lease: float = 60) -> list[debounce.Claim]:
    with engine.begin() as conn:
        return debounce.claim(conn, limit=100, lease=lease).claims


def make_due(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(pending).values(due_at=sa.func.now() - timedelta(seconds=1)))


def test_due_is_the_earlier_of_quiet_window_and_max_wait(engine) -> None:
    upsert(engine, KEY, KEY, KEY)
    first = row(engine)
    assert first.triggers == 3
    assert first.due_at - first.last_seen_at == timedelta(seconds=2)
    # Later triggers push the quiet window, but never past first_seen + max wait.
    with engine.begin() as conn:
        conn.execute(sa.update(pending).values(first_seen_at=sa.func.now() - timedelta(seconds=2)))
    upsert(engine, KEY)
    later = row(engine)
    assert later.version == 2 and later.triggers == 4
    assert later.due_at == later.first_seen_at + timedelta(seconds=3)
    assert later.due_at < later.last_seen_at + timedelta(seconds=2)


def test_nothing_is_claimed_before_it_is_due(engine) -> None:
    upsert(engine, KEY)
    assert claim(engine) == []
    make_due(engine)
    assert [c.key for c in claim(engine)] == [KEY]
    assert claim(engine) == []  # leased: a second evaluator skips it


def test_a_trigger_during_evaluation_causes_one_more_evaluation(engine) -> None:
    upsert(engine, KEY)
    make_due(engine)
    (claimed,) = claim(engine)
    upsert(engine, KEY)  # arrives while the key is being evaluated
    with engine.begin() as conn:
        debounce.release(conn, [claimed])
    kept = row(engine)
    assert kept.claimed_version is None and kept.lease_until is None
    assert kept.version == claimed.version + 1
    assert kept.triggers == 1  # only the trigger the evaluation did not see
    assert kept.first_seen_at == kept.last_seen_at  # its own debounce window
    make_due(engine)
    (again,) = claim(engine)
    with engine.begin() as conn:
        debounce.release(conn, [again])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(pending)).scalar_one() == 0


def test_an_expired_lease_is_claimed_again(engine) -> None:
    upsert(engine, KEY)
    make_due(engine)
    assert len(claim(engine, lease=0.05)) == 1
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_sleep(0.1)"))
    assert [c.key for c in claim(engine)] == [KEY]


def test_a_section_wide_trigger_expands_to_enrolled_learners_only(engine) -> None:
    with engine.begin() as conn:
        seeding.add_users(conn, [{"id": u} for u in (1, 2, 3, 4)])
        seeding.add_section(conn, 5)
        seeding.enroll(conn, 5, [1, 2])
        seeding.enroll(conn, 5, [3], status="suspended")
        seeding.enroll(conn, 5, [4], role=seeding.INSTRUCTOR)
        touched = debounce.upsert(
            conn, debounce.TriggerBatch.of([(5, 1)], [5]), quiet=0, max_wait=0
        )
    with engine.connect() as conn:
        rows = conn.execute(sa.select(pending.c.user_id, pending.c.triggers)).all()
    assert touched == 2
    assert sorted(rows) == [(1, 2), (2, 1)]


def next_due(engine: sa.Engine, limit: int = 100) -> tuple[list[tuple[int, int]], float | None]:
    with engine.begin() as conn:
        claimed = debounce.claim(conn, limit=limit, lease=60)
    return [c.key for c in claimed.claims], claimed.next_due_in


def test_a_claim_says_when_the_next_key_falls_due(engine) -> None:
    assert next_due(engine) == ([], None)  # nothing pending: sleep as long as allowed
    upsert(engine, KEY, quiet=30, max_wait=60)
    keys, due_in = next_due(engine)
    assert keys == [] and due_in is not None and 29 < due_in <= 30

    make_due(engine)
    upsert(engine, (1, 11), quiet=5, max_wait=60)
    keys, due_in = next_due(engine, limit=1)
    # The claimed key is not its own next due; the key still waiting is, five seconds out.
    assert keys == [KEY] and due_in is not None and 4 < due_in <= 5
    keys, due_in = next_due(engine)
    assert keys == [] and due_in is not None and 4 < due_in <= 5  # the leased key is skipped


def test_a_claim_says_when_a_batch_will_be_due(engine) -> None:
    for user_id, quiet in ((11, 5), (12, 6), (13, 7)):
        upsert(engine, (1, user_id), quiet=quiet, max_wait=60)
    with engine.begin() as conn:
        two = debounce.claim(conn, limit=100, lease=60, min_batch=2)
        four = debounce.claim(conn, limit=100, lease=60, min_batch=4)
    assert two.next_due_in is not None and 4 < two.next_due_in <= 5
    assert two.batch_due_in is not None and 5 < two.batch_due_in <= 6  # the second key's due
    assert four.batch_due_in is None  # only three keys are pending: the linger decides
