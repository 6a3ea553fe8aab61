"""Latency of the CDC path on this machine: a learner's passing scores committed in PostgreSQL
-> Debezium (Kafka Connect) -> Kafka -> `cert-consumer run` (debounce, evaluation, outbox,
relay) -> the certificate-granted event read back from Kafka.

Needs a running broker (scripts/kafka.sh start, or CERT_CONSUMER_BENCH_BOOTSTRAP). Starts its
own logical-decoding PostgreSQL and Kafka Connect worker and removes everything at the end.

    .venv/bin/python -m bench.bench_cdc --learners 40 --interval 0.3 --quiet 0.5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.bench_runtime import REPO, bootstrap
from consumer.events.catalogue import load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec
from consumer.store.migrations import upgrade
from consumer.store.torus import create_torus_tables
from consumer.testing import seeding
from consumer.testing.postgres import LocalPostgres, free_port
from tests.cdc.harness import Capture, connect_script


def seed(engine: sa.Engine, learners: list[int]) -> None:
    """One section whose learners have every enrollment but no score yet."""
    with engine.begin() as conn:
        seeding.add_users(conn, [{"id": u, "name": f"L{u}", "email": f"{u}@x"} for u in learners])
        seeding.add_section(conn, 1)
        seeding.enroll(conn, 1, learners)
        seeding.add_pages(conn, 1, [(101, True, False), (102, True, False)])
        seeding.add_certificate(conn, seeding.Certificate(id=1, section_id=1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Arrivals(threading.Thread):
    """Records when each learner's certificate-granted event is read."""

    def __init__(self, servers: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.codec = Codec(load_catalogue(locate_schemas_dir()))
        self.consumer = Consumer(
            {"bootstrap.servers": servers, "group.id": f"lat-{uuid.uuid4().hex[:6]}",
             "auto.offset.reset": "earliest"}
        )  # fmt: skip
        self.consumer.subscribe([topic])
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.consumer.poll(0.05)
            if msg is not None and msg.error() is None:
                record = self.codec.decode(msg.value()).record
                self.seen.setdefault(record["student"]["user_id"], time.monotonic())
        self.consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between commits")
    parser.add_argument("--quiet", type=float, default=0.5, help="debounce quiet window (s)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service")
    args = parser.parse_args()
    servers = bootstrap()
    work = Path(tempfile.mkdtemp(prefix="bench-cdc-"))
    server = LocalPostgres(work / "pg", logical=True)
    admin_url = sa.make_url(server.start())
    engine = sa.create_engine(admin_url)
    with engine.begin() as conn:
        create_torus_tables(conn)
    upgrade(engine)
    learners = list(range(1001, 1001 + args.learners))
    seed(engine, learners)
    started = time.monotonic()
    connect_script(work / "connect", "start", bootstrap=servers)
    connect_start_s = time.monotonic() - started
    capture = Capture(work / "connect", servers, admin_url, admin_url)
    capture.create_topics()
    granted = f"bench-granted-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": servers})
    for name in (granted, f"{granted}-approval", f"{granted}-dlq"):
        admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    service = None
    try:
        started = time.monotonic()
        capture.start_capture()
        register_s = time.monotonic() - started
        env = {
            "CERT_CONSUMER_DATABASE_URL": admin_url.render_as_string(hide_password=False),
            "CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": servers,
            "CERT_CONSUMER_GROUP_ID": f"bench-{capture.name}",
            "CERT_CONSUMER_CDC_TOPIC_PREFIX": capture.prefix,
            "CERT_CONSUMER_SCORES_TOPIC": "",
            "CERT_CONSUMER_POSTS_TOPIC": "",
            "CERT_CONSUMER_SETTINGS_TOPIC": "",
            "CERT_CONSUMER_GRANTED_TOPIC": granted,
            "CERT_CONSUMER_APPROVAL_TOPIC": f"{granted}-approval",
            "CERT_CONSUMER_DLQ_TOPIC": f"{granted}-dlq",
            "CERT_CONSUMER_QUIET_WINDOW_SECONDS": str(args.quiet),
            "CERT_CONSUMER_MAX_WAIT_SECONDS": str(max(args.quiet, 5.0)),
            "CERT_CONSUMER_IDLE_SLEEP_SECONDS": "0.02",
            "CERT_CONSUMER_METRICS_PORT": str(free_port()),
            "CERT_CONSUMER_LOG_LEVEL": "WARNING",
            "CERT_CONSUMER_LOG_FORMAT": "json",
        } | dict(pair.split("=", 1) for pair in args.env)
        service = subprocess.Popen([sys.executable, "-m", "consumer.cli", "run"], env=env)
        arrivals = Arrivals(servers, granted)
        arrivals.start()
        time.sleep(5)  # the service joins its group before the first commit is timed
        committed: dict[int, float] = {}
        for user in learners:
            with engine.begin() as conn:
                seeding.set_scores(conn, 1, user, {101: (8.0, 10.0), 102: (9.0, 10.0)})
            committed[user] = time.monotonic()
            time.sleep(args.interval)
        deadline = time.monotonic() + 60
        while len(arrivals.seen) < len(learners) and time.monotonic() < deadline:
            time.sleep(0.1)
        arrivals.stop.set()
        latencies = [
            (arrivals.seen[u] - committed[u]) * 1000 for u in learners if u in arrivals.seen
        ]
        report = {
            "learners": len(learners),
            "granted_events_read": len(latencies),
            "quiet_window_s": args.quiet,
            "connect_start_s": round(connect_start_s, 2),
            "connector_running_s": round(register_s, 2),
            "commit_to_granted_event_ms": {
                "min": round(min(latencies)),
                "p50": round(statistics.median(latencies)),
                "p90": round(percentile(latencies, 0.9)),
                "p99": round(percentile(latencies, 0.99)),
                "max": round(max(latencies)),
            },
        }
        print(json.dumps(report, indent=2))
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"cdc-quiet-{args.quiet:g}.json").write_text(json.dumps(report, indent=2) + "\n")
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        capture.stop_capture()
        connect_script(work / "connect", "stop")
        engine.dispose()
        server.destroy()


if __name__ == "__main__":
    main()
