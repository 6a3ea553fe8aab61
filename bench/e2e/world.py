"""Torus rows for the keys of a phase: every learner enrolled in a section with a certificate
and two graded pages already scored to pass completion, so the first evaluation of every key
writes a grant and one certificate-granted event (the expensive path, and one output per key
for the latency phase)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa

from bench.e2e.workload import Key
from consumer.store import torus
from consumer.testing import seeding

_CHUNK = 20_000


def seed_passing(engine: sa.Engine, keys: Sequence[Key]) -> None:
    """Users, sections, enrollments, pages, certificates and passing scores for ``keys``."""
    members: dict[int, list[int]] = defaultdict(list)
    for section_id, user_id in keys:
        members[section_id].append(user_id)
    with engine.begin() as conn:
        users = [{"id": u, "name": f"L{u}", "email": f"{u}@x"} for _, u in keys]
        for start in range(0, len(users), _CHUNK):
            seeding.add_users(conn, users[start : start + _CHUNK])
        for section_id, user_ids in sorted(members.items()):
            seeding.add_section(conn, section_id)
            seeding.enroll(conn, section_id, user_ids)
            seeding.add_pages(conn, section_id, [(101, True, False), (102, True, False)])
            seeding.add_certificate(conn, seeding.Certificate(id=section_id, section_id=section_id))
        scores = [
            {"section_id": s, "user_id": u, "resource_id": r, "score": 8.0, "out_of": 10.0}
            for s, u in keys
            for r in (101, 102)
        ]
        for start in range(0, len(scores), _CHUNK):
            conn.execute(sa.insert(torus.resource_accesses), scores[start : start + _CHUNK])


def scalar(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def pending(engine: sa.Engine) -> int:
    return scalar(engine, "SELECT count(*) FROM cert_consumer.pending_evaluations")


def not_yet_due(engine: sa.Engine) -> int:
    return scalar(
        engine,
        "SELECT count(*) FROM cert_consumer.pending_evaluations WHERE due_at > clock_timestamp()",
    )


def unpublished(engine: sa.Engine) -> int:
    return scalar(engine, "SELECT count(*) FROM cert_consumer.outbox WHERE published_at IS NULL")


def outbox_rows(engine: sa.Engine) -> int:
    return scalar(engine, "SELECT count(*) FROM cert_consumer.outbox")


def grants(engine: sa.Engine) -> int:
    return scalar(engine, "SELECT count(*) FROM granted_certificates")


def duplicate_grants(engine: sa.Engine) -> int:
    """(user, certificate) pairs with more than one granted certificate (must be 0)."""
    return scalar(
        engine,
        "SELECT count(*) FROM (SELECT 1 FROM granted_certificates "
        "GROUP BY user_id, certificate_id HAVING count(*) > 1) d",
    )
