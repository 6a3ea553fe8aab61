"""Outages and operator mistakes on the real broker, database and registry: a dependency that
is down makes the service unready, never "stuck"; start-up waits for it; the lag gauge stays
true while paused; an unregistered output schema is said at start, not turned into poison."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient

from consumer import offsets
from consumer.localdb import LocalPostgres
from tests.faults.verdict import verdict
from tests.faults.world import Triggers, seed_world
from tests.integration.service import (
    Launcher,
    ServiceProcess,
    Topics,
    codec,
    service_env,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration


def probe(service: ServiceProcess, path: str) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{service.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def lag_gauge(service: ServiceProcess, topics: Topics) -> float:
    return sum(
        service.metric("cert_consumer_consumer_lag_messages", {"topic": t, "partition": str(p)})
        for t in (topics.scores, topics.posts, topics.settings)
        for p in range(2)
    )


def cli_lag(bootstrap: str, group: str, topics: Topics) -> int:
    report = offsets.measure_lag(
        AdminClient({"bootstrap.servers": bootstrap}),
        group,
        [topics.scores, topics.posts, topics.settings],
    )
    return sum(p.lag if p.lag is not None else p.log_end for p in report.partitions)


def test_a_long_database_outage_is_unready_not_stuck_and_lag_stays_true(
    own_database: tuple[LocalPostgres, str],
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    launch: Launcher,
    seed: int,
) -> None:
    server, url = own_database
    engine = sa.create_engine(url, pool_pre_ping=True)
    topics = Topics.create(new_topic, partitions=2)
    world = seed_world(engine, learners_per_section=50, seed=seed)
    env = service_env(
        url,
        kafka_bootstrap,
        topics,
        CERT_CONSUMER_HEALTH_DEADLINE_SECONDS="15",
        CERT_CONSUMER_LAG_INTERVAL_SECONDS="1",
    )
    service = launch(env)
    triggers = Triggers(kafka_bootstrap, topics, codec())
    server.stop()
    rng = random.Random(seed)
    for _ in range(20):
        triggers.round(world, rng)
    triggers.flush()
    healthz: list[int] = []
    readyz: list[int] = []
    lag_matched = False
    down_until = time.monotonic() + 120
    while time.monotonic() < down_until:
        healthz.append(probe(service, "/healthz")[0])
        status, body = probe(service, "/readyz")
        readyz.append(status)
        assert status == 200 or body["database"] is False
        if not lag_matched and status == 503:
            cli = cli_lag(kafka_bootstrap, env["CERT_CONSUMER_GROUP_ID"], topics)
            lag_matched = cli > 0 and abs(lag_gauge(service, topics) - cli) == 0
        time.sleep(1)
    assert set(healthz) == {200}, healthz
    assert readyz.count(503) >= len(readyz) - 5, readyz  # unready within seconds, throughout
    assert lag_matched
    assert service.metric("cert_consumer_dependency_up", {"dependency": "postgresql"}) == 0
    server.start()
    result = verdict("database-outage-120s", engine, world, kafka_bootstrap, topics, codec())
    result.assert_correct()
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=60, what="ready again")
    assert service.proc is not None and service.proc.poll() is None
    assert service.terminate() == 0
    engine.dispose()
