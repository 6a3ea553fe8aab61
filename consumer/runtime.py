"""Wiring and supervision of `cert-consumer run`: the one place that builds real clients.

Builds the engine, codec, Kafka clients, metrics and HTTP endpoints from Settings, runs each
role's loop in its own thread (each with its own connections), and supervises them: SIGTERM or
SIGINT sets the stop event, every loop finishes its batch, commits and closes, and the process
exits 0 within the configured bound. A loop that dies of a non-transient error stops the others
and the process exits 1.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType

import sqlalchemy as sa
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from consumer import endpoints, kafka_clients
from consumer.batches import record_consumer_lag
from consumer.codec import Codec
from consumer.config import Settings
from consumer.contracts import load_catalogue, locate_schemas_dir
from consumer.errors import ConfigError, FatalError
from consumer.evaluator import EvaluatorLoop
from consumer.health import Heartbeats
from consumer.ingest import IngestLoop
from consumer.metrics import Metrics
from consumer.migrations import pending_versions
from consumer.relay import RelayLoop

log = structlog.get_logger("consumer.runtime")


@dataclass
class LoopThread:
    name: str
    thread: threading.Thread = field(init=False)
    failure: BaseException | None = None


def _kafka_error_callback(
    stop: threading.Event, failures: list[str]
) -> Callable[[KafkaError], None]:
    def on_error(err: KafkaError) -> None:
        if err.fatal():
            failures.append(str(err))
            log.error("kafka_fatal_error", error=str(err))
            stop.set()
        else:
            log.warning("kafka_error", error=str(err), code=err.code())

    return on_error


def build_codec(settings: Settings) -> Codec:
    catalogue = load_catalogue(locate_schemas_dir(os.environ))
    if not settings.schema_registry_url:
        return Codec(catalogue)
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415

    return Codec(catalogue, SchemaRegistryClient({"url": settings.schema_registry_url}))


def check_database(engine: sa.Engine) -> None:
    """Refuse to start against a database the service schema was not migrated on."""
    try:
        missing = pending_versions(engine)
    except sa.exc.OperationalError as exc:
        raise FatalError(f"cannot reach the database: {str(exc).splitlines()[0]}") from exc
    if missing:
        raise FatalError(
            f"the cert_consumer schema lacks migrations {missing}; run `cert-consumer db upgrade`"
        )


class Service:
    """The running loops of one process and what they share."""

    def __init__(self, settings: Settings, *, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.metrics = Metrics()
        self.heartbeats = Heartbeats(settings.health_deadline_seconds)
        self.engine = sa.create_engine(
            settings.database_url,
            pool_pre_ping=True,
            pool_size=len(settings.roles) + 2,
            connect_args={"connect_timeout": 5},
        )
        self.kafka_failures: list[str] = []
        self._loops: list[LoopThread] = []

    def _database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def _producer(self) -> Producer:
        config = kafka_clients.producer_config(self.settings)
        config["error_cb"] = _kafka_error_callback(self.stop, self.kafka_failures)
        return Producer(config)

    def _build(self, role: str, codec: Codec) -> Callable[[], None]:
        beat = lambda: self.heartbeats.beat(role)  # noqa: E731 - tiny closure per loop
        if role == "ingest":
            config = kafka_clients.consumer_config(self.settings)
            config["error_cb"] = _kafka_error_callback(self.stop, self.kafka_failures)
            if self.settings.lag_interval_seconds > 0:
                config["statistics.interval.ms"] = int(self.settings.lag_interval_seconds * 1000)
                config["stats_cb"] = lambda stats: record_consumer_lag(self.metrics, stats)
            self.heartbeats.set_ready(role, False)
            return IngestLoop(
                consumer=Consumer(config),
                dlq_producer=self._producer(),
                codec=codec,
                engine=self.engine,
                settings=self.settings,
                metrics=self.metrics,
                stop=self.stop,
                beat=beat,
                set_ready=lambda ready: self.heartbeats.set_ready(role, ready),
            ).run
        if role == "evaluate":
            return EvaluatorLoop(
                engine=self.engine,
                settings=self.settings,
                metrics=self.metrics,
                stop=self.stop,
                beat=beat,
                now=lambda: datetime.now(UTC),
            ).run
        return RelayLoop(
            engine=self.engine,
            producer=self._producer(),
            codec=codec,
            settings=self.settings,
            metrics=self.metrics,
            stop=self.stop,
            beat=beat,
        ).run

    def start(self) -> None:
        check_database(self.engine)
        codec = build_codec(self.settings)
        for role in self.settings.roles:
            try:
                run = self._build(role, codec)
            except KafkaException as exc:
                # librdkafka validates properties when a client is made: a typo in a
                # pass-through property is a configuration error, reported as such.
                raise ConfigError([f"librdkafka rejected the configuration: {exc}"]) from exc
            entry = LoopThread(role)
            entry.thread = threading.Thread(
                target=self._supervised, args=(entry, run), name=role, daemon=True
            )
            self._loops.append(entry)
            self.heartbeats.beat(role)
        for entry in self._loops:
            entry.thread.start()
        log.info("service_started", roles=list(self.settings.roles))

    def _supervised(self, entry: LoopThread, run: Callable[[], None]) -> None:
        try:
            run()
        except BaseException as exc:  # the loop boundary: log once, stop the others
            entry.failure = exc
            log.exception("loop_failed", loop=entry.name, error=str(exc))
            self.stop.set()

    def wait(self) -> int:
        """Block until stopped, then drain within the bound; the process exit code."""
        while not self.stop.wait(0.5):
            pass
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        for entry in self._loops:
            entry.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [e.name for e in self._loops if e.thread.is_alive()]
        self.engine.dispose()
        failed = [e.name for e in self._loops if e.failure is not None]
        if stuck:
            log.error("shutdown_timed_out", loops=stuck)
            return 1
        if failed or self.kafka_failures:
            log.error("service_failed", loops=failed, kafka=self.kafka_failures[:3])
            return 1
        log.info("service_stopped")
        return 0


def run_service(settings: Settings) -> int:
    """`cert-consumer run`: start the loops and the endpoints, serve until a signal."""
    service = Service(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        service.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    if settings.metrics_port:
        server = endpoints.serve(
            settings.metrics_port,
            service.metrics.registry,
            service.heartbeats,
            service._database_ok,
        )
    try:
        service.start()
        return service.wait()
    finally:
        if server is not None:
            server.shutdown()
