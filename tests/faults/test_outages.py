"""PostgreSQL stopped and started mid-stream; the broker stopped and started mid-stream. Each
on a server of the scenario's own, so stopping it harms no other test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.localdb import LocalPostgres
from consumer.migrations import upgrade
from consumer.torus import create_torus_tables
from tests.faults.conftest import Launcher, scale
from tests.faults.test_kills import play_in_background
from tests.faults.verdict import verdict
from tests.faults.world import Triggers, seed_world
from tests.integration.service import Topics, codec, service_env
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPostgres, str]]:
    server = LocalPostgres(tmp_path_factory.mktemp("pg-outage"))
    url = server.start()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        create_torus_tables(conn)
    upgrade(engine)
    engine.dispose()
    try:
        yield server, url
    finally:
        server.destroy()


@dataclass
class OwnBroker:
    run_dir: Path
    bootstrap: str

    def _script(self, command: str) -> str:
        env = os.environ | {"KAFKA_RUN_DIR": str(self.run_dir), "PYTHON": sys.executable}
        done = subprocess.run(
            [str(REPO / "scripts" / "kafka.sh"), command],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def halt(self) -> None:
        self._script("halt")

    def resume(self) -> None:
        self._script("resume")

    def topics(self, partitions: int) -> Topics:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        suffix = uuid.uuid4().hex[:8]
        names = {
            n: f"{n}-{suffix}"
            for n in ("scores", "posts", "settings", "granted", "approval", "dlq")
        }
        inputs = {"scores", "posts", "settings"}
        new = [NewTopic(t, partitions if n in inputs else 1, 1) for n, t in names.items()]
        for future in admin.create_topics(new, operation_timeout=30).values():
            future.result(30)
        wait_for(
            lambda: set(names.values()) <= set(admin.list_topics(timeout=5).topics),
            what="topics on the own broker",
        )
        return Topics(**names)


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    run_dir = tmp_path_factory.mktemp("kafka-outage")
    broker = OwnBroker(run_dir, "")
    broker.bootstrap = broker._script("start")
    try:
        yield broker
    finally:
        broker._script("stop")


def test_postgresql_stopped_and_started_mid_stream(
    own_database: tuple[LocalPostgres, str],
    kafka_bootstrap: str,
    new_topic: object,
    launch: Launcher,
    seed: int,
) -> None:
    server, url = own_database
    engine = sa.create_engine(url, pool_pre_ping=True)  # its connections die with the server
    topics = Topics.create(new_topic, partitions=2)  # type: ignore[arg-type]
    world = seed_world(engine, learners_per_section=scale(100, 300), seed=seed)
    processes = [launch(service_env(url, kafka_bootstrap, topics)) for _ in range(2)]
    workload = play_in_background(
        world, Triggers(kafka_bootstrap, topics, codec()), scale(8, 20), seed, pause=1.0
    )
    outages = scale(1, 3)
    down_seconds = scale(10, 30)
    for _ in range(outages):
        time.sleep(3)
        server.stop()
        time.sleep(down_seconds)  # the outage itself is the scenario, not a synchronisation
        assert all(p.proc is not None and p.proc.poll() is None for p in processes)
        server.start()
    workload.join(timeout=300)
    result = verdict("postgresql-outage", engine, world, kafka_bootstrap, topics, codec())
    result.extra = {"outages": outages, "down_seconds": down_seconds, "seed": seed}
    result.record()
    result.assert_correct()
    assert [p.terminate() for p in processes] == [0, 0]
    engine.dispose()


def test_broker_stopped_and_started_mid_stream(
    engine: sa.Engine, database_url: str, own_broker: OwnBroker, launch: Launcher, seed: int
) -> None:
    topics = own_broker.topics(partitions=2)
    world = seed_world(engine, learners_per_section=scale(100, 300), seed=seed)
    env = service_env(database_url, own_broker.bootstrap, topics)
    processes = [launch(env) for _ in range(2)]
    workload = play_in_background(
        world, Triggers(own_broker.bootstrap, topics, codec()), scale(8, 20), seed, pause=1.0
    )
    outages = scale(1, 3)
    down_seconds = scale(10, 30)
    for _ in range(outages):
        time.sleep(3)
        own_broker.halt()
        time.sleep(down_seconds)  # the outage itself is the scenario, not a synchronisation
        assert all(p.proc is not None and p.proc.poll() is None for p in processes)
        own_broker.resume()
    workload.join(timeout=300)
    result = verdict("broker-outage", engine, world, own_broker.bootstrap, topics, codec())
    result.extra = {"outages": outages, "down_seconds": down_seconds, "seed": seed}
    result.record()
    result.assert_correct()
    assert [p.terminate() for p in processes] == [0, 0]
