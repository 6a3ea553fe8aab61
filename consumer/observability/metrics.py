"""Every Prometheus metric of the service, defined in one place on a registry passed in.

Names follow Prometheus conventions (units in names, counters end in ``_total``); labels are
bounded (topic, partition, kind, outcome, error class), never ids of people or sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUILD_COMMIT_FILE = Path("/etc/cert-consumer/build-commit")  # written by deploy/Dockerfile


def build() -> tuple[str, str]:
    """(version, commit): the installed package's version, and the image's commit file
    ("unknown" outside an image, or for a source tree that is not installed)."""
    try:
        release = version("certificate-consumer")
    except PackageNotFoundError:
        release = "unknown"
    try:
        commit = BUILD_COMMIT_FILE.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        commit = "unknown"
    return release, commit


_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    """The service's metrics on their own registry (tests build one each)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.build_info = Gauge(
            "cert_consumer_build_info",
            "1, labelled with the running release and the commit its image was built from.",
            ["version", "commit"],
            registry=r,
        )
        self.build_info.labels(*build()).set(1)
        self.events_consumed = Counter(
            "cert_consumer_events_consumed_total",
            "Input records consumed, by topic.",
            ["topic"],
            registry=r,
        )
        self.decode_failures = Counter(
            "cert_consumer_decode_failures_total",
            "Input records that could not be decoded, by error class.",
            ["error"],
            registry=r,
        )
        self.unexpected_record_errors = Counter(
            "cert_consumer_unexpected_record_errors_total",
            "Records on which our own code raised something unforeseen (dead-lettered), by "
            "exception class: a bug to look at, never a stopped partition.",
            ["error"],
            registry=r,
        )
        self.dlq_truncations = Counter(
            "cert_consumer_dlq_truncations_total",
            "Dead-letter copies cut or stripped to fit the topic, by what was cut "
            "(key, headers, value).",
            ["part"],
            registry=r,
        )
        self.header_problems = Counter(
            "cert_consumer_header_problems_total",
            "Records decoded from their payload although their CloudEvents headers were off "
            "(headers are read on one record in 16, by offset).",
            ["topic"],
            registry=r,
        )
        self.changes_skipped = Counter(
            "cert_consumer_cdc_records_skipped_total",
            "Debezium change records that are not triggers on purpose, by topic and reason "
            "(delete, snapshot, tombstone, score_unchanged, ...).",
            ["topic", "reason"],
            registry=r,
        )
        self.earned_elsewhere = Counter(
            "cert_consumer_earned_elsewhere_announced_total",
            "Certificates made earned by another writer (an instructor's approval in Torus) "
            "announced with a certificate-granted event.",
            registry=r,
        )
        self.unaddressed_approvals = Counter(
            "cert_consumer_approval_requests_unaddressed_total",
            "Approval requests written for a section with no enrolled instructor or content "
            "developer: nobody is asked to approve.",
            registry=r,
        )
        self.dlq_records = Counter(
            "cert_consumer_dlq_records_total",
            "Records written to the dead-letter topic, by source topic.",
            ["topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "cert_consumer_consumer_lag_messages",
            "High watermark minus committed offset, per partition this process owns.",
            ["topic", "partition"],
            registry=r,
        )
        self.pending_keys = Gauge(
            "cert_consumer_pending_evaluations",
            "Keys waiting in the durable debounce.",
            registry=r,
        )
        self.oldest_due_age = Gauge(
            "cert_consumer_evaluation_lag_seconds",
            "Age of the oldest due pending key (0 when none is due).",
            registry=r,
        )
        self.evaluations = Counter(
            "cert_consumer_evaluations_total",
            "Keys evaluated, by decision kind.",
            ["decision"],
            registry=r,
        )
        self.no_change_reasons = Counter(
            "cert_consumer_no_change_total",
            "NO_CHANGE decisions, by reason.",
            ["reason"],
            registry=r,
        )
        self.transitions = Counter(
            "cert_consumer_transitions_total",
            "Effective transitions written, by kind and resulting state.",
            ["kind", "state"],
            registry=r,
        )
        self.evaluation_failures = Counter(
            "cert_consumer_evaluation_failures_total",
            "Keys whose evaluation failed on their own (bad data); they are parked and retried.",
            registry=r,
        )
        self.triggers_per_evaluation = Histogram(
            "cert_consumer_triggers_per_evaluation",
            "How many triggers one evaluation covered (debounce effectiveness).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "cert_consumer_outbox_backlog_events",
            "Outbox events not yet published, set-aside ones included.",
            registry=r,
        )
        self.outbox_set_aside = Gauge(
            "cert_consumer_outbox_set_aside_events",
            "Outbox events set aside (failed_at) and waiting for `cert-consumer outbox retry`.",
            registry=r,
        )
        self.dependency_up = Gauge(
            "cert_consumer_dependency_up",
            "1 while a dependency answers, 0 while it is down (postgresql, kafka, "
            "schema_registry).",
            ["dependency"],
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "cert_consumer_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event.",
            registry=r,
        )
        self.published = Counter(
            "cert_consumer_events_published_total",
            "Output events published and acknowledged, by event type.",
            ["event_type"],
            registry=r,
        )
        self.unpublishable = Counter(
            "cert_consumer_outbox_set_aside_total",
            "Outbox events that can never be encoded, set aside with their error.",
            registry=r,
        )
        self.publish_failures = Counter(
            "cert_consumer_relay_publish_failures_total",
            "Output events whose delivery failed (they are retried).",
            registry=r,
        )
        self.db_failures = Counter(
            "cert_consumer_database_failures_total",
            "Database operations that failed and were retried, by loop.",
            ["loop"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "cert_consumer_batch_duration_seconds",
            "Time to process one batch, by loop.",
            ["loop"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.evaluation_seconds = Histogram(
            "cert_consumer_evaluation_duration_seconds",
            "Time to load facts, decide and write one batch of keys.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
