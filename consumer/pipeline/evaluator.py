"""The evaluator loop: claim due keys, evaluate them in one transaction, release them.

Several evaluator processes can run at once: a claim leases rows with SKIP LOCKED, so two
evaluators never hold the same key, and a crashed one's lease expires. The transitions, their
outbox events and the release of the keys commit together.

It does not poll. Each claim also says when the next key falls due and when
``evaluation_min_batch`` keys will have; the evaluator sleeps until that many are due or the
next one has lingered ``evaluation_linger_seconds``, on a connection that LISTENs for new
triggers: a notification means a key due one quiet window from now at the earliest, so it only
brings the wake-up forward and no statement is run for it. An idle evaluator runs one claim per
``idle_sleep_seconds`` (ADR 0013).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
import structlog

from consumer.config import Settings
from consumer.domain import model
from consumer.evaluation import evaluate_keys, shadow_keys
from consumer.observability.dependencies import Dependencies, Dependency
from consumer.observability.logs import Throttled
from consumer.observability.metrics import Metrics
from consumer.pipeline.looping import first_line, is_transient, run_until_stopped, wait_for
from consumer.store import database, debounce
from consumer.store.notifications import PENDING, Listener

log = structlog.get_logger("consumer.pipeline.evaluator")
LOOP = "evaluate"
_GAUGE_INTERVAL_SECONDS = 5.0


def batch_wait(next_due: float | None, batch_due: float | None, linger: float, cap: float) -> float:
    """Seconds to sleep from the claim: until the batch's keys are due or the first has
    lingered, whichever comes first, never more than ``cap`` nor less than 0."""
    if next_due is None:
        return cap
    due = next_due + linger if batch_due is None else min(next_due + linger, batch_due)
    return max(0.0, min(cap, due))


class EvaluatorLoop:
    """Turns due pending keys into decisions and transitions."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        settings: Settings,
        metrics: Metrics,
        stop: threading.Event,
        beat: Callable[[], None],
        now: Callable[[], datetime],
        dependencies: Dependencies,
    ) -> None:
        self._dependencies = dependencies
        self._retry_log = Throttled(log)
        self._engine = engine
        self._one_statement = database.autocommit(engine)  # claims, gauges, the listener
        self._settings = settings
        self._metrics = metrics
        self._stop = stop
        self._beat = beat
        self._now = now
        self._gauges_at = 0.0
        self._conn: sa.Connection | None = None
        self._listener: Listener | None = None
        self._claimed_at = 0.0
        self._next_due: float | None = None
        self._batch_due: float | None = None

    def run(self) -> None:
        try:
            run_until_stopped(
                self._turn,
                stop=self._stop,
                beat=self._beat,
                max_backoff=self._settings.max_backoff_seconds,
                idle=self._sleep,
                on_transient=self._database_failed,
                on_success=lambda: self._dependencies.up(Dependency.POSTGRESQL),
                retrying=self._retry_log,
                event="evaluator_retrying",
            )
        finally:
            self._drop_listener()
            log.info("evaluator_stopped")

    def _database_failed(self, exc: Exception) -> None:
        self._metrics.db_failures.labels(LOOP).inc()
        self._dependencies.down(Dependency.POSTGRESQL, first_line(exc))
        self._drop_listener()

    def step(self) -> bool:
        """Evaluate one batch of due keys; False when none was due."""
        return self._evaluate_due() > 0

    def _turn(self) -> bool:
        """One batch; True when it was full (more keys are due right now)."""
        if self._listener is not None:
            self._listener.drain()  # notifications of triggers this batch will see anyway
        return self._evaluate_due() >= self._settings.evaluation_batch_size

    def _evaluate_due(self) -> int:
        """Claim, evaluate and release one batch of due keys; the number claimed. Remembers
        when the next key and the next batch fall due (seconds from ``_claimed_at``)."""
        with self._one_statement.connect() as conn:
            self._refresh_gauges(conn)
            claimed = debounce.claim(
                conn,
                limit=self._settings.evaluation_batch_size,
                lease=self._settings.lease_seconds,
                min_batch=self._settings.evaluation_min_batch,
            )
        self._claimed_at = time.monotonic()
        self._next_due, self._batch_due = claimed.next_due_in, claimed.batch_due_in
        claims = claimed.claims
        if not claims:
            return 0
        started = time.perf_counter()
        try:
            self._evaluate(claims)
        except Exception as exc:
            if is_transient(exc):
                raise
            # One bad key must not stop the others: find it by evaluating one key at a time.
            log.warning("batch_failed_isolating", keys=len(claims), error_class=type(exc).__name__)
            for claim in claims:
                self._evaluate_alone(claim)
        self._metrics.evaluation_seconds.observe(time.perf_counter() - started)
        return len(claims)

    # -- sleeping until there is work -----------------------------------------------------------
    def _sleep(self) -> None:
        """Sleep until a batch is due: ``evaluation_min_batch`` keys, or the next key once it
        has lingered; at most ``idle_sleep_seconds``. A notification of new triggers brings
        the wake-up forward to one quiet window and a linger from now at the latest (no key it
        announces is due earlier than a quiet window)."""
        listener = self._listening()
        settings = self._settings
        linger = settings.evaluation_linger_seconds
        wait = batch_wait(self._next_due, self._batch_due, linger, settings.idle_sleep_seconds)
        deadline = self._claimed_at + wait
        soonest = settings.quiet_window_seconds + linger
        stop, beat = self._stop, self._beat
        while wait_for(listener.wait, deadline - time.monotonic(), stop=stop, beat=beat):
            deadline = min(deadline, time.monotonic() + soonest)

    def _listening(self) -> Listener:
        if self._listener is None:
            self._conn = self._one_statement.connect()
            self._listener = Listener(self._conn, PENDING)
        return self._listener

    def _drop_listener(self) -> None:
        conn, self._conn, self._listener = self._conn, None, None
        if conn is not None:
            database.discard(conn)

    def _evaluate(self, claims: list[debounce.Claim]) -> None:
        """Decide and write a batch, release its keys: one transaction, all or nothing."""
        evaluate = shadow_keys if self._settings.shadow else evaluate_keys
        with self._engine.begin() as conn:
            result = evaluate(conn, [c.key for c in claims], now=self._now())
            debounce.release(conn, claims)
        self._record(claims, result.decisions, len(result.transitions))
        for t in result.unaddressed:
            self._metrics.unaddressed_approvals.inc()
            log.warning(
                "approval_request_unaddressed",
                **t.ids(),
                hint="no enrolled instructor or content developer in the section",
            )
        for t in result.transitions:
            self._metrics.transitions.labels(t.kind.value, t.state.value).inc()
            log.info(
                "transition_written",
                **t.ids(),
                kind=t.kind.value,
                state=t.state.value,
                with_distinction=t.with_distinction,
            )

    def _evaluate_alone(self, claim: debounce.Claim) -> None:
        """Evaluate one key of a failed batch; if it fails alone, park it (kept, retried later)."""
        try:
            self._evaluate([claim])
        except Exception as exc:
            if is_transient(exc):
                raise
            self._metrics.evaluation_failures.inc()
            log.error(
                "evaluation_failed",
                section_id=claim.section_id,
                user_id=claim.user_id,
                error_class=type(exc).__name__,
                error=str(exc).splitlines()[0][:300],
                retry_in_s=self._settings.failed_retry_seconds,
            )
            with self._engine.begin() as conn:
                debounce.park(conn, claim, delay=self._settings.failed_retry_seconds)

    def _record(
        self,
        claims: list[debounce.Claim],
        decisions: dict[tuple[int, int], model.Decision],
        transitions: int,
    ) -> None:
        for claim in claims:
            self._metrics.triggers_per_evaluation.observe(max(claim.triggers, 1))
        for decision in decisions.values():
            self._metrics.evaluations.labels(decision.kind.value).inc()
            if decision.reason is not None:
                self._metrics.no_change_reasons.labels(decision.reason.value).inc()
        log.debug("batch_evaluated", keys=len(claims), transitions=transitions)

    def _refresh_gauges(self, conn: sa.Connection) -> None:
        """Every few seconds, on the claim's connection, just before the claim."""
        if time.monotonic() - self._gauges_at < _GAUGE_INTERVAL_SECONDS:
            return
        self._gauges_at = time.monotonic()
        stats = debounce.stats(conn)
        self._metrics.pending_keys.set(stats.pending)
        self._metrics.oldest_due_age.set(stats.oldest_due_age_s)
