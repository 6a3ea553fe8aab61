"""Assembles the output events (certificate-granted, approval-requested) from the database.

The payloads are plain JSON-ready dicts shaped like the Avro schemas in ``schemas/``; they are
stored in the outbox as they are and encoded by the relay. Display rules follow Torus.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from consumer.store.torus import (
    CONTENT_DEVELOPER_ROLE,
    INSTRUCTOR_ROLE,
    enrollments,
    enrollments_context_roles,
    sections,
    users,
)

COMPLETION_LABEL = "Certificate of Completion"
DISTINCTION_LABEL = "Certificate with Distinction"


@dataclass(frozen=True)
class Person:
    user_id: int
    name: str
    email: str | None


@dataclass(frozen=True)
class SectionInfo:
    title: str
    slug: str


def display_name(
    *, guest: bool, name: str | None, given_name: str | None, family_name: str | None
) -> str:
    """Torus's rule: guests are "Guest Student"; "family, given" when both are known."""
    if guest:
        return "Guest Student"
    if given_name and family_name:
        return f"{family_name}, {given_name}"
    return name or family_name or "Unknown"


def certificate_label(with_distinction: bool) -> str:
    return DISTINCTION_LABEL if with_distinction else COMPLETION_LABEL


def _person(row: sa.Row[Any]) -> Person:
    return Person(
        user_id=row.id,
        name=display_name(
            guest=bool(row.guest),
            name=row.name,
            given_name=row.given_name,
            family_name=row.family_name,
        ),
        email=row.email,
    )


def load_people(conn: sa.Connection, user_ids: Iterable[int]) -> dict[int, Person]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    query = sa.select(users).where(users.c.id.in_(ids))
    return {row.id: _person(row) for row in conn.execute(query)}


def load_sections(conn: sa.Connection, section_ids: Iterable[int]) -> dict[int, SectionInfo]:
    ids = sorted(set(section_ids))
    if not ids:
        return {}
    query = sa.select(sections.c.id, sections.c.title, sections.c.slug).where(
        sections.c.id.in_(ids)
    )
    return {row.id: SectionInfo(row.title, row.slug) for row in conn.execute(query)}


def load_recipients(
    conn: sa.Connection, section_ids: Iterable[int]
) -> dict[int, list[dict[str, Any]]]:
    """Instructors and content developers with an 'enrolled' enrollment, one entry per person
    (instructor wins when someone holds both roles), ordered by user id."""
    ids = sorted(set(section_ids))
    if not ids:
        return {}
    roles = enrollments_context_roles
    query = (
        sa.select(enrollments.c.section_id, users, roles.c.context_role_id)
        .join(users, users.c.id == enrollments.c.user_id)
        .join(roles, roles.c.enrollment_id == enrollments.c.id)
        .where(
            enrollments.c.section_id.in_(ids),
            enrollments.c.status == "enrolled",
            roles.c.context_role_id.in_([INSTRUCTOR_ROLE, CONTENT_DEVELOPER_ROLE]),
        )
        .order_by(enrollments.c.section_id, users.c.id, roles.c.context_role_id.desc())
    )
    found: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in conn.execute(query):
        if row.id in found[row.section_id]:
            continue
        person = _person(row)
        role = "INSTRUCTOR" if row.context_role_id == INSTRUCTOR_ROLE else "CONTENT_DEVELOPER"
        found[row.section_id][row.id] = {
            "user_id": person.user_id,
            "name": person.name,
            "email": person.email,
            "role": role,
        }
    return {section_id: list(people.values()) for section_id, people in found.items()}
