"""Outages and operator mistakes on the real broker, database and registry: a dependency that
is down makes the service unready, never "stuck"; start-up waits for it; the lag gauge stays
true while paused; an unregistered output schema is said at start, not turned into poison."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumer.events.catalogue import load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec
from consumer.ops import offsets
from consumer.store import debounce
from consumer.store.service_tables import outbox
from consumer.testing.postgres import LocalPostgres
from tests.faults.verdict import verdict
from tests.faults.world import Triggers, World, seed_world
from tests.integration.service import (
    REPO,
    Launcher,
    OwnBroker,
    ServiceProcess,
    Topics,
    codec,
    service_env,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration
_OUTBOX = "cert_consumer.outbox"


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
    # Ready means the partitions are assigned: the lag gauge exists only for owned partitions,
    # and a service stopped before that waits for the database at start (another test).
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=60, what="ready")
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


def _settle(engine: sa.Engine, world: object, bootstrap: str, topics: Topics, name: str) -> None:
    result = verdict(name, engine, world, bootstrap, topics, codec())  # type: ignore[arg-type]
    result.record()
    result.assert_correct()


def test_start_with_the_database_down_waits_alive_then_serves(
    own_database: tuple[LocalPostgres, str],
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    launch: Launcher,
    seed: int,
) -> None:
    server, url = own_database
    engine = sa.create_engine(url, pool_pre_ping=True)
    topics = Topics.create(new_topic, partitions=2)
    world = seed_world(engine, learners_per_section=30, seed=seed)
    server.stop()
    service = launch(service_env(url, kafka_bootstrap, topics))  # /healthz 200 while waiting
    status, body = probe(service, "/readyz")
    assert (status, body["database"]) == (503, False)
    waited_until = time.monotonic() + 30
    while time.monotonic() < waited_until:  # the outage is the scenario
        assert probe(service, "/healthz")[0] == 200
        time.sleep(1)
    server.start()
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=90, what="ready")
    triggers = Triggers(kafka_bootstrap, topics, codec())
    triggers.round(world, random.Random(seed))
    triggers.flush()
    _settle(engine, world, kafka_bootstrap, topics, "start-with-database-down")
    assert '"waiting_for_dependency"' in service.logs()
    assert service.terminate() == 0
    engine.dispose()


def _json_lines(text: str) -> tuple[int, list[str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    return len(lines), bad


def test_the_broker_down_at_start_and_for_a_minute_is_waited_out_quietly(
    engine: sa.Engine,
    database_url: str,
    own_broker: OwnBroker,
    launch: Launcher,
    seed: int,
) -> None:
    topics = own_broker.topics(partitions=2)
    world = seed_world(engine, learners_per_section=30, seed=seed)
    own_broker.halt()
    service = launch(service_env(database_url, own_broker.bootstrap, topics))
    assert probe(service, "/readyz")[0] == 503
    time.sleep(30)  # the outage at start is the scenario
    assert probe(service, "/healthz")[0] == 200
    own_broker.resume()
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=120, what="ready")
    triggers = Triggers(own_broker.bootstrap, topics, codec())
    triggers.round(world, random.Random(seed))
    triggers.flush()
    _settle(engine, world, own_broker.bootstrap, topics, "start-with-broker-down")

    before = len(service.logs())
    own_broker.halt()
    down_until = time.monotonic() + 60
    while time.monotonic() < down_until:  # a minute without the broker
        assert probe(service, "/healthz")[0] == 200
        time.sleep(1)
    during = service.logs()[before:]
    own_broker.resume()
    count, not_json = _json_lines(during)
    print(f"\nbroker down 60 s: {count} log lines, {len(not_json)} not JSON")
    assert not_json == []
    assert count < 30, during
    triggers = Triggers(own_broker.bootstrap, topics, codec())
    triggers.round(world, random.Random(seed + 1))
    triggers.flush()
    _settle(engine, world, own_broker.bootstrap, topics, "broker-down-a-minute")
    assert service.terminate() == 0


@dataclass
class Small:
    """A small world on fresh topics of the session broker, and the service's environment."""

    topics: Topics
    world: World
    env: dict[str, str]


@pytest.fixture
def small(
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    seed: int,
) -> Small:
    topics = Topics.create(new_topic, partitions=2)
    world = seed_world(engine, learners_per_section=20, seed=seed)
    return Small(topics, world, service_env(database_url, kafka_bootstrap, topics))


@pytest.mark.parametrize("register", [False, True], ids=["waits-for-register", "registers"])
def test_an_unregistered_output_schema_waits_it_never_sets_events_aside(
    register: bool, small: Small, engine: sa.Engine, schema_registry_url: str, launch: Launcher
) -> None:
    topics, bootstrap = small.topics, small.env["CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS"]
    env = small.env | {
        "CERT_CONSUMER_SCHEMA_REGISTRY_URL": schema_registry_url,
        "CERT_CONSUMER_REGISTER_SCHEMAS": str(register).lower(),
    }
    service = launch(env)
    if not register:
        wait_for(
            lambda: "schema_registry" in _down(service),
            what="not ready for the registry",
        )
    triggers = Triggers(bootstrap, topics, codec())
    triggers.round(small.world, random.Random(1))
    triggers.flush()
    if not register:
        wait_for(lambda: _count(engine, outbox) > 0, what="events waiting in the outbox")
        overrides = [
            f"certificate_granted={topics.granted}",
            f"approval_requested={topics.approval}",
        ]
        flags = [arg for pair in overrides for arg in ("--topic", pair)]
        done = _cli(env, "schemas", "register", "--registry-url", schema_registry_url, *flags)
        assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=60, what="ready")
    registry_codec = _registry_codec(schema_registry_url)
    verdict(
        "unregistered-schema", engine, small.world, bootstrap, topics, registry_codec
    ).assert_correct()
    with engine.connect() as conn:
        set_aside = conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.failed_at.isnot(None))
        ).scalar_one()
    assert set_aside == 0
    said = [
        line
        for line in service.logs().splitlines()
        if '"dependency_down"' in line and "schema_registry" in line
    ]
    if register:
        assert said == []
        # every version of both output types: approval_requested v1, certificate_granted v1, v2
        outputs = [v for v in codec().catalogue if v.event_type.direction.value == "output"]
        assert service.logs().count('"schema_registered"') == len(outputs) == 3
    else:
        assert len(said) == 1 and "schemas register" in said[0]
    assert service.terminate() == 0


def _down(service: ServiceProcess) -> dict[str, str]:
    down = probe(service, "/readyz")[1]["dependencies_down"]
    assert isinstance(down, dict)
    return down


def test_outbox_retry_puts_a_set_aside_event_back_and_it_is_published_once(
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    launch: Launcher,
    seed: int,
) -> None:
    topics = Topics.create(new_topic, partitions=2)
    world = seed_world(engine, learners_per_section=20, seed=seed)
    service = launch(service_env(database_url, kafka_bootstrap, topics))
    with engine.begin() as conn:  # an event set aside before it was sent (e.g. a bad edit)
        conn.execute(
            sa.text("ALTER TABLE cert_consumer.outbox ALTER COLUMN failed_at SET DEFAULT now()")
        )
    triggers = Triggers(kafka_bootstrap, topics, codec())
    triggers.round(world, random.Random(seed))
    triggers.flush()
    wait_for(lambda: _count(engine, outbox) > 0, what="set-aside events")
    with engine.begin() as conn:
        conn.execute(
            sa.text("ALTER TABLE cert_consumer.outbox ALTER COLUMN failed_at DROP DEFAULT")
        )
    wait_for(lambda: service.metric("cert_consumer_outbox_set_aside_events") > 0, what="gauge")
    retried = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.cli",
            "outbox",
            "retry",
            "--all",
            "--database-url",
            database_url,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["retried"]
    result = verdict("outbox-retry", engine, world, kafka_bootstrap, topics, codec())
    result.assert_correct()
    assert result.duplicated_event_ids == 0
    assert service.terminate() == 0


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _registry_codec(url: str) -> Codec:
    return Codec(load_catalogue(locate_schemas_dir()), SchemaRegistryClient({"url": url}))


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_dead_letters_are_redriven_once_the_cause_is_fixed(
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    schema_registry_url: str,
    launch: Launcher,
    seed: int,
) -> None:
    topics = Topics.create(new_topic, partitions=2)
    world = seed_world(engine, learners_per_section=20, seed=seed)
    env = service_env(database_url, kafka_bootstrap, topics)
    pairs = {
        "page_score_updated": topics.scores,
        "post_created": topics.posts,
        "certificate_settings_changed": topics.settings,
        "certificate_granted": topics.granted,
        "approval_requested": topics.approval,
    }
    overrides = [arg for name, t in pairs.items() for arg in ("--topic", f"{name}={t}")]
    registered = _cli(env, "schemas", "register", "--registry-url", schema_registry_url, *overrides)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    registry_codec = _registry_codec(schema_registry_url)
    # A Torus producer moved to the registry before the service was configured for it.
    first = launch(env)
    triggers = Triggers(kafka_bootstrap, topics, registry_codec)
    triggers.round(world, random.Random(seed))
    triggers.flush()
    wait_for(
        lambda: first.metric("cert_consumer_dlq_records_total") >= triggers.sent,
        timeout=60,
        what="every record dead-lettered",
    )
    assert _count(engine, outbox) == 0
    assert first.terminate() == 0

    fixed = env | {"CERT_CONSUMER_SCHEMA_REGISTRY_URL": schema_registry_url}
    launch(fixed)
    dry = _cli(fixed, "dlq", "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["redriven"] == triggers.sent
    assert json.loads(dry.stdout)["by_error_class"] == {"UnknownSchemaError": triggers.sent}
    done = _cli(fixed, "dlq", "replay")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["redriven"] == triggers.sent
    again = _cli(fixed, "dlq", "replay")
    assert json.loads(again.stdout)["redriven"] == 0  # idempotent: nothing goes back twice
    result = verdict("dlq-redrive", engine, world, kafka_bootstrap, topics, registry_codec)
    result.record()
    result.assert_correct()
    assert result.expected_grants > 0


def test_a_stop_cuts_the_wait_for_an_absent_broker_and_a_second_signal_forces_exit(
    own_broker: OwnBroker, engine: sa.Engine, database_url: str, launch: Launcher, seed: int
) -> None:
    topics = own_broker.topics(partitions=1)
    env = service_env(database_url, own_broker.bootstrap, topics)
    world = seed_world(engine, learners_per_section=20, seed=seed)
    env["CERT_CONSUMER_KAFKA_MESSAGE_TIMEOUT_MS"] = "60000"  # a relay wait of 65 s per batch
    services = [launch(env), launch(env)]
    own_broker.halt()
    with engine.begin() as conn:  # keys due now, as if their triggers had been consumed
        debounce.upsert(conn, debounce.TriggerBatch.of(list(world.keys)), quiet=0, max_wait=0)
    wait_for(lambda: _count(engine, outbox) > 0, timeout=60, what="events for the relay")
    wait_for(
        lambda: any("relay_lock_acquired" in s.logs() for s in services), what="an active relay"
    )
    time.sleep(3)  # the active relay is now waiting for delivery reports that cannot come
    began = time.monotonic()
    codes = [s.terminate(timeout=30) for s in services]
    assert codes == [0, 0]
    assert time.monotonic() - began < 15  # not the 65 s a delivery wait would take

    forced = launch(env)
    assert forced.proc is not None
    forced.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: '"stop_requested"' in forced.logs(), what="the first signal handled")
    if forced.proc.poll() is None:  # still stopping: the second signal must end it at once
        forced.proc.send_signal(signal.SIGTERM)
        assert forced.proc.wait(10) == 130
        assert '"forced_exit"' in forced.logs()
    own_broker.resume()
