"""The relay loop: publishes outbox events in order, then marks them published.

One relay is active per database: it holds a session advisory lock on its own connection, and
others wait for it. Rows are read in id order (per key, the order they were written), produced
with an idempotent producer (acks=all), and marked published only up to the first one whose
delivery failed, so per-key order holds; the rest are retried. A crash between produce and mark
republishes the same events with the same ce_id (at-least-once, deduplicable downstream).

Between batches the relay sleeps on its lock connection, which LISTENs for new outbox rows (the
outbox's insert trigger notifies), so an event is published as soon as its transaction commits
and an idle relay runs no statement but its gauges' (ADR 0013).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC

import sqlalchemy as sa
import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from consumer.config import Settings
from consumer.events.catalogue import EventType
from consumer.events.codec import Codec
from consumer.events.envelope import Outgoing, build_output
from consumer.events.errors import EncodeError, UnregisteredSchemaError
from consumer.events.registration import register_all
from consumer.kafka.clients import report_timeout_seconds
from consumer.kafka.delivery import UndeliveredError, close_producer, deliver
from consumer.observability.dependencies import Dependencies, Dependency, blame
from consumer.observability.logs import Throttled
from consumer.observability.metrics import Metrics
from consumer.pipeline.looping import first_line, run_until_stopped, wait_for
from consumer.store import database, outbox
from consumer.store.notifications import OUTBOX, Listener

log = structlog.get_logger("consumer.pipeline.relay")
LOOP = "relay"
_MAYBE_MISSING = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT}
)
SOURCE = "urn:oli:torus:certificate-consumer"


class RelayLoop:
    """Moves outbox rows to their topics."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        producer: Producer,
        codec: Codec,
        settings: Settings,
        metrics: Metrics,
        stop: threading.Event,
        beat: Callable[[], None],
        dependencies: Dependencies,
    ) -> None:
        self._dependencies = dependencies
        self._retry_log = Throttled(log)
        self._engine = engine
        self._producer = producer
        self._codec = codec
        self._settings = settings
        self._metrics = metrics
        self._stop = stop
        self._beat = beat
        self._report_timeout = report_timeout_seconds(settings)
        self._conn: sa.Connection | None = None
        self._listener: Listener | None = None
        self._gauges_at = 0.0
        self._subjects_checked = False
        self._topics = {
            EventType.CERTIFICATE_GRANTED: settings.granted_topic,
            EventType.APPROVAL_REQUESTED: settings.approval_topic,
        }

    def run(self) -> None:
        try:
            run_until_stopped(
                self._step_with_lock,
                stop=self._stop,
                beat=self._beat,
                max_backoff=self._settings.max_backoff_seconds,
                idle=self._sleep,
                on_transient=self._failed,
                on_success=lambda: self._dependencies.up(Dependency.POSTGRESQL),
                retrying=self._retry_log,
                event="relay_retrying",
            )
        finally:
            close_producer(self._producer)
            self._drop_connection()
            log.info("relay_stopped")

    def _failed(self, exc: Exception) -> None:
        """A transient failure: the dependency it blames is down, and what depended on it is
        redone (the subjects are checked again, the connection and its lock are dropped)."""
        blamed = blame(exc)
        if blamed is Dependency.SCHEMA_REGISTRY:
            self._subjects_checked = False
        if blamed is Dependency.POSTGRESQL:
            self._drop_connection()
            self._metrics.db_failures.labels(LOOP).inc()
        self._dependencies.down(blamed, first_line(exc))

    def _step_with_lock(self) -> bool:
        if self._conn is None:
            # Every statement of the relay's session is one alone (read the queue, mark it).
            conn = database.autocommit(self._engine).connect()
            if not outbox.try_relay_lock(conn):
                conn.close()
                return False  # another relay is active; wait and try again
            log.info("relay_lock_acquired")
            self._listener = Listener(conn, OUTBOX)
            self._conn = conn
        if self._listener is not None:
            self._listener.drain()  # rows notified so far are read by this step
        return self.step(self._conn)

    def _sleep(self) -> None:
        """Until new outbox rows are notified, at most ``idle_sleep_seconds``; without the
        lock (another relay publishes) just that long before trying to take it again."""
        listener = self._listener
        wake = listener.wait if listener is not None else self._stop.wait
        wait_for(wake, self._settings.idle_sleep_seconds, stop=self._stop, beat=self._beat)

    def _drop_connection(self) -> None:
        conn, self._conn, self._listener = self._conn, None, None
        if conn is not None:
            database.discard(conn)  # the session lock and the LISTEN go with the session

    def _check_subjects(self) -> None:
        """With a registry, both output schemas must be registered before anything is sent:
        checked first (so a missed ``schemas register`` is said at start, and the service is
        not ready) and again after every failure, until it passes. With
        CERT_CONSUMER_REGISTER_SCHEMAS the relay registers them itself instead."""
        registry = self._codec.registry
        if self._subjects_checked or registry is None:
            return
        try:
            for event_type, topic in self._topics.items():
                self._codec.check_registered(event_type, topic)
        except UnregisteredSchemaError:
            if not self._settings.register_schemas:
                raise
            for registered in register_all(
                self._codec.catalogue, registry, self._topics, only=self._topics
            ):
                log.info("schema_registered", subject=registered.subject, file=registered.file)
            for event_type, topic in self._topics.items():
                self._codec.check_registered(event_type, topic)
        self._subjects_checked = True
        self._dependencies.up(Dependency.SCHEMA_REGISTRY)

    def step(self, conn: sa.Connection) -> bool:
        """Publish one batch; True when it was full (more rows may be waiting), False when the
        outbox had fewer. Raises TransientError when nothing of the batch could be delivered,
        so the loop backs off instead of spinning."""
        self._refresh_gauges(conn)
        self._check_subjects()
        rows = outbox.unpublished(conn, self._settings.relay_batch_size)
        conn.commit()
        if not rows:
            return False
        started = time.perf_counter()
        ready = self._encode_or_set_aside(conn, rows)
        published, failure = self._publish(ready) if ready else ([], None)
        if published:
            outbox.mark_published(conn, published)
            conn.commit()
        self._metrics.batch_seconds.labels(LOOP).observe(time.perf_counter() - started)
        if ready and not published:
            raise UndeliveredError(f"no outbox event of the batch was delivered: {failure}")
        if published:
            self._dependencies.up(Dependency.KAFKA)
        # A partial delivery is retried at once, like a full batch is followed at once.
        return len(rows) >= self._settings.relay_batch_size or len(published) < len(ready)

    def _encode_or_set_aside(
        self, conn: sa.Connection, rows: list[outbox.Stored]
    ) -> list[tuple[outbox.Stored, Outgoing]]:
        """Encode each row; a row that can never be encoded (a payload edited by hand, a bug)
        is set aside with its error instead of stopping every student's certificate mail."""
        ready = []
        for row in rows:
            try:
                ready.append((row, self._outgoing(row)))
            except (EncodeError, KeyError, ValueError, TypeError) as exc:
                self._metrics.unpublishable.inc()
                log.error(
                    "outbox_event_set_aside",
                    outbox_id=row.id,
                    event_type=row.event_type,
                    error_class=type(exc).__name__,
                    # The text may quote the payload (names, emails): it is kept only in the
                    # row's `error` column, beside the payload itself.
                )
                outbox.set_aside(conn, row.id, f"{type(exc).__name__}: {exc}")
                conn.commit()
        return ready

    def _outgoing(self, row: outbox.Stored) -> Outgoing:
        event_type = EventType(row.event_type)
        return build_output(
            self._codec,
            event_type,
            outbox.avro_record(row.payload),
            source=SOURCE,
            time=row.created_at.astimezone(UTC),
            topic=self._topics[event_type],
        )

    def _publish(self, ready: list[tuple[outbox.Stored, Outgoing]]) -> tuple[list[int], str | None]:
        """Produce every row; return the ids delivered before the first failure, so per-key
        order holds (the failed row and those after it are published again, in order), and
        what that failure was (a missing topic named as such)."""
        outcome = deliver(
            self._producer,
            [outgoing for _, outgoing in ready],
            report_timeout=self._report_timeout,
            stop=self._stop,
        )
        delivered: list[int] = []
        for (row, outgoing), err in zip(ready, outcome, strict=True):
            if err is not None:
                self._metrics.publish_failures.inc()
                log.warning("publish_failed", outbox_id=row.id, error=str(err))
                return delivered, self._failure(err, outgoing.topic)
            delivered.append(row.id)
            self._metrics.published.labels(row.event_type).inc()
        return delivered, None

    def _failure(self, err: KafkaError, topic: str) -> str:
        """The not-ready reason of an undelivered batch. A topic that does not exist (auto-
        create off) usually fails as a plain timeout, before librdkafka gives up on its
        metadata, so the broker is asked whether it exists, and it is named if not."""
        if err.code() in _MAYBE_MISSING and not self._stop.is_set():  # a stop is not held up
            with contextlib.suppress(KafkaException):
                found = self._producer.list_topics(topic, timeout=1).topics.get(topic)
                if found is None or found.error is not None:
                    return (
                        f"output topic {topic} does not exist: create it "
                        "(`cert-consumer topics create`)"
                    )
        return f"{topic}: {err.str()}"

    def _refresh_gauges(self, conn: sa.Connection) -> None:
        if time.monotonic() - self._gauges_at < 5.0:
            return
        self._gauges_at = time.monotonic()
        backlog = outbox.backlog(conn)
        self._metrics.outbox_backlog.set(backlog.unpublished)
        self._metrics.outbox_set_aside.set(backlog.set_aside)
        self._metrics.outbox_oldest_age.set(backlog.oldest_age_s)
