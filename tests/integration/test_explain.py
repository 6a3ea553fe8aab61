"""``cert-consumer explain`` on a real database: for every learner of a seeded world, the
decision it shows is the one an evaluation makes, with the figures of the learner's rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consumer.cli import main as cli
from consumer.evaluation import evaluate_keys
from consumer.testing import seeding as s
from tests.faults.world import seed_world

pytestmark = pytest.mark.integration


def test_explain_matches_the_evaluation_for_every_learner(
    engine: sa.Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world = seed_world(engine, learners_per_section=6, seed=17)
    with engine.begin() as conn:
        decided = evaluate_keys(conn, world.keys, now=datetime.now(UTC), apply=False).decisions
    kinds = set()
    for section_id, user_id in world.keys:
        args = ["explain", "--section-id", str(section_id), "--user-id", str(user_id)]
        assert cli.main([*args, "--database-url", database_url]) == 0
        shown = json.loads(capsys.readouterr().out)
        decision = decided[(section_id, user_id)]
        assert shown["decision"]["kind"] == decision.kind.value
        assert shown["decision"]["reason"] == (decision.reason.value if decision.reason else None)
        kinds.add(decision.reason.value if decision.reason else decision.kind.value)
        if decision.kind.value == "create":
            assert shown["would_publish"] in ("certificate_granted", "approval_requested")
            assert all(p["passes_completion"] for p in shown["pages"])
    # The world holds grants, approvals, failures, disabled and unenrolled learners.
    assert {"create", "completion_not_met", "certificates_disabled", "not_enrolled"} <= kinds


def _planted(engine: sa.Engine) -> None:
    """Grants as Torus's worker would have left them, beside today's facts."""
    with engine.begin() as conn:
        s.add_users(conn, [{"id": i, "name": f"P{i}"} for i in (101, 102, 103, 104, 201, 202, 203)])
        for section_id, learners, cert in (
            (1, [101, 102, 103, 104], s.Certificate(1, 1, min_percentage_for_completion=57.0)),
            (2, [201, 202, 203], s.Certificate(2, 2, required_discussion_posts=1)),
        ):
            s.add_section(conn, section_id)
            s.enroll(conn, section_id, learners)
            s.add_pages(conn, section_id, [(10 * section_id, True, False)])
            s.add_certificate(conn, cert)
        # 57 of 100 against 57: Torus's float gives 56.99999999999999 and never granted it.
        page = {101: 57.0, 102: 95.0, 103: 95.0, 104: 50.0}
        for user_id, score in page.items():
            s.set_scores(conn, 1, user_id, {10: (score, 100.0)})
        for user_id in (201, 202, 203):
            s.set_scores(conn, 2, user_id, {20: (1.0, 1.0)})
        s.add_posts(conn, 2, 201, discussion=1, status="deleted")
        s.add_posts(conn, 2, 202, discussion=1)
        s.add_posts(conn, 2, 203, discussion=1)
        s.add_earned(
            conn,
            (
                (102, 1, True),
                (103, 1, False),  # owed an upgrade: 95 passes 90 now
                (201, 2, False),  # granted on a deleted post
                (203, 2, True),
            ),
        )


def test_audit_finds_the_planted_disagreements_and_nothing_else(
    engine: sa.Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _planted(engine)
    assert cli.main(["audit", "--all", "--database-url", database_url]) == 0
    report = json.loads(capsys.readouterr().out)
    found = {(f["section_id"], f["user_id"]): (f["verdict"], f["why"]) for f in report["findings"]}
    assert found == {
        (1, 101): ("owed", "create"),  # the float artefact: owed, and explain says why
        (1, 103): ("owed", "upgrade"),
        (2, 201): ("unsupported", "participation_not_met"),
        (2, 202): ("owed", "create"),
    }
    assert report["verdicts"] == {"agrees": 3, "unsupported": 1, "owed": 3}
    assert report["learners"] == 7
    shown = explain_json(database_url, capsys, 1, 101)
    assert shown["notes"] == [
        "page 10: Torus's float arithmetic gives 56.99999999999999% and fails the 57.0 completion "
        "threshold; the exact comparison passes it"
    ]
    assert explain_json(database_url, capsys, 2, 201)["notes"] == [
        "1 deleted discussion post(s) and 0 deleted class note(s) are not counted; Torus counts "
        "them"
    ]


def explain_json(
    database_url: str, capsys: pytest.CaptureFixture[str], section: int, user: int
) -> dict:
    args = ["explain", "--section-id", str(section), "--user-id", str(user)]
    assert cli.main([*args, "--database-url", database_url]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_audit_of_a_world_the_service_evaluated_is_clean(
    engine: sa.Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world = seed_world(engine, learners_per_section=8, seed=5)
    with engine.begin() as conn:
        evaluate_keys(conn, world.keys, now=datetime.now(UTC))
    assert cli.main(["audit", "--all", "--database-url", database_url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["findings"] == []
    assert report["verdicts"]["agrees"] == report["learners"] > 0
