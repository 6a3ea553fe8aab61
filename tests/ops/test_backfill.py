"""``backfill`` on a real database: who is queued (enrolled learners only), --dry-run writes
nothing, --wait follows the real evaluator loop; and replayed triggers are harmless."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consumer.cli import main as cli
from consumer.config import load_settings
from consumer.evaluation import evaluate_keys
from consumer.store import debounce
from consumer.store.service_tables import outbox, pending_evaluations
from consumer.testing import seeding
from tests.support import evaluator_running

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EARNS, SHORT, SUSPENDED, INSTRUCTOR, OTHER, DISABLED = 11, 12, 13, 14, 21, 31


def seed(conn: sa.Connection) -> None:
    """Section 1: a learner who earns, one who falls short, a suspended learner and an
    instructor. Section 2: one learner, no certificate. Section 3: certificates disabled."""
    seeding.add_users(
        conn, [{"id": u} for u in (EARNS, SHORT, SUSPENDED, INSTRUCTOR, OTHER, DISABLED)]
    )
    seeding.add_section(conn, 1)
    seeding.add_section(conn, 2)
    seeding.add_section(conn, 3, enabled=False)
    seeding.enroll(conn, 1, [EARNS, SHORT])
    seeding.enroll(conn, 1, [SUSPENDED], status="suspended")
    seeding.enroll(conn, 1, [INSTRUCTOR], role=seeding.INSTRUCTOR)
    seeding.enroll(conn, 2, [OTHER])
    seeding.enroll(conn, 3, [DISABLED])
    seeding.add_certificate(conn, seeding.Certificate(id=1, section_id=1))
    seeding.add_pages(conn, 1, [(101, True, False)])
    seeding.set_scores(conn, 1, EARNS, {101: (80.0, 100.0)})
    seeding.set_scores(conn, 1, SHORT, {101: (10.0, 100.0)})


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        seed(conn)
    return engine


def pending(engine: sa.Engine) -> set[tuple[int, int]]:
    p = pending_evaluations
    with engine.connect() as conn:
        return {
            (r.section_id, r.user_id) for r in conn.execute(sa.select(p.c.section_id, p.c.user_id))
        }


def outbox_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one())


def backfill(database_url: str, *args: str) -> int:
    return cli.main(["backfill", "--database-url", database_url, *args])


def test_one_section_queues_its_enrolled_learners_due_now(seeded, database_url, capsys) -> None:
    assert backfill(database_url, "--section-id", "1") == 0
    assert "1 section(s), enqueued 2 key(s)" in capsys.readouterr().out
    assert pending(seeded) == {(1, EARNS), (1, SHORT)}
    with seeded.connect() as conn:
        late = conn.execute(
            sa.text("SELECT count(*) FROM cert_consumer.pending_evaluations WHERE due_at > now()")
        ).scalar_one()
    assert late == 0


def test_all_enabled_sections_in_chunks(seeded, database_url, capsys) -> None:
    assert backfill(database_url, "--all", "--chunk-sections", "1") == 0
    assert "2 section(s), enqueued 3 key(s)" in capsys.readouterr().out
    assert pending(seeded) == {(1, EARNS), (1, SHORT), (2, OTHER)}


def test_dry_run_counts_and_writes_nothing(seeded, database_url, capsys) -> None:
    assert backfill(database_url, "--all", "--dry-run", "--wait") == 0
    assert "2 section(s), would enqueue 3 key(s)" in capsys.readouterr().out
    assert pending(seeded) == set()


def test_unknown_section(seeded, database_url, capsys) -> None:
    assert backfill(database_url, "--section-id", "999") == 3  # a check failed: no such section
    assert "no section 999" in capsys.readouterr().err


@pytest.fixture
def evaluator(seeded: sa.Engine) -> Iterator[None]:
    """The real evaluator loop, in a thread, for as long as the test runs."""
    settings = load_settings(
        {}, require_database=False, idle_sleep_seconds=0.05, evaluation_linger_seconds=0.05
    )
    with evaluator_running(seeded, settings):
        yield


def test_wait_reports_transitions(seeded, database_url, capsys, evaluator) -> None:
    code = backfill(
        database_url, "--all", "--wait", "--poll-seconds", "0.1", "--wait-timeout", "60"
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all evaluated; transitions made: 1" in out
    assert pending(seeded) == set()
    assert outbox_count(seeded) == 1


def test_wait_times_out_without_evaluators(seeded, database_url, capsys) -> None:
    code = backfill(
        database_url,
        "--section-id",
        "1",
        "--wait",
        "--poll-seconds",
        "0.05",
        "--wait-timeout",
        "0.2",
    )
    assert code == 1
    assert "timed out, 2 still pending; transitions made: 0" in capsys.readouterr().out


def evaluate_pass(engine: sa.Engine, batch: debounce.TriggerBatch) -> int:
    """What the service does with a trigger: upsert, claim when due, evaluate, release."""
    with engine.begin() as conn:
        debounce.upsert(conn, batch, quiet=0, max_wait=0)
    with engine.begin() as conn:
        claims = debounce.claim(conn, limit=100, lease=30).claims
    with engine.begin() as conn:
        result = evaluate_keys(conn, [c.key for c in claims], now=NOW)
        debounce.release(conn, claims)
    return len(result.transitions)


@pytest.mark.parametrize(
    "batch",
    [
        debounce.TriggerBatch.of([(1, EARNS), (1, SHORT)]),
        debounce.TriggerBatch.of([], wide_sections=[1]),
    ],
    ids=["per-key triggers", "section-wide trigger"],
)
def test_replayed_triggers_are_harmless(seeded, batch) -> None:
    assert evaluate_pass(seeded, batch) == 1
    assert outbox_count(seeded) == 1
    for _ in range(2):  # the same triggers again, as a replay delivers them
        assert evaluate_pass(seeded, batch) == 0
    assert outbox_count(seeded) == 1
    assert pending(seeded) == set()
