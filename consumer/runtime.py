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
from typing import Any

import sqlalchemy as sa
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from consumer.config import Settings
from consumer.errors import (
    CheckFailedError,
    ConfigError,
    RefusedError,
    StartupTimeoutError,
)
from consumer.events.catalogue import load_catalogue
from consumer.events.codec import Codec
from consumer.kafka import clients
from consumer.kafka import refusals as kafka_refusals
from consumer.observability import endpoints
from consumer.observability.dependencies import Dependencies, Dependency
from consumer.observability.health import Heartbeats
from consumer.observability.logs import Throttled, kafka_logger
from consumer.observability.metrics import Metrics
from consumer.pipeline.evaluator import EvaluatorLoop
from consumer.pipeline.ingest import IngestLoop
from consumer.pipeline.looping import Backoff, first_line, is_transient, wait_beating
from consumer.pipeline.relay import RelayLoop
from consumer.store import database
from consumer.store import refusals as database_refusals
from consumer.store.migrations import pending_versions
from consumer.store.torus import missing_access

log = structlog.get_logger("consumer.runtime")
FORCED_EXIT = 130


@dataclass
class LoopThread:
    name: str
    thread: threading.Thread = field(init=False)
    failure: BaseException | None = None


# librdkafka errors that say "the cluster cannot be reached", as opposed to one request failing.
_UNREACHABLE = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE})


def _kafka_error_callback(
    stop: threading.Event,
    *,
    failures: list[str],
    refused: list[str],
    refusals: kafka_refusals.Refusals,
    dependencies: Dependencies,
    client: str,
) -> Callable[[KafkaError], None]:
    warnings = Throttled(log)

    def on_error(err: KafkaError) -> None:
        said = refusals.refusal(err) or kafka_refusals.denial(err, "an operation")
        if said is not None:
            if not refused:
                log.error("kafka_refused", client=client, error=said)
            refused.append(said)
            stop.set()
        elif err.fatal():
            failures.append(str(err))
            log.error("kafka_fatal_error", client=client, error=str(err))
            stop.set()
        elif err.code() in _UNREACHABLE:
            dependencies.down(Dependency.KAFKA, str(err))
        else:
            warnings.warning(
                "kafka_error", err.code(), client=client, error=str(err), code=err.code()
            )

    return on_error


def build_codec(settings: Settings) -> Codec:
    catalogue = load_catalogue(settings.schemas_path)
    if not settings.schema_registry_url:
        return Codec(catalogue)
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: PLC0415

    return Codec(catalogue, SchemaRegistryClient({"url": settings.schema_registry_url}))


def check_database(engine: sa.Engine) -> None:
    """Refuse to start against a database the service schema was not migrated on, or without
    the Torus tables and the role's privileges on them; a database that does not answer
    raises its own (transient) error."""
    missing = pending_versions(engine)
    if missing:
        raise CheckFailedError(
            f"the cert_consumer schema lacks migrations {missing}; run `cert-consumer db upgrade`"
        )
    with engine.connect() as conn:
        lacking = missing_access(conn)
    if lacking:
        raise CheckFailedError(
            f"not a Torus database this role can work on ({', '.join(lacking[:4])}"
            f"{', ...' if len(lacking) > 4 else ''}): check CERT_CONSUMER_DATABASE_URL, and "
            "grant deploy/postgresql/role.sql"
        )


class Service:
    """The running loops of one process and what they share."""

    def __init__(self, settings: Settings, *, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.metrics = Metrics()
        self.dependencies = Dependencies(self.metrics.dependency_up)
        self.heartbeats = Heartbeats(settings.health_deadline_seconds)
        self.engine = database.create_engine(
            settings.database_url, pool_size=len(settings.roles) + 2
        )
        self.kafka_failures: list[str] = []
        self.kafka_refusals: list[str] = []
        self._loops: list[LoopThread] = []

    def _database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    def _client_config(self, config: dict[str, Any], role: str) -> dict[str, Any]:
        """Name, log routing and error handling shared by every client of this process."""
        name = clients.client_id(self.settings, role)
        return config | {
            "client.id": name,
            "logger": kafka_logger(role),
            "error_cb": _kafka_error_callback(
                self.stop,
                failures=self.kafka_failures,
                refused=self.kafka_refusals,
                refusals=kafka_refusals.Refusals.of(self.settings),
                dependencies=self.dependencies,
                client=name,
            ),
        }

    def _producer(self, role: str) -> Producer:
        return Producer(self._client_config(clients.producer_config(self.settings), role))

    def _build(self, role: str, codec: Codec) -> Callable[[], None]:
        beat = lambda: self.heartbeats.beat(role)  # noqa: E731 - tiny closure per loop
        if role == "ingest":
            config = self._client_config(clients.consumer_config(self.settings), role)
            self.heartbeats.set_ready(role, False)
            admin = AdminClient(self._client_config(clients.admin_config(self.settings), "lag"))
            return IngestLoop(
                consumer=Consumer(config),
                admin=admin,
                dlq_producer=self._producer("dead-letters"),
                codec=codec,
                engine=self.engine,
                settings=self.settings,
                metrics=self.metrics,
                stop=self.stop,
                beat=beat,
                set_ready=lambda ready: self.heartbeats.set_ready(role, ready),
                dependencies=self.dependencies,
            ).run
        if role == "evaluate":
            return EvaluatorLoop(
                engine=self.engine,
                settings=self.settings,
                metrics=self.metrics,
                stop=self.stop,
                beat=beat,
                now=lambda: datetime.now(UTC),
                dependencies=self.dependencies,
            ).run
        return RelayLoop(
            engine=self.engine,
            producer=self._producer(role),
            codec=codec,
            settings=self.settings,
            metrics=self.metrics,
            stop=self.stop,
            beat=beat,
            dependencies=self.dependencies,
        ).run

    def _wait_until_reachable(self, what: str, check: Callable[[], None]) -> bool:
        """Run ``check`` until it passes, backing off (with jitter) while it fails transiently:
        not ready, but alive, so an outage at start is no crash loop. False if stopped first;
        StartupTimeoutError past CERT_CONSUMER_STARTUP_TIMEOUT_SECONDS (0: wait for ever).
        Only the database is waited for here: librdkafka clients start without the broker and
        connect later, and the registry's output subjects are the relay's first check."""
        timeout = self.settings.startup_timeout_seconds
        deadline = time.monotonic() + timeout if timeout > 0 else None
        backoff = Backoff(self.settings.max_backoff_seconds)
        waiting = Throttled(log)
        self.heartbeats.set_ready("startup", False)
        beat = lambda: self.heartbeats.beat("startup")  # noqa: E731 - tiny closure
        while True:
            try:
                check()
                break
            except Exception as exc:
                refused = database_refusals.refusal(exc)
                if refused is not None:
                    raise RefusedError(refused) from exc
                if not is_transient(exc):
                    raise
                waiting.warning(
                    "waiting_for_dependency", type(exc), dependency=what, error=first_line(exc)
                )
                if deadline is not None and time.monotonic() > deadline:
                    raise StartupTimeoutError(
                        f"{what} still unreachable after {timeout:g}s "
                        f"(CERT_CONSUMER_STARTUP_TIMEOUT_SECONDS): {first_line(exc)}"
                    ) from exc
                if wait_beating(self.stop, backoff.next_delay(), beat):
                    return False
        self.heartbeats.forget("startup")
        return True

    def start(self) -> bool:
        """Wait for the database, build the loops and start them; False if stopped first."""
        database = lambda: check_database(self.engine)  # noqa: E731 - tiny closure
        if not self._wait_until_reachable(Dependency.POSTGRESQL.value, database):
            return False
        self.dependencies.up(Dependency.POSTGRESQL)
        codec = build_codec(self.settings)
        roles = [r for r in self.settings.roles if not (self.settings.shadow and r == "relay")]
        if self.settings.shadow:
            # Nothing to publish: decisions go to cert_consumer.shadow_decisions (ADR 0016).
            log.warning("shadow_mode", roles=roles)
        for role in roles:
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
        return True

    def _supervised(self, entry: LoopThread, run: Callable[[], None]) -> None:
        try:
            run()
        except RefusedError as exc:  # said in one line, no traceback: nothing is broken here
            entry.failure = exc
            log.error("dependency_refused", loop=entry.name, error=str(exc))
            self.stop.set()
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
        refused = [e.failure for e in self._loops if isinstance(e.failure, RefusedError)]
        if refused or self.kafka_refusals:
            raise refused[0] if refused else RefusedError(self.kafka_refusals[0])
        if failed or self.kafka_failures:
            log.error("service_failed", loops=failed, kafka=self.kafka_failures[:3])
            return 1
        log.info("service_stopped")
        return 0


def run_service(settings: Settings) -> int:
    """`cert-consumer run`: start the loops and the endpoints, serve until a signal.

    The first SIGTERM/SIGINT stops gracefully within the shutdown bound; a second one exits
    at once with code 130 (an operator who presses Ctrl-C twice means it).
    """
    service = Service(settings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if service.stop.is_set():
            log.warning("forced_exit", signal=name)
            os._exit(FORCED_EXIT)
        log.info("stop_requested", signal=name)
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
            service.dependencies,
        )
    try:
        if not service.start():
            log.info("service_stopped", during="startup")
            return 0
        return service.wait()
    finally:
        if server is not None:
            server.shutdown()
