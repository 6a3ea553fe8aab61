"""Backfill: queue every enrolled learner of some sections for evaluation, now.

For a first deployment (nobody was ever evaluated) or after certificate settings changed
outside the event stream. It goes through the same durable debounce as live triggers
(``consumer.debounce.upsert`` with a section-wide trigger, quiet window 0), so the running
evaluators do the work at their own pace and a key already pending is merged, not duplicated.
Sections are enqueued in chunks, one short transaction each, so a huge backfill neither holds
one long transaction nor loses everything to a failure half-way; re-running it is harmless.

Optionally waits until the queued keys are evaluated and counts the transitions made. Must not
import Kafka or the runtime loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import structlog

from consumer.store import debounce, outbox, torus

log = structlog.get_logger("consumer.ops.backfill")
DEFAULT_CHUNK_SECTIONS = 50


@dataclass(frozen=True)
class BackfillSummary:
    """What a backfill did (or, on a dry run, would do)."""

    sections: int
    keys: int
    dry_run: bool
    started_at: datetime  # database clock, for counting the transitions that follow
    finished_at: datetime


@dataclass(frozen=True)
class WaitOutcome:
    remaining: int  # queued keys not yet evaluated
    transitions: int  # outbox events written for these sections since the backfill started

    @property
    def done(self) -> bool:
        return self.remaining == 0


def select_sections(conn: sa.Connection, section_id: int | None) -> list[int]:
    """The one section asked for (if it exists), else every certificate-enabled section."""
    return torus.certificate_sections(conn, only=section_id)


def count_learners(conn: sa.Connection, section_ids: Sequence[int]) -> int:
    """Distinct (section, user) keys a section-wide trigger expands to: what ``enqueue`` queues."""
    return debounce.count_expansion(conn, section_ids)


def enqueue(conn: sa.Connection, section_ids: Sequence[int]) -> int:
    """Queue the sections' learners as due now; returns the keys inserted or bumped."""
    batch = debounce.TriggerBatch.of([], wide_sections=section_ids)
    return debounce.upsert(conn, batch, quiet=0, max_wait=0)


def run_backfill(
    engine: sa.Engine,
    section_ids: Sequence[int],
    *,
    dry_run: bool = False,
    chunk_sections: int = DEFAULT_CHUNK_SECTIONS,
    progress: Callable[[int, int], None] = lambda sections, keys: None,
) -> BackfillSummary:
    """Enqueue (or count) chunk by chunk; ``progress(sections, keys)`` after each chunk."""
    started_at = _db_now(engine)
    keys = 0
    for start in range(0, len(section_ids), chunk_sections):
        chunk = section_ids[start : start + chunk_sections]
        with engine.begin() as conn:
            done = count_learners(conn, chunk) if dry_run else enqueue(conn, chunk)
        keys += done
        log.info("backfill_chunk", sections=len(chunk), keys=done, dry_run=dry_run)
        progress(len(chunk), done)
    summary = BackfillSummary(len(section_ids), keys, dry_run, started_at, _db_now(engine))
    log.info("backfill_done", sections=summary.sections, keys=summary.keys, dry_run=dry_run)
    return summary


def progress_of(
    engine: sa.Engine, section_ids: Sequence[int], summary: BackfillSummary
) -> WaitOutcome:
    """How far the evaluators are. A key counts as remaining while a row queued no later than
    the backfill's end is still pending; a row created later is live traffic, and a key
    re-triggered while being evaluated restarts its window, so it counts as done too."""
    with engine.connect() as conn:
        remaining = debounce.remaining(conn, section_ids, summary.finished_at)
        made = outbox.transitions_since(conn, section_ids, summary.started_at)
    return WaitOutcome(remaining, made)


def wait_evaluated(
    engine: sa.Engine,
    section_ids: Sequence[int],
    summary: BackfillSummary,
    *,
    timeout: float,
    interval: float = 2.0,
    report: Callable[[WaitOutcome], None] = lambda outcome: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> WaitOutcome:
    """Poll until every queued key is evaluated or ``timeout`` seconds pass. Transitions
    include those of live triggers in the same sections meanwhile (they are the same kind)."""
    deadline = clock() + timeout
    while True:
        outcome = progress_of(engine, section_ids, summary)
        report(outcome)
        if outcome.done or clock() >= deadline:
            log.info(
                "backfill_wait_ended", remaining=outcome.remaining, transitions=outcome.transitions
            )
            return outcome
        sleep(interval)


def _db_now(engine: sa.Engine) -> datetime:
    """The database's clock: the debounce and the outbox timestamps use it, not ours."""
    with engine.connect() as conn:
        now: datetime = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
    return now
