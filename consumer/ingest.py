"""The ingest loop: Kafka batches -> triggers -> one pending upsert -> offsets stored.

The pure parts (decoding a batch, dead-letter headers, offsets) are in ``consumer.batches``.

Offsets are stored only after the batch's upsert has committed and its poison records are
acknowledged on the dead-letter topic, so nothing committed is ever unprocessed. While
PostgreSQL is unreachable the assigned partitions are paused, the same batch is retried with
capped exponential backoff, and the consumer keeps servicing the group. Rebalance callbacks run
inside ``consume()``, between batches, so a revoke never splits a batch in flight; records of
partitions revoked during a retry are dropped from the batch (their new owner re-reads them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer import debounce
from consumer.batches import Poison, dead_letter_headers, decode_batch, next_offsets, truncated
from consumer.codec import Codec
from consumer.config import Settings
from consumer.delivery import Outgoing, deliver
from consumer.errors import FatalError, TransientError
from consumer.kafka_clients import report_timeout_seconds
from consumer.metrics import Metrics
from consumer.retry import Backoff, is_transient

log = structlog.get_logger("consumer.ingest")
LOOP = "ingest"


def _too_large(err: KafkaError | None) -> bool:
    return err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE


def _key_text(msg: Message) -> str:
    """The record key for a log line: ids only by contract, cut short if it is garbage."""
    return (msg.key() or b"")[:64].decode("utf-8", "replace")


class IngestLoop:
    """Consumes activity topics and records triggers in the durable debounce."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        dlq_producer: Producer,
        codec: Codec,
        engine: sa.Engine,
        settings: Settings,
        metrics: Metrics,
        stop: threading.Event,
        beat: Callable[[], None],
        set_ready: Callable[[bool], None],
    ) -> None:
        self._consumer = consumer
        self._dlq = dlq_producer
        self._codec = codec
        self._engine = engine
        self._settings = settings
        self._metrics = metrics
        self._stop = stop
        self._beat = beat
        self._set_ready = set_ready
        self._report_timeout = report_timeout_seconds(settings)
        self._revoked: set[tuple[str, int]] = set()
        self._paused = False

    # -- rebalance callbacks (run inside consume(), between batches) --------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._revoked.discard((tp.topic, tp.partition))
        log.info("partitions_assigned", partitions=[f"{p.topic}:{p.partition}" for p in partitions])
        self._set_ready(True)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked.update((tp.topic, tp.partition) for tp in partitions)
        log.info("partitions_revoked", partitions=[f"{p.topic}:{p.partition}" for p in partitions])
        self._commit_stored()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked.update((tp.topic, tp.partition) for tp in partitions)
        log.warning("partitions_lost", partitions=[f"{p.topic}:{p.partition}" for p in partitions])

    def _commit_stored(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset_commit_failed", error=str(exc))

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        self._consumer.subscribe(
            list(self._settings.input_topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self._stop.is_set():
                messages = self._consume()
                self._beat()
                if messages:
                    self._process(messages)
        finally:
            self._close()

    def _consume(self) -> list[Message]:
        try:
            batch = self._consumer.consume(self._settings.consume_batch_size, timeout=0.5)
        except KafkaException as exc:
            raise FatalError(f"Kafka consumer failed: {exc}") from exc
        good = []
        for msg in batch:
            error = msg.error()
            if error is None:
                good.append(msg)
            elif error.fatal():
                raise FatalError(f"fatal Kafka consumer error: {error}")
            else:
                log.warning(
                    "consumer_error",
                    topic=msg.topic(),
                    partition=msg.partition(),
                    error=str(error),
                    code=error.code(),
                )
        return good

    def _process(self, messages: list[Message]) -> None:
        started = datetime.now(UTC)
        backoff = Backoff(self._settings.max_backoff_seconds)
        with self._metrics.batch_seconds.labels(LOOP).time():
            while True:
                messages = [m for m in messages if (m.topic(), m.partition()) not in self._revoked]
                if not messages:
                    return
                try:
                    self._handle(messages, started)
                    break
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self._metrics.db_failures.labels(LOOP).inc()
                    delay = backoff.next_delay()
                    log.warning("ingest_retrying", error=str(exc).splitlines()[0], delay_s=delay)
                    self._pause()
                    if not self._service_group_for(delay):
                        return  # stopping: the batch stays uncommitted and is re-read later
        self._resume()

    def _handle(self, messages: list[Message], first_seen: datetime) -> None:
        decoded = decode_batch(self._codec, messages)
        with self._engine.begin() as conn:
            debounce.upsert(
                conn,
                decoded.triggers,
                quiet=self._settings.quiet_window_seconds,
                max_wait=self._settings.max_wait_seconds,
            )
        self._dead_letter(decoded.poison, first_seen)
        for item in decoded.tolerated:
            msg = item.message
            self._metrics.header_problems.labels(str(msg.topic())).inc()
            log.debug(
                "headers_tolerated",
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                key=_key_text(msg),
                problems=list(item.problems),
            )
        self._consumer.store_offsets(offsets=next_offsets(messages))
        for msg in messages:
            self._metrics.events_consumed.labels(str(msg.topic())).inc()

    def _dead_letter(self, poison: list[Poison], first_seen: datetime) -> None:
        """Write poison records to the dead-letter topic; only once all are acknowledged may
        their offsets be stored (else the batch is retried and they are written again)."""
        if not poison:
            return
        for item in poison:
            msg = item.message
            log.warning(
                "record_dead_lettered",
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                key=_key_text(msg),
                error_class=type(item.error).__name__,
                error=str(item.error)[:300],
            )
        outgoing = [
            Outgoing(
                self._settings.dlq_topic,
                item.message.value(),
                item.message.key(),
                dead_letter_headers(item.message, item.error, first_seen),
            )
            for item in poison
        ]
        timeout = self._report_timeout
        outcome = deliver(self._dlq, outgoing, report_timeout=timeout)
        too_large = [o for o, err in zip(outgoing, outcome, strict=True) if _too_large(err)]
        if too_large:
            # A record the dead-letter topic refuses for its size would block the partition
            # forever: keep its head instead, and say so in a header.
            outcome = [err for err in outcome if not _too_large(err)]
            outcome += deliver(self._dlq, [truncated(o) for o in too_large], report_timeout=timeout)
        failures = [str(err) for err in outcome if err is not None]
        if failures:
            raise TransientError(f"dead-letter delivery failed: {failures[:3]}")
        for item in poison:
            self._metrics.decode_failures.labels(type(item.error).__name__).inc()
            self._metrics.dlq_records.labels(str(item.message.topic())).inc()

    def _pause(self) -> None:
        if not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
            self._set_ready(False)

    def _resume(self) -> None:
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            self._set_ready(True)

    def _service_group_for(self, seconds: float) -> bool:
        """Keep the group membership alive while waiting; False if asked to stop."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop.is_set():
                return False
            for msg in self._consumer.consume(1, timeout=0.2):
                # Paused partitions deliver nothing, but a partition assigned meanwhile
                # might: put it back, it will be read again after the retry.
                if msg.error() is None:
                    self._consumer.seek(
                        TopicPartition(
                            str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
                        )
                    )
            self._beat()
        return True

    def _close(self) -> None:
        self._commit_stored()
        try:
            self._dlq.flush(10)
            self._dlq.close()
        finally:
            self._consumer.close()
            log.info("ingest_stopped")
