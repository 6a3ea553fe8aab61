"""Every statement on ``cert_consumer.outbox``: the output events and their publication.

- ``write``: one row per transition, in the evaluation's transaction, its payload assembled
  from the database now (names, labels, recipients; display rules follow Torus). Payloads are
  JSON-ready dicts shaped like the Avro schemas in ``schemas/`` (ADR 0003).
- ``unpublished`` / ``mark_published`` / ``set_aside`` / ``backlog``: the relay's queue, in id
  order; ``try_relay_lock`` makes one relay the publisher per database.
- ``retry_set_aside`` (operators) and ``transitions_since`` (backfill progress).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from consumer.events.catalogue import EventType
from consumer.events.envelope import format_key
from consumer.store.grants import Transition
from consumer.store.torus import (
    CONTENT_DEVELOPER_ROLE,
    INSTRUCTOR_ROLE,
    enrollments,
    enrollments_context_roles,
    sections,
    users,
)

RELAY_LOCK = 0x43455254_52454C41  # any constant unique to this service

_UNPUBLISHED = sa.text(
    """
    SELECT id, event_type, payload, created_at FROM cert_consumer.outbox
    WHERE published_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT :limit
    """
)
_MARK = sa.text(
    "UPDATE cert_consumer.outbox SET published_at = clock_timestamp() "
    "WHERE id = ANY(CAST(:ids AS bigint[]))"
)
_BACKLOG = sa.text(
    """
    SELECT count(*) AS backlog,
           count(*) FILTER (WHERE failed_at IS NOT NULL) AS set_aside,
           coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS oldest
    FROM cert_consumer.outbox WHERE published_at IS NULL
    """
)
_SET_ASIDE = sa.text(
    "UPDATE cert_consumer.outbox SET failed_at = clock_timestamp(), error = :error WHERE id = :id"
)
_RETRY = sa.text(
    """
    UPDATE cert_consumer.outbox SET failed_at = NULL, error = NULL
    WHERE failed_at IS NOT NULL AND published_at IS NULL
      AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))
    RETURNING id
    """
)
# Rows carry the record key (envelope.format_key: "<section_id>:<user_id>"); these sections only.
_TRANSITIONS_SINCE = sa.text(
    """
    SELECT count(*) FROM cert_consumer.outbox
    WHERE created_at >= :since
      AND split_part(message_key, ':', 1)::bigint = ANY(CAST(:sections AS bigint[]))
    """
)
_TOTAL = sa.text("SELECT count(*) FROM cert_consumer.outbox")
# One statement text whatever the batch size (bound arrays, in order, so ids follow the
# transitions): a multi-row VALUES list was a new statement to parse for every batch size. The
# payloads travel as one JSON array, not a jsonb[]: psycopg quotes every element of a text-format
# array with a regular expression, once per double quote of the JSON: 1.2 s of a 4.3 s profile
# of 10,000 granting keys.
_INSERT = sa.text(
    """
    INSERT INTO cert_consumer.outbox (event_id, event_type, message_key, payload)
    SELECT r.event_id, r.event_type, r.message_key, r.payload
    FROM ROWS FROM (unnest(CAST(:event_ids AS uuid[])), unnest(CAST(:types AS text[])),
                    unnest(CAST(:keys AS text[])), jsonb_array_elements(CAST(:payloads AS jsonb)))
         WITH ORDINALITY AS r(event_id, event_type, message_key, payload, n)
    ORDER BY r.n
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
    """
)
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:k)")


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


# --- writing: one event per transition


@dataclass(frozen=True)
class Written:
    """What ``write`` stored: the events new to the outbox (an event id already there keeps its
    first content), and the approval requests that name no instructor."""

    new: frozenset[uuid.UUID]
    unaddressed: tuple[Transition, ...]


def write(conn: sa.Connection, transitions: Sequence[Transition]) -> Written:
    """One outbox row per transition, its payload assembled from the database now; a row whose
    event id is already there is kept as it is (an event id never gets a second content)."""
    if not transitions:
        return Written(frozenset(), ())
    people = load_people(conn, [t.user_id for t in transitions])
    sections = load_sections(conn, [t.section_id for t in transitions])
    pending_sections = [
        t.section_id for t in transitions if t.event_type is EventType.APPROVAL_REQUESTED
    ]
    recipients = load_recipients(conn, pending_sections)
    payloads = []
    unaddressed = []
    for t in transitions:
        payload = _payload(t, people.get(t.user_id), sections.get(t.section_id))
        if t.event_type is EventType.APPROVAL_REQUESTED:
            payload["recipients"] = recipients.get(t.section_id, [])
            if not payload["recipients"]:
                unaddressed.append(t)
        else:
            payload["cause"] = t.cause.value.upper()
        payloads.append(payload)
    params = {
        "event_ids": [t.event_id for t in transitions],
        "types": [t.event_type.value for t in transitions],
        "keys": [format_key(t.section_id, t.user_id).decode() for t in transitions],
        "payloads": json.dumps(payloads),
    }
    new = frozenset(conn.execute(_INSERT, params).scalars())
    return Written(new, tuple(unaddressed))


def _payload(t: Transition, person: Person | None, section: SectionInfo | None) -> dict[str, Any]:
    return {
        "event_id": str(t.event_id),
        "granted_certificate_id": t.granted_certificate_id,
        "guid": str(t.guid),
        "state": t.state.value.upper(),
        "with_distinction": t.with_distinction,
        "certificate_label": certificate_label(t.with_distinction),
        "certificate_type": "DISTINCTION" if t.with_distinction else "COMPLETION",
        "student": {
            "user_id": t.user_id,
            "name": person.name if person else "Unknown",
            "email": person.email if person else None,
        },
        "course_title": section.title if section else "",
        "section_id": t.section_id,
        "section_slug": section.slug if section else "",
        "issued_at": t.issued_at.replace(tzinfo=UTC).isoformat(),
    }


def avro_record(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The stored JSON payload in the shape the Avro writer wants (datetimes, not strings)."""
    record = dict(payload)
    record["issued_at"] = datetime.fromisoformat(str(payload["issued_at"]))
    return record


# --- the relay's queue


@dataclass(frozen=True)
class Stored:
    """An outbox row waiting to be published."""

    id: int
    event_type: str
    payload: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Backlog:
    unpublished: int  # set-aside rows included
    set_aside: int
    oldest_age_s: float


def try_relay_lock(conn: sa.Connection) -> bool:
    """Take the session lock that makes this connection's relay the one publisher; False when
    another relay holds it. It goes with the session, so a dead relay frees it."""
    held = bool(conn.execute(_TRY_LOCK, {"k": RELAY_LOCK}).scalar_one())
    conn.commit()
    return held


def unpublished(conn: sa.Connection, limit: int) -> list[Stored]:
    """Up to ``limit`` rows to publish, in id order (per key, the order they were written)."""
    rows = conn.execute(_UNPUBLISHED, {"limit": limit})
    return [Stored(r.id, r.event_type, r.payload, r.created_at) for r in rows]


def mark_published(conn: sa.Connection, ids: Sequence[int]) -> None:
    conn.execute(_MARK, {"ids": list(ids)})


def set_aside(conn: sa.Connection, outbox_id: int, error: str) -> None:
    """Keep a row that can never be encoded out of the queue, with its error, for an operator."""
    conn.execute(_SET_ASIDE, {"id": outbox_id, "error": error[:2000]})


def backlog(conn: sa.Connection) -> Backlog:
    row = conn.execute(_BACKLOG).one()
    return Backlog(int(row.backlog), int(row.set_aside), float(row.oldest))


def total(conn: sa.Connection) -> int:
    """Every row ever written (the demo's figure; a full count, so not for the loops)."""
    return int(conn.execute(_TOTAL).scalar_one())


# --- operators and backfill


def retry_set_aside(conn: sa.Connection, ids: list[int] | None) -> list[int]:
    """Put set-aside outbox events (all, or those of ``ids``) back in the relay's queue; the
    ids that were. Each keeps its event id, so a consumer that saw it before dedupes it."""
    return sorted(conn.execute(_RETRY, {"ids": ids}).scalars())


def transitions_since(conn: sa.Connection, section_ids: Sequence[int], since: datetime) -> int:
    """Events written for these sections since ``since`` (database clock)."""
    params = {"sections": list(section_ids), "since": since}
    return int(conn.execute(_TRANSITIONS_SINCE, params).scalar_one())
