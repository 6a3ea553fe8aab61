"""Writes Torus rows for the demo, the tests and the benchmarks (never used in production).

Plain bulk inserts with explicit ids, so a caller can describe a course precisely and in bulk.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from consumer.domain.model import PAGE_RESOURCE_TYPE
from consumer.store import torus

LEARNER, INSTRUCTOR = torus.LEARNER_ROLE, torus.INSTRUCTOR_ROLE
CONTENT_DEVELOPER = torus.CONTENT_DEVELOPER_ROLE


@dataclass(frozen=True)
class Certificate:
    id: int
    section_id: int
    required_discussion_posts: int | None = 0
    required_class_notes: int | None = 0
    min_percentage_for_completion: float | None = 50.0
    min_percentage_for_distinction: float | None = 90.0
    assessments_apply_to: str = "all"
    custom_assessments: Sequence[int] = field(default_factory=tuple)
    requires_instructor_approval: bool = False


def insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        conn.execute(sa.insert(table), list(rows))


def add_users(conn: sa.Connection, users: Iterable[dict[str, object]]) -> None:
    """Users given as partial dicts; missing columns are NULL (guest false)."""
    blank = {"email": None, "name": None, "given_name": None, "family_name": None, "guest": False}
    insert_rows(conn, torus.users, [blank | u for u in users])


def add_section(
    conn: sa.Connection, section_id: int, *, title: str = "", slug: str = "", enabled: bool = True
) -> None:
    insert_rows(
        conn,
        torus.sections,
        [
            {
                "id": section_id,
                "title": title or f"Course {section_id}",
                "slug": slug or f"section-{section_id}",
                "certificate_enabled": enabled,
            }
        ],
    )


def enroll(
    conn: sa.Connection,
    section_id: int,
    user_ids: Sequence[int],
    *,
    role: int = LEARNER,
    status: str = "enrolled",
    inserted_at: datetime | None = None,
) -> None:
    """Enroll users with one context role each; returns nothing, ids come from the sequence."""
    if not user_ids:
        return
    values = [
        {"user_id": u, "section_id": section_id, "status": status}
        | ({"inserted_at": inserted_at} if inserted_at else {})
        for u in user_ids
    ]
    ids = conn.execute(
        sa.insert(torus.enrollments).returning(
            torus.enrollments.c.id, sort_by_parameter_order=True
        ),
        values,
    ).scalars()
    insert_rows(
        conn,
        torus.enrollments_context_roles,
        [{"enrollment_id": i, "context_role_id": role} for i in ids],
    )


def add_certificate(conn: sa.Connection, cert: Certificate) -> None:
    insert_rows(
        conn,
        torus.certificates,
        [
            {
                "id": cert.id,
                "section_id": cert.section_id,
                "required_discussion_posts": cert.required_discussion_posts,
                "required_class_notes": cert.required_class_notes,
                "min_percentage_for_completion": cert.min_percentage_for_completion,
                "min_percentage_for_distinction": cert.min_percentage_for_distinction,
                "assessments_apply_to": cert.assessments_apply_to,
                "custom_assessments": list(cert.custom_assessments),
                "requires_instructor_approval": cert.requires_instructor_approval,
                "title": "Certificate",
            }
        ],
    )


def add_pages(
    conn: sa.Connection,
    section_id: int,
    pages: Sequence[tuple[int, bool | None, bool]],
) -> None:
    """Pages as (resource_id, graded, hidden)."""
    insert_rows(
        conn,
        torus.section_resources,
        [
            {
                "section_id": section_id,
                "resource_id": rid,
                "resource_type_id": PAGE_RESOURCE_TYPE,
                "graded": graded,
                "hidden": hidden,
            }
            for rid, graded, hidden in pages
        ],
    )


def set_scores(
    conn: sa.Connection,
    section_id: int,
    user_id: int,
    scores: dict[int, tuple[float | None, float | None]],
) -> None:
    """Upsert resource_accesses score/out_of by resource id, as grading does."""
    for rid, (score, out_of) in scores.items():
        statement = sa.dialects.postgresql.insert(torus.resource_accesses).values(
            user_id=user_id, section_id=section_id, resource_id=rid, score=score, out_of=out_of
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["resource_id", "user_id", "section_id"],
                set_={"score": score, "out_of": out_of},
            )
        )


def add_posts(
    conn: sa.Connection,
    section_id: int,
    user_id: int,
    *,
    discussion: int = 0,
    notes: int = 0,
    visibility: str = "public",
    status: str = "approved",
) -> None:
    """Discussion posts have no annotated resource; class notes annotate one."""
    base = {"section_id": section_id, "user_id": user_id, "visibility": visibility}
    rows: list[dict[str, object]] = [
        base | {"status": status, "annotated_resource_id": annotated}
        for annotated, count in ((None, discussion), (1, notes))
        for _ in range(count)
    ]
    insert_rows(conn, torus.posts, rows)


def add_grant(
    conn: sa.Connection,
    *,
    user_id: int,
    certificate_id: int,
    state: str,
    with_distinction: bool,
    guid: str = "00000000-0000-4000-8000-000000000000",
) -> int:
    return int(
        conn.execute(
            sa.insert(torus.granted_certificates)
            .values(
                user_id=user_id,
                certificate_id=certificate_id,
                state=state,
                with_distinction=with_distinction,
                guid=guid,
            )
            .returning(torus.granted_certificates.c.id)
        ).scalar_one()
    )


def add_earned(conn: sa.Connection, grants: Iterable[tuple[int, int, bool]]) -> None:
    """Earned grants as (user_id, certificate_id, with_distinction), each with its own guid:
    what Torus's worker leaves behind."""
    for user_id, certificate_id, with_distinction in grants:
        add_grant(
            conn,
            user_id=user_id,
            certificate_id=certificate_id,
            state="earned",
            with_distinction=with_distinction,
            guid=str(uuid.uuid4()),
        )
