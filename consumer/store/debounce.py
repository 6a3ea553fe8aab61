"""The durable debounce: pending evaluations in PostgreSQL, one row per (section_id, user_id).

Ingest upserts triggers (one statement per consumed batch); the evaluator claims due rows,
evaluates them and releases them. Timing uses the database clock, so every pod agrees on what
is due. due_at = min(last trigger + quiet window, first trigger + max wait).

A claim is a short committed lease (claimed_version, lease_until), not a lock held during the
evaluation, so ingest never waits on an evaluator. A trigger arriving while its key is being
evaluated bumps ``version``; the release then keeps the row (only the version it claimed is
deleted) and the key is evaluated once more: a trigger is never swallowed. A crashed
evaluator's lease expires and the key is claimed again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from consumer.store.facts import Key
from consumer.store.torus import LEARNER_ROLE

_UPSERT = sa.text(
    """
    WITH incoming AS (
        SELECT section_id, user_id, n
        FROM unnest(CAST(:section_ids AS bigint[]), CAST(:user_ids AS bigint[]),
                    CAST(:counts AS bigint[])) AS t(section_id, user_id, n)
        UNION ALL
        SELECT e.section_id, e.user_id, 1
        FROM public.enrollments e
        JOIN public.enrollments_context_roles r ON r.enrollment_id = e.id
        WHERE e.section_id = ANY(CAST(:wide_sections AS bigint[]))
          AND e.status = 'enrolled' AND r.context_role_id = :learner
    ), keyed AS (
        SELECT section_id, user_id, sum(n)::bigint AS n
        FROM incoming GROUP BY section_id, user_id
    )
    INSERT INTO cert_consumer.pending_evaluations AS p
        (section_id, user_id, first_seen_at, last_seen_at, due_at, version, triggers)
    SELECT section_id, user_id, clock_timestamp(), clock_timestamp(),
           clock_timestamp() + make_interval(secs => :quiet), 1, n
    FROM keyed
    ORDER BY section_id, user_id
    ON CONFLICT (section_id, user_id) DO UPDATE SET
        -- A key in flight starts a new debounce window: the evaluation under way saw the
        -- earlier triggers, this one needs its own.
        first_seen_at = CASE WHEN p.claimed_version IS NULL THEN p.first_seen_at
                             ELSE EXCLUDED.first_seen_at END,
        last_seen_at = EXCLUDED.last_seen_at,
        due_at = LEAST(
            EXCLUDED.last_seen_at + make_interval(secs => :quiet),
            CASE WHEN p.claimed_version IS NULL THEN p.first_seen_at
                 ELSE EXCLUDED.first_seen_at END + make_interval(secs => :max_wait)),
        version = p.version + 1,
        triggers = p.triggers + EXCLUDED.triggers
    """
)

_CLAIM = sa.text(
    """
    UPDATE cert_consumer.pending_evaluations AS p
    SET claimed_version = p.version,
        lease_until = clock_timestamp() + make_interval(secs => :lease)
    FROM (
        SELECT section_id, user_id FROM cert_consumer.pending_evaluations
        WHERE due_at <= clock_timestamp()
          AND (lease_until IS NULL OR lease_until < clock_timestamp())
        ORDER BY due_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) AS due
    WHERE p.section_id = due.section_id AND p.user_id = due.user_id
    RETURNING p.section_id, p.user_id, p.version, p.triggers
    """
)

_RELEASE = sa.text(
    """
    WITH claimed AS (
        SELECT * FROM unnest(CAST(:section_ids AS bigint[]), CAST(:user_ids AS bigint[]),
                             CAST(:versions AS bigint[]), CAST(:triggers AS bigint[]))
                      AS c(section_id, user_id, version, triggers)
    ), done AS (
        DELETE FROM cert_consumer.pending_evaluations p USING claimed c
        WHERE p.section_id = c.section_id AND p.user_id = c.user_id AND p.version = c.version
    )
    UPDATE cert_consumer.pending_evaluations p
    SET claimed_version = NULL, lease_until = NULL, triggers = p.triggers - c.triggers
    FROM claimed c
    WHERE p.section_id = c.section_id AND p.user_id = c.user_id AND p.version <> c.version
    """
)


_PARK = sa.text(
    """
    UPDATE cert_consumer.pending_evaluations
    SET claimed_version = NULL, lease_until = NULL,
        due_at = clock_timestamp() + make_interval(secs => :delay)
    WHERE section_id = :section_id AND user_id = :user_id
    """
)


@dataclass(frozen=True)
class TriggerBatch:
    """The keys of one consumed batch, coalesced, and the sections to expand."""

    counts: dict[Key, int]
    wide_sections: frozenset[int]

    @classmethod
    def of(cls, keys: Iterable[Key], wide_sections: Iterable[int] = ()) -> TriggerBatch:
        return cls(dict(Counter(keys)), frozenset(wide_sections))

    def __bool__(self) -> bool:
        return bool(self.counts or self.wide_sections)


@dataclass(frozen=True)
class Claim:
    section_id: int
    user_id: int
    version: int
    triggers: int

    @property
    def key(self) -> Key:
        return (self.section_id, self.user_id)


def upsert(conn: sa.Connection, batch: TriggerBatch, *, quiet: float, max_wait: float) -> int:
    """Record a batch of triggers in one statement; return the number of keys touched.
    A section-wide trigger becomes one per enrolled learner of the section."""
    if not batch:
        return 0
    keys = sorted(batch.counts)
    result = conn.execute(
        _UPSERT,
        {
            "section_ids": [k[0] for k in keys],
            "user_ids": [k[1] for k in keys],
            "counts": [batch.counts[k] for k in keys],
            "wide_sections": sorted(batch.wide_sections),
            "learner": LEARNER_ROLE,
            "quiet": quiet,
            "max_wait": max_wait,
        },
    )
    return int(result.rowcount)


def claim_due(conn: sa.Connection, *, limit: int, lease: float) -> list[Claim]:
    """Lease up to ``limit`` due keys, oldest due first; rows leased by others are skipped."""
    rows = conn.execute(_CLAIM, {"limit": limit, "lease": lease})
    return [Claim(r.section_id, r.user_id, r.version, r.triggers) for r in rows]


def release(conn: sa.Connection, claims: Sequence[Claim]) -> None:
    """Delete the claimed rows still at their claimed version; un-lease the others, which got
    a new trigger while being evaluated and so stay due for one more evaluation."""
    if not claims:
        return
    conn.execute(
        _RELEASE,
        {
            "section_ids": [c.section_id for c in claims],
            "user_ids": [c.user_id for c in claims],
            "versions": [c.version for c in claims],
            "triggers": [c.triggers for c in claims],
        },
    )


def park(conn: sa.Connection, claim: Claim, *, delay: float) -> None:
    """Keep a key whose evaluation fails on its own data, due again after ``delay`` seconds:
    nothing is lost, and the rest of the queue is not held up by it."""
    conn.execute(_PARK, {"section_id": claim.section_id, "user_id": claim.user_id, "delay": delay})
