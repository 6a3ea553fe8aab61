"""The evaluator loop: claim due keys, evaluate them in one transaction, release them.

Several evaluator processes can run at once: a claim leases rows with SKIP LOCKED, so two
evaluators never hold the same key, and a crashed one's lease expires. The transitions, their
outbox events and the release of the keys commit together.
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
from consumer.evaluation import evaluate_keys
from consumer.observability.dependencies import Dependencies, Dependency
from consumer.observability.logs import Throttled
from consumer.observability.metrics import Metrics
from consumer.pipeline.looping import Pacing, first_line, is_transient, run_until_stopped
from consumer.store import debounce

log = structlog.get_logger("consumer.pipeline.evaluator")
LOOP = "evaluate"
_GAUGE_INTERVAL_SECONDS = 5.0


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
        self._settings = settings
        self._metrics = metrics
        self._stop = stop
        self._beat = beat
        self._now = now
        self._gauges_at = 0.0

    def run(self) -> None:
        run_until_stopped(
            self.step,
            stop=self._stop,
            beat=self._beat,
            pacing=Pacing(self._settings.max_backoff_seconds, self._settings.idle_sleep_seconds),
            on_transient=self._database_failed,
            on_success=lambda: self._dependencies.up(Dependency.POSTGRESQL),
            retrying=self._retry_log,
            event="evaluator_retrying",
        )
        log.info("evaluator_stopped")

    def _database_failed(self, exc: Exception) -> None:
        self._metrics.db_failures.labels(LOOP).inc()
        self._dependencies.down(Dependency.POSTGRESQL, first_line(exc))

    def step(self) -> bool:
        """Evaluate one batch of due keys; False when none was due."""
        self._refresh_gauges()
        with self._engine.begin() as conn:
            claims = debounce.claim_due(
                conn,
                limit=self._settings.evaluation_batch_size,
                lease=self._settings.lease_seconds,
            )
        if not claims:
            return False
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
        return True

    def _evaluate(self, claims: list[debounce.Claim]) -> None:
        """Decide and write a batch, release its keys: one transaction, all or nothing."""
        with self._engine.begin() as conn:
            result = evaluate_keys(conn, [c.key for c in claims], now=self._now())
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

    def _refresh_gauges(self) -> None:
        if time.monotonic() - self._gauges_at < _GAUGE_INTERVAL_SECONDS:
            return
        self._gauges_at = time.monotonic()
        with self._engine.connect() as conn:
            stats = debounce.stats(conn)
        self._metrics.pending_keys.set(stats.pending)
        self._metrics.oldest_due_age.set(stats.oldest_due_age_s)
