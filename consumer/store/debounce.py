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
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from consumer.domain.model import Key
from consumer.store.service_tables import pending_evaluations
from consumer.store.torus import enrolled_learners, enrollments

_STATS = sa.text(
    """
    SELECT count(*) AS pending,
           coalesce(extract(epoch FROM clock_timestamp() - min(due_at)
                    FILTER (WHERE due_at <= clock_timestamp())), 0) AS oldest_due_age
    FROM cert_consumer.pending_evaluations
    """
)

_REMAINING = sa.text(
    """
    SELECT count(*) FROM cert_consumer.pending_evaluations
    WHERE section_id = ANY(CAST(:sections AS bigint[])) AND first_seen_at <= :queued_until
    """
)

# The claim also says when the next key falls due, and when the first ``min_batch`` keys will
# have, so an evaluator knows how long it may sleep without a statement of its own: unleased
# rows it did not just claim, read through the due_at index (rows under a live lease, at most a
# batch per evaluator, are skipped on the way).
_CLAIM = sa.text(
    """
    WITH due AS (
        SELECT section_id, user_id FROM cert_consumer.pending_evaluations
        WHERE due_at <= clock_timestamp()
          AND (lease_until IS NULL OR lease_until < clock_timestamp())
        ORDER BY due_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE cert_consumer.pending_evaluations AS p
        SET claimed_version = p.version,
            lease_until = clock_timestamp() + make_interval(secs => :lease)
        FROM due
        WHERE p.section_id = due.section_id AND p.user_id = due.user_id
        RETURNING p.section_id, p.user_id, p.version, p.triggers
    ), waiting AS (
        SELECT extract(epoch FROM n.due_at - clock_timestamp())::float8 AS seconds
        FROM cert_consumer.pending_evaluations AS n
        WHERE (n.lease_until IS NULL OR n.lease_until < clock_timestamp())
          AND NOT EXISTS (
              SELECT 1 FROM due WHERE due.section_id = n.section_id AND due.user_id = n.user_id
          )
        ORDER BY n.due_at
        LIMIT :batch_limit
    )
    SELECT section_id, user_id, version, triggers, NULL::float8 AS next_due,
           NULL::float8 AS batch_due FROM claimed
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, (SELECT seconds FROM waiting ORDER BY seconds LIMIT 1),
           (SELECT seconds FROM waiting ORDER BY seconds OFFSET :batch_offset LIMIT 1)
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


_BIGINTS = ARRAY(sa.BigInteger)


def _seconds(name: str) -> sa.ColumnElement[Any]:
    """The parameter ``name`` (seconds) as an interval."""
    return sa.bindparam(name, type_=sa.Float) * sa.literal_column("interval '1 second'")


def _incoming() -> sa.CTE:
    """A batch as (section_id, user_id, n): its keys with their counts, and one row per
    enrolled learner of each section-wide trigger (``torus.enrolled_learners``, the same
    filter the facts and the backfill use)."""
    explicit = sa.select(
        sa.func.unnest(
            sa.bindparam("section_ids", type_=_BIGINTS),
            sa.bindparam("user_ids", type_=_BIGINTS),
            sa.bindparam("counts", type_=_BIGINTS),
        )
        .table_valued("section_id", "user_id", "n", name="t")
        .render_derived(with_types=False)
    )
    wide = (
        enrolled_learners()
        .add_columns(sa.literal(1, sa.BigInteger).label("n"))
        .where(enrollments.c.section_id == sa.any_(sa.bindparam("wide_sections", type_=_BIGINTS)))
    )
    return sa.union_all(explicit, wide).cte("incoming")


def _upsert_statement() -> sa.Insert:
    """Built once: every batch binds its arrays and timings to the same statement."""
    incoming = _incoming()
    keyed = (
        sa.select(
            incoming.c.section_id,
            incoming.c.user_id,
            sa.cast(sa.func.sum(incoming.c.n), sa.BigInteger).label("n"),
        )
        .group_by(incoming.c.section_id, incoming.c.user_id)
        .cte("keyed")
    )
    # One reading of the clock for the whole batch: a new row's first and last trigger are the
    # same instant, and every key of the batch shares it.
    clock = sa.select(sa.func.clock_timestamp().label("at")).cte("clock")
    now = clock.c.at
    rows = (
        sa.select(
            keyed.c.section_id,
            keyed.c.user_id,
            now,
            now,
            now + _seconds("quiet"),
            sa.literal(1),
            keyed.c.n,
        )
        .select_from(keyed.join(clock, sa.true()))
        .order_by(keyed.c.section_id, keyed.c.user_id)
    )
    p = pending_evaluations
    columns = ["section_id", "user_id", "first_seen_at", "last_seen_at", "due_at", "version"]
    insert = pg_insert(p).from_select([*columns, "triggers"], rows)
    new = insert.excluded
    # A key in flight starts a new debounce window: the evaluation under way saw the earlier
    # triggers, this one needs its own.
    window_start = sa.case(
        (p.c.claimed_version.is_(None), p.c.first_seen_at), else_=new.first_seen_at
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[p.c.section_id, p.c.user_id],
        set_={
            "first_seen_at": window_start,
            "last_seen_at": new.last_seen_at,
            "due_at": sa.func.least(
                new.last_seen_at + _seconds("quiet"), window_start + _seconds("max_wait")
            ),
            "version": p.c.version + 1,
            "triggers": p.c.triggers + new.triggers,
        },
    )
    # SQLAlchemy reads an INSERT's rowcount only when asked to.
    return upsert.execution_options(preserve_rowcount=True)


_UPSERT = _upsert_statement()


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
            "quiet": quiet,
            "max_wait": max_wait,
        },
    )
    return int(result.rowcount)


def count_expansion(conn: sa.Connection, section_ids: Sequence[int]) -> int:
    """Distinct (section, user) keys section-wide triggers of ``section_ids`` expand to."""
    keys = (
        enrolled_learners().where(enrollments.c.section_id.in_(section_ids)).distinct().subquery()
    )
    return int(conn.execute(sa.select(sa.func.count()).select_from(keys)).scalar_one())


@dataclass(frozen=True)
class Claimed:
    """A claim's keys; the seconds until the next key not among them falls due, and until the
    first ``min_batch`` of them have (0 or less: due now; None: nothing, or fewer, pending
    outside a lease)."""

    claims: list[Claim]
    next_due_in: float | None
    batch_due_in: float | None = None


def claim(conn: sa.Connection, *, limit: int, lease: float, min_batch: int = 1) -> Claimed:
    """Lease up to ``limit`` due keys, oldest due first (rows leased by others are skipped),
    and learn when the next one and the next ``min_batch`` fall due, in one statement."""
    claims: list[Claim] = []
    next_due = batch_due = None
    params = {
        "limit": limit,
        "lease": lease,
        "batch_limit": min_batch,
        "batch_offset": min_batch - 1,
    }
    for r in conn.execute(_CLAIM, params):
        if r.section_id is None:
            next_due, batch_due = r.next_due, r.batch_due
        else:
            claims.append(Claim(r.section_id, r.user_id, r.version, r.triggers))
    return Claimed(claims, next_due, batch_due)


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


@dataclass(frozen=True)
class Stats:
    pending: int
    oldest_due_age_s: float  # how long the oldest due key has waited past its due time


def stats(conn: sa.Connection) -> Stats:
    row = conn.execute(_STATS).one()
    return Stats(int(row.pending), float(row.oldest_due_age))


def remaining(conn: sa.Connection, section_ids: Sequence[int], queued_until: datetime) -> int:
    """Keys of these sections still pending that were queued no later than ``queued_until``."""
    params = {"sections": list(section_ids), "queued_until": queued_until}
    return int(conn.execute(_REMAINING, params).scalar_one())
