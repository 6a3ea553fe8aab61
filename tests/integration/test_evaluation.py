"""The rules against real PostgreSQL: every rule and edge case of DESIGN A2/A3, through the
CLI path and through the batch path, plus batching, concurrency and payload checks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from consumer.cli import main as cli
from consumer.evaluation import decide_keys, evaluate_keys
from consumer.store import torus
from consumer.store.service_tables import outbox
from consumer.testing import seeding

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GOOD = {101: (80.0, 100.0), 102: (9.0, 10.0)}  # 80% and 90%
TWO_PAGES = ((101, True, False), (102, True, False))


@dataclass(frozen=True)
class Case:
    name: str
    expect: tuple[str, str | None, bool | None]  # (decision, reason or state, with_distinction)
    cert: dict[str, Any] | None = field(default_factory=dict)
    second_cert: bool = False
    enabled: bool = True
    learner_status: str = "enrolled"
    pages: tuple[tuple[int, bool | None, bool], ...] = TWO_PAGES
    scores: dict[int, tuple[float | None, float | None]] = field(default_factory=lambda: GOOD)
    posts: dict[str, Any] = field(default_factory=dict)
    grant: tuple[str, bool] | None = None


CASES = [
    Case("no certificate", ("no_change", "no_certificate", None), cert=None),
    Case("certificates disabled", ("no_change", "certificates_disabled", None), enabled=False),
    Case("learner suspended", ("no_change", "not_enrolled", None), learner_status="suspended"),
    Case("two certificate rows", ("no_change", "duplicate_certificates", None), second_cert=True),
    Case("completion only", ("create", "earned", False)),
    Case(
        "completion and distinction",
        ("create", "earned", True),
        scores={101: (95.0, 100.0), 102: (10.0, 10.0)},
    ),
    Case(
        "approval required",
        ("create", "pending", False),
        cert={"requires_instructor_approval": True},
    ),
    Case(
        "57/100 passes 57 exactly",
        ("create", "earned", False),
        cert={"min_percentage_for_completion": 57.0},
        scores={101: (57.0, 100.0), 102: (0.57, 1.0)},
    ),
    Case(
        "completion not met",
        ("no_change", "completion_not_met", None),
        scores={101: (40.0, 100.0), 102: (4.0, 10.0)},
    ),
    Case(
        "every page, not the average",
        ("no_change", "completion_not_met", None),
        scores={101: (100.0, 100.0), 102: (4.0, 10.0)},
    ),
    Case(
        "missing score row is 0",
        ("no_change", "completion_not_met", None),
        scores={101: (80.0, 100.0)},
    ),
    Case(
        "NULL score is 0",
        ("no_change", "completion_not_met", None),
        scores={101: (80.0, 100.0), 102: (None, 10.0)},
    ),
    Case(
        "NULL out_of is 100",
        ("create", "earned", False),
        scores={101: (80.0, 100.0), 102: (60.0, None)},
    ),
    Case(
        "out_of 0 fails",
        ("no_change", "completion_not_met", None),
        scores={101: (80.0, 100.0), 102: (5.0, 0.0)},
    ),
    Case(
        "discussion posts short",
        ("no_change", "participation_not_met", None),
        cert={"required_discussion_posts": 2},
        posts={"discussion": 1},
    ),
    Case(
        "deleted posts do not count",
        ("no_change", "participation_not_met", None),
        cert={"required_discussion_posts": 1},
        posts={"discussion": 1, "status": "deleted"},
    ),
    Case(
        "private notes do not count",
        ("no_change", "participation_not_met", None),
        cert={"required_class_notes": 1},
        posts={"notes": 1, "visibility": "private"},
    ),
    Case(
        "notes and posts met",
        ("create", "earned", False),
        cert={"required_class_notes": 1, "required_discussion_posts": 1},
        posts={"notes": 1, "discussion": 1},
    ),
    Case(
        "no required pages",
        ("no_change", "no_required_pages", None),
        pages=((101, False, False), (102, True, True), (103, None, False)),
    ),
    Case(
        "hidden graded page ignored",
        ("create", "earned", False),
        pages=((101, True, False), (102, True, False), (103, True, True)),
    ),
    Case(
        "custom pages only",
        ("create", "earned", True),
        cert={"assessments_apply_to": "custom", "custom_assessments": (101, 101)},
        scores={101: (95.0, 100.0), 102: (0.0, 10.0)},
    ),
    Case(
        "custom page outside section",
        ("no_change", "required_page_outside_section", None),
        cert={"assessments_apply_to": "custom", "custom_assessments": (101, 999)},
    ),
    Case(
        "NULL completion threshold",
        ("no_change", "settings_incomplete", None),
        cert={"min_percentage_for_completion": None},
    ),
    Case(
        "NULL required posts",
        ("no_change", "settings_incomplete", None),
        cert={"required_discussion_posts": None},
    ),
    Case(
        "NULL distinction threshold creates without",
        ("create", "earned", False),
        cert={"min_percentage_for_distinction": None},
        scores={101: (100.0, 100.0), 102: (10.0, 10.0)},
    ),
    Case("denied is terminal", ("no_change", "denied", None), grant=("denied", False)),
    Case(
        "distinction is terminal",
        ("no_change", "already_with_distinction", None),
        grant=("earned", True),
        scores={101: (100.0, 100.0), 102: (10.0, 10.0)},
    ),
    Case(
        "upgrade earned",
        ("upgrade", "earned", True),
        grant=("earned", False),
        scores={101: (95.0, 100.0), 102: (9.5, 10.0)},
    ),
    Case(
        "upgrade goes pending when approval now required",
        ("upgrade", "pending", True),
        cert={"requires_instructor_approval": True},
        grant=("earned", False),
        scores={101: (95.0, 100.0), 102: (9.5, 10.0)},
    ),
    Case(
        "distinction not met", ("no_change", "distinction_not_met", None), grant=("pending", False)
    ),
    Case(
        "grant skips participation",
        ("upgrade", "earned", True),
        cert={"required_discussion_posts": 5},
        grant=("earned", False),
        scores={101: (95.0, 100.0), 102: (9.5, 10.0)},
    ),
    Case(
        "negative score fails",
        ("no_change", "completion_not_met", None),
        scores={101: (80.0, 100.0), 102: (-5.0, 10.0)},
    ),
    Case(
        "score above out_of passes",
        ("create", "earned", True),
        scores={101: (120.0, 100.0), 102: (11.0, 10.0)},
    ),
    Case(
        "NaN score fails",
        ("no_change", "completion_not_met", None),
        scores={101: (80.0, 100.0), 102: (math.nan, 10.0)},
    ),
]


def seed_case(conn: sa.Connection, case: Case, n: int) -> tuple[int, int]:
    """Seed one case with ids derived from ``n``; returns its (section_id, user_id)."""
    section_id, learner, instructor = 1000 + n, 100_000 + n, 200_000 + n
    seeding.add_users(
        conn,
        [
            {"id": learner, "email": f"l{n}@example.edu", "given_name": "Ada", "family_name": "L"},
            {"id": instructor, "email": f"i{n}@example.edu", "name": "Prof"},
        ],
    )
    seeding.add_section(conn, section_id, enabled=case.enabled)
    seeding.enroll(
        conn, section_id, [instructor], role=seeding.INSTRUCTOR, inserted_at=datetime(2026, 1, 1)
    )
    seeding.enroll(conn, section_id, [learner], status=case.learner_status)
    seeding.add_pages(conn, section_id, case.pages)
    seeding.set_scores(conn, section_id, learner, case.scores)
    seeding.add_posts(conn, section_id, learner, **case.posts)
    if case.cert is not None:
        seeding.add_certificate(
            conn, seeding.Certificate(id=section_id, section_id=section_id, **case.cert)
        )
        if case.second_cert:
            seeding.add_certificate(
                conn, seeding.Certificate(id=section_id + 50_000, section_id=section_id)
            )
        if case.grant is not None:
            state, distinction = case.grant
            seeding.add_grant(
                conn,
                user_id=learner,
                certificate_id=section_id,
                state=state,
                with_distinction=distinction,
            )
    return section_id, learner


def _expected_json(case: Case) -> dict[str, Any]:
    kind, detail, distinction = case.expect
    if kind == "no_change":
        return {"decision": kind, "reason": detail, "state": None, "with_distinction": None}
    return {"decision": kind, "reason": None, "state": detail, "with_distinction": distinction}


def _grant_rows(conn: sa.Connection, user_id: int) -> list[sa.Row[Any]]:
    g = torus.granted_certificates
    return list(conn.execute(sa.select(g).where(g.c.user_id == user_id)))


def _outbox_rows(conn: sa.Connection) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.select(outbox).order_by(outbox.c.id)))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_through_cli(
    case: Case, engine: sa.Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with engine.begin() as conn:
        section_id, user_id = seed_case(conn, case, 1)
    code = cli.main(
        [
            "evaluate",
            "--section-id",
            str(section_id),
            "--user-id",
            str(user_id),
            "--database-url",
            database_url,
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    applied = printed.pop("applied")
    assert printed == _expected_json(case)
    with engine.connect() as conn:
        events = _outbox_rows(conn)
        grants = _grant_rows(conn, user_id)
    changes = case.expect[0] != "no_change"
    assert applied is changes
    assert len(events) == (1 if changes else 0)
    if changes:
        (grant,) = grants
        assert (grant.state, grant.with_distinction) == case.expect[1:]
        expected_type = "approval_requested" if grant.state == "pending" else "certificate_granted"
        assert events[0].event_type == expected_type
        assert events[0].payload["guid"] == grant.guid
        assert events[0].message_key == f"{section_id}:{user_id}"


def test_cases_through_one_batch(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        keys = [seed_case(conn, case, n) for n, case in enumerate(CASES)]
    with engine.begin() as conn:
        result = evaluate_keys(conn, keys, now=NOW)
    for key, case in zip(keys, CASES, strict=True):
        decision = result.decisions[key]
        got = {
            "decision": decision.kind.value,
            "reason": decision.reason.value if decision.reason else None,
            "state": decision.state.value if decision.state else None,
            "with_distinction": decision.with_distinction,
        }
        assert got == _expected_json(case), case.name
    changed = [c for c in CASES if c.expect[0] != "no_change"]
    assert len(result.transitions) == len(changed)
    with engine.connect() as conn:
        assert len(_outbox_rows(conn)) == len(changed)


def test_decision_alone_equals_decision_in_a_batch_of_1000(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        keys = [seed_case(conn, case, n) for n, case in enumerate(CASES)]
        # Fill the batch with learners of one big section with varied scores.
        seeding.add_section(conn, 9)
        seeding.add_certificate(conn, seeding.Certificate(id=9, section_id=9))
        seeding.add_pages(conn, 9, TWO_PAGES)
        filler = list(range(500_000, 500_000 + 1000 - len(keys)))
        seeding.add_users(conn, [{"id": u, "name": f"u{u}"} for u in filler])
        seeding.enroll(conn, 9, filler)
        for u in filler:
            seeding.set_scores(
                conn, 9, u, {101: (float(u % 101), 100.0), 102: (float(u % 11), 10.0)}
            )
        keys += [(9, u) for u in filler]
    with engine.connect() as conn:
        _, together = decide_keys(conn, keys)
        alone = {key: decide_keys(conn, [key])[1][key] for key in keys}
    assert len(together) == 1000
    assert together == alone
    assert {d.kind.value for d in together.values()} == {"no_change", "create", "upgrade"}


def test_a_batch_costs_a_constant_number_of_queries(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        keys = [seed_case(conn, case, n) for n, case in enumerate(CASES)]
    statements: list[int] = []

    def count(*args: Any) -> None:
        statements[-1] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    for batch in (keys[:1], keys):
        statements.append(0)
        with engine.begin() as conn:
            evaluate_keys(conn, batch, now=NOW, apply=False)
    sa.event.remove(engine, "before_cursor_execute", count)
    assert statements[0] == statements[1] == 7


def _evaluate_concurrently(engine: sa.Engine, key: tuple[int, int], threads: int) -> list[int]:
    barrier = threading.Barrier(threads)
    made: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                conn.commit()
                barrier.wait(timeout=30)
                with conn.begin():
                    result = evaluate_keys(conn, [key], now=NOW)
                made.append(len(result.transitions))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors, errors
    return made


@pytest.mark.parametrize("grant", [None, ("earned", False)], ids=["create", "upgrade"])
def test_eight_concurrent_evaluators_make_one_transition(engine: sa.Engine, grant: Any) -> None:
    case = Case(
        "race",
        ("create", "earned", True),
        grant=grant,
        scores={101: (95.0, 100.0), 102: (10.0, 10.0)},
    )
    with engine.begin() as conn:
        key = seed_case(conn, case, 7)
    made = _evaluate_concurrently(engine, key, threads=8)
    assert sorted(made) == [0] * 7 + [1]
    with engine.connect() as conn:
        (row,) = _grant_rows(conn, key[1])
        events = _outbox_rows(conn)
    assert row.with_distinction is True
    assert len(events) == 1
    assert events[0].payload["guid"] == row.guid


def test_create_sets_issuer_and_payload(engine: sa.Engine) -> None:
    case = Case(
        "approval", ("create", "pending", False), cert={"requires_instructor_approval": True}
    )
    with engine.begin() as conn:
        section_id, learner = seed_case(conn, case, 3)
        # A content developer who is also an instructor appears once; a suspended one never.
        seeding.add_users(
            conn,
            [{"id": 7, "name": "Both", "email": "b@x"}, {"id": 8, "name": "Gone", "email": "g@x"}],
        )
        seeding.enroll(conn, section_id, [7], role=seeding.CONTENT_DEVELOPER)
        conn.execute(
            sa.insert(torus.enrollments_context_roles).from_select(
                ["enrollment_id", "context_role_id"],
                sa.select(torus.enrollments.c.id, sa.literal(seeding.INSTRUCTOR)).where(
                    torus.enrollments.c.user_id == 7
                ),
            )
        )
        seeding.enroll(conn, section_id, [8], role=seeding.INSTRUCTOR, status="suspended")
    with engine.begin() as conn:
        evaluate_keys(conn, [(section_id, learner)], now=NOW)
    with engine.connect() as conn:
        (grant,) = _grant_rows(conn, learner)
        (event,) = _outbox_rows(conn)
    assert grant.issued_by == 200_003  # the instructor enrolled first
    assert grant.issued_at == datetime(2026, 11, 25, 12, 0)
    assert str(uuid.UUID(grant.guid)) == grant.guid
    payload = event.payload
    assert payload["student"] == {"user_id": learner, "name": "L, Ada", "email": "l3@example.edu"}
    assert payload["certificate_label"] == "Certificate of Completion"
    assert payload["certificate_type"] == "COMPLETION"
    assert payload["course_title"] == f"Course {section_id}"
    assert [(r["user_id"], r["role"]) for r in payload["recipients"]] == [
        (7, "INSTRUCTOR"),
        (200_003, "INSTRUCTOR"),
    ]


def test_cli_subprocess_dry_run_writes_nothing(engine: sa.Engine, database_url: str) -> None:
    with engine.begin() as conn:
        section_id, user_id = seed_case(conn, CASES[4], 2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.cli",
            "evaluate",
            "--section-id",
            str(section_id),
            "--user-id",
            str(user_id),
            "--dry-run",
            "--database-url",
            database_url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["decision"] == "create"
    with engine.connect() as conn:
        assert _grant_rows(conn, user_id) == []
        assert _outbox_rows(conn) == []


def test_db_upgrade_is_idempotent(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db", "upgrade", "--database-url", database_url]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_missing_database_url_is_a_clear_config_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERT_CONSUMER_DATABASE_URL", raising=False)
    assert cli.main(["evaluate", "--section-id", "1", "--user-id", "1"]) == 2
    assert "CERT_CONSUMER_DATABASE_URL is required" in capsys.readouterr().err
