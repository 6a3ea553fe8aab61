"""Throughput of the running service on this machine: events/s ingested, evaluations/s,
events/s relayed, with the Kafka broker and PostgreSQL on the same box.

Run: `.venv/bin/python -m bench.bench_runtime [--learners 20000] [--events-per-learner 5]`
(needs a broker: `scripts/kafka.sh start`, or CERT_CONSUMER_BENCH_BOOTSTRAP). Each phase runs one
role alone on the state the previous phase left, so each figure is that loop's own ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import load_settings
from consumer.events.catalogue import EventType, load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec
from consumer.events.envelope import build_headers, format_key
from consumer.observability import logs
from consumer.runtime import Service
from consumer.store import torus
from consumer.store.migrations import upgrade
from consumer.testing import seeding
from consumer.testing.postgres import LocalPostgres

SECTION_SIZE = 1000
REPO = Path(__file__).resolve().parent.parent


def bootstrap() -> str:
    given = os.environ.get("CERT_CONSUMER_BENCH_BOOTSTRAP")
    if given:
        return given
    status = subprocess.run(
        [str(REPO / "scripts" / "kafka.sh"), "status"], capture_output=True, text=True, check=False
    )
    if status.returncode != 0:
        raise SystemExit("no broker: run scripts/kafka.sh start first")
    return status.stdout.strip()


def seed(engine: sa.Engine, learners: int) -> list[tuple[int, int]]:
    """Sections of 1,000 learners who all pass completion (every evaluation writes a grant)."""
    keys = [(1 + i // SECTION_SIZE, 100_000 + i) for i in range(learners)]
    with engine.begin() as conn:
        seeding.add_users(conn, [{"id": u, "name": f"L{u}", "email": f"{u}@x"} for _, u in keys])
        for section_id in sorted({s for s, _ in keys}):
            members = [u for s, u in keys if s == section_id]
            seeding.add_section(conn, section_id)
            seeding.enroll(conn, section_id, members)
            seeding.add_pages(conn, section_id, [(101, True, False), (102, True, False)])
            seeding.add_certificate(conn, seeding.Certificate(id=section_id, section_id=section_id))
        conn.execute(
            sa.insert(torus.resource_accesses),
            [
                {"section_id": s, "user_id": u, "resource_id": r, "score": 8.0, "out_of": 10.0}
                for s, u in keys
                for r in (101, 102)
            ],
        )
    return keys


def produce(servers: str, topic: str, keys: list[tuple[int, int]], per_key: int) -> float:
    codec = Codec(load_catalogue(locate_schemas_dir()))
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20, "enable.idempotence": True})
    headers = build_headers(
        event_id="bench",
        ce_type=codec.catalogue.latest(EventType.PAGE_SCORE_UPDATED).ce_type,
        source="urn:bench",
        time=datetime.now(UTC),
    )
    started = time.perf_counter()
    for _ in range(per_key):
        for section_id, user_id in keys:
            record = {
                "section_id": section_id,
                "user_id": user_id,
                "resource_id": 101,
                "score": 8.0,
                "out_of": 10.0,
                "cause": "GRADED_FINALIZE",
                "occurred_at": datetime.now(UTC),
            }
            value = codec.encode(EventType.PAGE_SCORE_UPDATED, record)
            while True:
                try:
                    producer.produce(topic, value, format_key(section_id, user_id), headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
    producer.flush(120)
    return len(keys) * per_key / (time.perf_counter() - started)


def timed_phase(settings_env: dict[str, str], role: str, done: Callable[[Service], bool]) -> float:
    """Run one role in-process until ``done``; seconds taken."""
    settings = load_settings(settings_env, roles=(role,))
    service = Service(settings)
    service.start()
    started = time.perf_counter()
    waiter = threading.Thread(target=service.wait)
    waiter.start()
    try:
        while not done(service):
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        service.stop.set()
        waiter.join(60)


def scalar(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", type=int, default=20_000)
    parser.add_argument("--events-per-learner", type=int, default=5)
    args = parser.parse_args()
    logs.configure("WARNING", "json")
    servers = bootstrap()
    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"bench-{name}-{suffix}" for name in ("in", "granted", "approval", "dlq")}
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics.values()]).values():
        future.result(30)
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="bench-runtime-")))
    url = server.start()
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            torus.create_torus_tables(conn)
        upgrade(engine)
        keys = seed(engine, args.learners)
        events = len(keys) * args.events_per_learner
        produce_rate = produce(servers, topics["in"], keys, args.events_per_learner)
        env = {
            "CERT_CONSUMER_DATABASE_URL": url,
            "CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": servers,
            "CERT_CONSUMER_GROUP_ID": f"bench-{suffix}",
            "CERT_CONSUMER_SCORES_TOPIC": topics["in"],
            "CERT_CONSUMER_POSTS_TOPIC": "",
            "CERT_CONSUMER_SETTINGS_TOPIC": "",
            "CERT_CONSUMER_GRANTED_TOPIC": topics["granted"],
            "CERT_CONSUMER_APPROVAL_TOPIC": topics["approval"],
            "CERT_CONSUMER_DLQ_TOPIC": topics["dlq"],
            "CERT_CONSUMER_QUIET_WINDOW_SECONDS": "0",
            "CERT_CONSUMER_MAX_WAIT_SECONDS": "0",
            "CERT_CONSUMER_IDLE_SLEEP_SECONDS": "0.02",
            "CERT_CONSUMER_METRICS_PORT": "0",
            "CERT_CONSUMER_LOG_LEVEL": "WARNING",
            "CERT_CONSUMER_LOG_FORMAT": "json",
        }

        def consumed(service: Service) -> bool:
            sample = service.metrics.registry.get_sample_value(
                "cert_consumer_events_consumed_total", {"topic": topics["in"]}
            )
            return (sample or 0) >= events

        ingest_s = timed_phase(env, "ingest", consumed)
        pending = scalar(engine, "SELECT count(*) FROM cert_consumer.pending_evaluations")
        evaluate_s = timed_phase(
            env,
            "evaluate",
            lambda _s: (
                scalar(engine, "SELECT count(*) FROM cert_consumer.pending_evaluations") == 0
            ),
        )
        outbox = scalar(engine, "SELECT count(*) FROM cert_consumer.outbox")
        relay_s = timed_phase(
            env,
            "relay",
            lambda _s: (
                scalar(
                    engine, "SELECT count(*) FROM cert_consumer.outbox WHERE published_at IS NULL"
                )
                == 0
            ),
        )
        report = {
            "machine_cpus": os.cpu_count(),
            "learners": len(keys),
            "events": events,
            "produce_events_per_s": round(produce_rate),
            "ingest_events_per_s": round(events / ingest_s),
            "pending_keys_after_ingest": pending,
            "evaluations_per_s": round(pending / evaluate_s),
            "transitions_written": outbox,
            "relay_events_per_s": round(outbox / relay_s),
        }
        print(json.dumps(report, indent=2))
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "runtime.json").write_text(json.dumps(report, indent=2) + "\n")
        engine.dispose()
    finally:
        server.destroy()
        for future in admin.delete_topics(list(topics.values())).values():
            future.result(30)


if __name__ == "__main__":
    main()
