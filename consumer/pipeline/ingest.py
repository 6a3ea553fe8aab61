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

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from consumer.config import Settings
from consumer.errors import FatalError, RefusedError, UnexpectedRecordError
from consumer.evaluation import announce_earned
from consumer.events.codec import Codec
from consumer.events.envelope import Outgoing
from consumer.kafka import refusals, watermarks
from consumer.kafka.clients import max_record_bytes, report_timeout_seconds
from consumer.kafka.dead_letters import FALLBACK_BUDGETS, cut_parts, dead_letter, error_class
from consumer.kafka.delivery import UndeliveredError, close_producer, deliver
from consumer.observability.dependencies import Dependencies, Dependency, blame
from consumer.observability.logs import Throttled
from consumer.observability.metrics import Metrics
from consumer.pipeline.batches import (
    Poison,
    Routes,
    Skipped,
    decode_batch,
    next_offsets,
    partition_lag,
)
from consumer.pipeline.looping import Backoff, first_line, is_transient
from consumer.store import database, debounce
from consumer.store.grants import Transition

log = structlog.get_logger("consumer.pipeline.ingest")
LOOP = "ingest"
_LAG_TIMEOUT = 2.0
_UNKNOWN_TOPIC = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
_TOPICS_CHECK_SECONDS = 10.0  # how often the input topics' existence is asked
_POLL_SECONDS = 0.5  # the longest a stop or a lag refresh waits on an idle topic


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
        admin: AdminClient,
        dlq_producer: Producer,
        codec: Codec,
        engine: sa.Engine,
        settings: Settings,
        metrics: Metrics,
        stop: threading.Event,
        beat: Callable[[], None],
        set_ready: Callable[[bool], None],
        dependencies: Dependencies,
    ) -> None:
        self._dependencies = dependencies
        self._retry_log = Throttled(log)
        self._consumer = consumer
        # Watermarks: asked of the consumer they wait behind its fetches. Dropped at close:
        # an AdminClient has no close(), its threads end when it is released.
        self._admin: AdminClient | None = admin
        self._dlq = dlq_producer
        self._codec = codec
        self._engine = engine
        self._one_statement = database.autocommit(engine)
        self._settings = settings
        self._metrics = metrics
        self._stop = stop
        self._beat = beat
        self._set_ready = set_ready
        self._report_timeout = report_timeout_seconds(settings)
        self._dlq_budget = max_record_bytes(settings)
        self._routes = Routes(settings.accepted_types, settings.cdc_topics)
        self._revoked: set[tuple[str, int]] = set()
        self._lag_due = 0.0
        self._missing_topics: set[str] = set()
        self._topics_due = 0.0
        self._topic_answers: dict[str, Future[Any]] | None = None
        self._paused = False

    # -- rebalance callbacks (run inside consume(), between batches) --------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._revoked.discard((tp.topic, tp.partition))
        log.info("partitions_assigned", partitions=[f"{p.topic}:{p.partition}" for p in partitions])
        self._set_ready(True)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # With auto-commit on, librdkafka commits the stored offsets of revoked partitions
        # itself; a synchronous commit here would wait behind the rebalance it is part of.
        self._revoked.update((tp.topic, tp.partition) for tp in partitions)
        self._forget_lag(partitions)
        log.info("partitions_revoked", partitions=[f"{p.topic}:{p.partition}" for p in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._revoked.update((tp.topic, tp.partition) for tp in partitions)
        self._forget_lag(partitions)
        log.warning("partitions_lost", partitions=[f"{p.topic}:{p.partition}" for p in partitions])

    def _forget_lag(self, partitions: list[TopicPartition]) -> None:
        """A partition this process no longer owns must not be exported (sum() would count
        it twice, here and at its new owner)."""
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def _refresh_checks(self) -> None:
        self._check_topics()
        self._refresh_lag()

    def _refresh_lag(self) -> None:
        """Lag of every owned partition: its high watermark minus its committed offset (or
        minus its low watermark before any commit), asked of the broker so it stays true while
        the partitions are paused, when librdkafka's own statistics stop refreshing. The
        watermarks come from the admin client in two requests for all partitions; asked of the
        consumer, each partition's query waited behind its fetch (500 ms a partition)."""
        interval = self._settings.lag_interval_seconds
        if interval <= 0 or time.monotonic() < self._lag_due:
            return
        self._lag_due = time.monotonic() + interval
        assignment = self._consumer.assignment()
        if not assignment or self._admin is None:
            return
        try:
            committed = self._consumer.committed(assignment, timeout=_LAG_TIMEOUT)
            ends = watermarks.bounds(
                self._admin, [(tp.topic, tp.partition) for tp in committed], timeout=_LAG_TIMEOUT
            )
            for tp in committed:
                end = ends[(tp.topic, tp.partition)]
                lag = partition_lag(tp.offset, end.earliest, end.log_end)
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        except (KafkaException, TimeoutError) as exc:
            self._dependencies.down(Dependency.KAFKA, first_line(exc))
            return
        self._dependencies.up(Dependency.KAFKA)

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
                self._refresh_checks()
                if messages:
                    self._process(messages)
        finally:
            self._close()

    def _consume(self) -> list[Message]:
        """Wait up to 0.5 s for the first record, take what else is already fetched, and when
        that is fewer than ``ingest_min_batch`` wait up to the linger for that many (as a
        producer's linger): ``consume(n, timeout)`` alone waits the whole timeout unless n
        records are there (every quiet-hour trigger was 0.5 s late), taking only what is
        fetched made a trickle of events one upsert each, and lingering for a whole batch held
        a backlog back (11% of the ingest's time)."""
        try:
            first = self._consumer.poll(_POLL_SECONDS)
            if first is None:
                return []
            settings = self._settings
            more = settings.consume_batch_size - 1
            rest = self._consumer.consume(more, timeout=0) if more else []
            # Records still wanted for a minimum batch (never more than a whole batch).
            short = min(settings.ingest_min_batch, settings.consume_batch_size) - 1 - len(rest)
            if settings.ingest_linger_seconds > 0 and short > 0:
                rest += self._consumer.consume(short, timeout=settings.ingest_linger_seconds)
        except KafkaException as exc:
            raise FatalError(f"Kafka consumer failed: {exc}") from exc
        batch = [first, *rest]
        good = []
        for msg in batch:
            error = msg.error()
            if error is None:
                good.append(msg)
            elif error.fatal():
                raise FatalError(f"fatal Kafka consumer error: {error}")
            elif (denied := self._denied(msg.topic(), error)) is not None:
                raise RefusedError(denied)
            elif error.code() in _UNKNOWN_TOPIC:
                self._topic_missing(msg.topic(), error)
            else:
                log.warning(
                    "consumer_error",
                    topic=msg.topic(),
                    partition=msg.partition(),
                    error=str(error),
                    code=error.code(),
                )
        return good

    def _topic_missing(self, topic: str | None, error: KafkaError) -> None:
        """A consumer error saying a subscribed topic does not exist (the classic protocol
        reports one; Kafka 4's consumer protocol reports nothing, hence ``_check_topics``)."""
        text = str(error.str())
        named = topic or next((t for t in self._settings.input_topics if t in text), "?")
        self._set_missing(self._missing_topics | {named})

    def _check_topics(self) -> None:
        """Every ``_TOPICS_CHECK_SECONDS``, ask the broker whether each input topic exists:
        with auto-create off a missing one is otherwise silence, the others being read.
        DescribeTopics, not a metadata request naming the topics, which a broker with
        auto-create on would answer by creating them with its defaults. The request is never
        waited for: its answers are read on a later turn, so a broker that is down cannot
        hold the loop (or a stop) up."""
        if self._admin is None:
            return
        if self._topic_answers is not None:
            if all(f.done() for f in self._topic_answers.values()):
                self._read_topic_answers(self._topic_answers)
                self._topic_answers = None
            return
        if time.monotonic() >= self._topics_due:
            self._topics_due = time.monotonic() + _TOPICS_CHECK_SECONDS
            self._topic_answers = self._admin.describe_topics(
                TopicCollection(list(self._settings.input_topics)), request_timeout=_LAG_TIMEOUT
            )

    def _read_topic_answers(self, answers: dict[str, Future[Any]]) -> None:
        missing = set()
        for topic, answer in answers.items():
            error = answer.exception()
            if error is None:
                continue
            code = (
                error.args[0].code() if isinstance(error, KafkaException) and error.args else None
            )
            if code not in _UNKNOWN_TOPIC:
                return  # a broker that is down or a denial is reported elsewhere
            missing.add(topic)
        self._set_missing(missing)

    def _set_missing(self, missing: set[str]) -> None:
        """Not ready while an input topic is missing, naming it; ready again once it exists."""
        if missing == self._missing_topics:
            return
        self._missing_topics = missing
        if not missing:
            self._dependencies.up(Dependency.KAFKA_TOPICS)
            return
        self._dependencies.down(
            Dependency.KAFKA_TOPICS,
            f"input topic {', '.join(sorted(missing))} does not exist: create it "
            "(`cert-consumer topics create`)",
        )

    def _denied(self, topic: str | None, error: KafkaError) -> str | None:
        """A missing READ ACL, named. The group protocol's heartbeat reports it without the
        topic, so the admin client asks for each input topic's metadata (denied for the topic
        this principal may not read) to say which."""
        if error.code() != KafkaError.TOPIC_AUTHORIZATION_FAILED or topic:
            return refusals.denial(error, "READ", topic=topic or "", group=self._settings.group_id)
        return refusals.denial(error, "READ", topic=self._unreadable_topic())

    def _unreadable_topic(self) -> str:
        if self._admin is None:
            return ""
        for topic in self._settings.input_topics:
            with contextlib.suppress(KafkaException):
                found = self._admin.list_topics(topic, timeout=_LAG_TIMEOUT).topics.get(topic)
                error = None if found is None else found.error
                if error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    return topic
        return ""

    def _process(self, messages: list[Message]) -> None:
        started = datetime.now(UTC)
        backoff = Backoff(self._settings.max_backoff_seconds)
        handle = self._handle
        with self._metrics.batch_seconds.labels(LOOP).time():
            while True:
                messages = [m for m in messages if (m.topic(), m.partition()) not in self._revoked]
                if not messages:
                    return
                try:
                    handle(messages, started)
                    break
                except RefusedError:
                    raise  # a missing permission: no record of the batch is to blame
                except Exception as exc:
                    if not is_transient(exc):
                        if handle == self._handle_alone:
                            raise  # the dead-letter path itself is broken: a bug
                        log.error("batch_failed_isolating", error=first_line(exc))
                        handle = self._handle_alone
                        continue
                    blamed = blame(exc)
                    if blamed is Dependency.POSTGRESQL:
                        self._metrics.db_failures.labels(LOOP).inc()
                    self._dependencies.down(blamed, first_line(exc))
                    delay = backoff.next_delay()
                    self._retry_log.warning(
                        "ingest_retrying", type(exc), error=first_line(exc), delay_s=round(delay, 2)
                    )
                    self._pause()
                    if not self._service_group_for(delay):
                        return  # stopping: the batch stays uncommitted and is re-read later
        self._dependencies.up(Dependency.POSTGRESQL)
        self._resume()

    def _handle(self, messages: list[Message], first_seen: datetime) -> None:
        decoded = decode_batch(self._codec, messages, self._routes)
        # Most batches are one upsert, atomic alone; announcements join it in one transaction.
        with (self._engine if decoded.earned else self._one_statement).begin() as conn:
            debounce.upsert(
                conn,
                decoded.triggers,
                quiet=self._settings.quiet_window_seconds,
                max_wait=self._settings.max_wait_seconds,
            )
            # Torus's own approvals are announced by the service, never by its shadow.
            earned = () if self._settings.shadow else decoded.earned
            announced = announce_earned(conn, earned, now=datetime.now(UTC))
        self._dead_letter(decoded.poison, first_seen)
        self._count(decoded.skipped, announced)
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
        self._store(messages)

    def _count(self, skipped: list[Skipped], announced: list[Transition]) -> None:
        why = Counter((str(item.message.topic()), item.reason.value) for item in skipped)
        for (topic, reason), count in why.items():
            self._metrics.changes_skipped.labels(topic, reason).inc(count)
        for t in announced:
            self._metrics.earned_elsewhere.inc()
            log.info("earned_elsewhere_announced", **t.ids())

    def _handle_alone(self, messages: list[Message], first_seen: datetime) -> None:
        """A batch failed for a reason that is neither transient nor a record's poison (a
        bug, a value the database refuses): each record alone, and the ones that still fail
        are dead-lettered with the exception's class, so no record ends the loop."""
        for msg in messages:
            try:
                self._handle([msg], first_seen)
            except Exception as exc:
                if is_transient(exc):
                    raise
                self._dead_letter([Poison(msg, UnexpectedRecordError(exc))], first_seen)
                self._store([msg])

    def _store(self, messages: list[Message]) -> None:
        try:
            self._consumer.store_offsets(offsets=next_offsets(messages))
        except KafkaException as exc:
            # A partition no longer assigned: its next owner re-reads these records, which
            # only re-triggers evaluations (harmless); nothing may stop the loop here.
            log.warning("offset_store_failed", error=str(exc))
        for topic, count in Counter(str(msg.topic()) for msg in messages).items():
            self._metrics.events_consumed.labels(topic).inc(count)

    def _dead_letter(self, poison: list[Poison], first_seen: datetime) -> None:
        """Write poison records to the dead-letter topic; only once all are acknowledged may
        their offsets be stored (else the batch is retried and they are written again).

        Each copy is cut to fit the producer's limit first; a copy the topic still refuses
        for its size is made again on the smaller fallback budgets, so none can stall.
        """
        if not poison:
            return
        for item in poison:
            self._log_poison(item)
        waiting = poison
        for budget in (self._dlq_budget, *FALLBACK_BUDGETS):
            copies = [self._dead_letter_copy(item, first_seen, budget) for item in waiting]
            outcome = deliver(
                self._dlq, copies, report_timeout=self._report_timeout, stop=self._stop
            )
            failures = [str(err) for err in outcome if err is not None and not _too_large(err)]
            if failures:
                raise UndeliveredError(f"dead-letter delivery failed: {failures[:3]}")
            self._count_cuts(c for c, err in zip(copies, outcome, strict=True) if err is None)
            waiting = [i for i, err in zip(waiting, outcome, strict=True) if _too_large(err)]
            if not waiting:
                break
        if waiting:
            raise UndeliveredError(
                f"the dead-letter topic {self._settings.dlq_topic} refuses even a "
                f"{FALLBACK_BUDGETS[-1]}-byte record; raise its max.message.bytes"
            )
        for item in poison:
            self._metrics.decode_failures.labels(error_class(item.error)).inc()
            self._metrics.dlq_records.labels(str(item.message.topic())).inc()
            if isinstance(item.error, UnexpectedRecordError):
                self._metrics.unexpected_record_errors.labels(error_class(item.error)).inc()

    def _dead_letter_copy(self, item: Poison, first_seen: datetime, budget: int) -> Outgoing:
        topic = self._settings.dlq_topic
        return dead_letter(item.message, item.error, first_seen, topic=topic, budget=budget)

    def _count_cuts(self, copies: Iterable[Outgoing]) -> None:
        for copy in copies:
            for part in cut_parts(copy.headers):
                self._metrics.dlq_truncations.labels(part).inc()

    def _log_poison(self, item: Poison) -> None:
        msg = item.message
        unexpected = isinstance(item.error, UnexpectedRecordError)
        emit = log.error if unexpected else log.warning
        emit(
            "record_failed_unexpectedly" if unexpected else "record_dead_lettered",
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            key=_key_text(msg),
            error_class=error_class(item.error),
            error=str(item.error)[:300],
        )

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
            self._refresh_checks()
        return True

    def _close(self) -> None:
        self._admin = None
        try:
            close_producer(self._dlq)
        finally:
            self._close_consumer()
            log.info("ingest_stopped")

    def _close_consumer(self) -> None:
        """Leave the group within half the shutdown bound, whatever the group is doing.

        No synchronous commit: with auto-commit, close() commits the stored offsets itself as
        it leaves. Under the classic protocol a close during a rebalance waits for the group's
        JoinGroup barrier, which can outlast any bound; then the close is abandoned and the
        process exits anyway. That is safe: what was stored but not committed is re-read by
        the partition's next owner, and re-reading only re-triggers evaluations.
        """
        try:
            self._consumer.commit(asynchronous=True)
        except KafkaException as exc:
            log.debug("final_commit_skipped", error=str(exc))
        closer = threading.Thread(target=self._consumer.close, name="ingest-close", daemon=True)
        closer.start()
        closer.join(self._settings.shutdown_timeout_seconds / 2)
        if closer.is_alive():
            log.warning(
                "consumer_close_abandoned",
                waited_s=self._settings.shutdown_timeout_seconds / 2,
                reason="group rebalance in flight; the next owner re-reads uncommitted records",
            )
