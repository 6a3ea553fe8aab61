"""PostgreSQL stopped and started mid-stream; the broker stopped and started mid-stream. Each
on a server of the scenario's own, so stopping it harms no other test."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from consumer.testing.postgres import LocalPostgres
from tests.faults.conftest import scale
from tests.faults.test_kills import play_in_background
from tests.faults.verdict import verdict
from tests.faults.world import Triggers, seed_world
from tests.integration.service import (
    Launcher,
    OwnBroker,
    ServiceProcess,
    Topics,
    codec,
    service_env,
)

REPO = Path(__file__).resolve().parents[2]


def ride_out_outages(
    processes: list[ServiceProcess], stop: Callable[[], None], start: Callable[[], None]
) -> dict[str, int]:
    """Stop a dependency and start it again, a few times, under a running workload; every
    service process must survive each outage. The figures, for the verdict."""
    outages, down_seconds = scale(1, 3), scale(10, 30)
    for _ in range(outages):
        time.sleep(3)
        stop()
        time.sleep(down_seconds)  # the outage itself is the scenario, not a synchronisation
        assert all(p.proc is not None and p.proc.poll() is None for p in processes)
        start()
    return {"outages": outages, "down_seconds": down_seconds}


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
    outages = ride_out_outages(processes, server.stop, server.start)
    workload.join(timeout=300)
    result = verdict("postgresql-outage", engine, world, kafka_bootstrap, topics, codec())
    result.extra = outages | {"seed": seed}
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
    outages = ride_out_outages(processes, own_broker.halt, own_broker.resume)
    workload.join(timeout=300)
    result = verdict("broker-outage", engine, world, own_broker.bootstrap, topics, codec())
    result.extra = outages | {"seed": seed}
    result.record()
    result.assert_correct()
    assert [p.terminate() for p in processes] == [0, 0]
