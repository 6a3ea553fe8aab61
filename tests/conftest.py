"""Session-wide real infrastructure: one Kafka broker and one PostgreSQL server.

Per test: a fresh database cloned from a template that holds the Torus tables and the
service's own schema, and fresh topics with random names, so no test sees another's leftovers.
Point the tests at existing servers with CERT_CONSUMER_TEST_KAFKA_BOOTSTRAP and
CERT_CONSUMER_TEST_DATABASE_URL (a server URL; the tests create and drop databases on it).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.store.migrations import upgrade
from consumer.store.torus import create_torus_tables
from consumer.testing.postgres import LocalPostgres, free_port
from tests.integration.service import Launcher, OwnBroker, ServiceProcess
from tests.support import wait_for

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_DB = "cert_template"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("CERT_CONSUMER_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps.
    run_dir = Path(tempfile.mkdtemp(prefix="cert-consumer-kafka-"))
    env = {**os.environ, "KAFKA_RUN_DIR": str(run_dir)}
    script = str(REPO / "scripts" / "kafka.sh")
    started = subprocess.run(
        [script, "start"], check=False, env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        pytest.exit(f"could not start the Kafka broker: {started.stderr.strip()}", returncode=3)
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([script, "stop"], env=env, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    given = os.environ.get("CERT_CONSUMER_TEST_DATABASE_URL")
    if given:
        yield given
        return
    data_dir = Path(
        os.environ.get("CERT_CONSUMER_TEST_PG_DIR")
        or tempfile.mkdtemp(prefix="cert-consumer-pg-")  # not under a prunable basetemp
    )
    server = LocalPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.destroy()


def _admin_engine(server_url: str) -> sa.Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> str:
    """A database holding the Torus tables and our schema, cloned by every test."""
    admin = _admin_engine(pg_server_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{TEMPLATE_DB}"'))
    admin.dispose()
    engine = sa.create_engine(sa.make_url(pg_server_url).set(database=TEMPLATE_DB))
    with engine.begin() as conn:
        create_torus_tables(conn)
    upgrade(engine)
    engine.dispose()
    return TEMPLATE_DB


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A fresh database for this test only, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(pg_server_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    url = sa.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create topics with random names for this test; they are deleted afterwards."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
        futures[name].result(timeout=30)
        wait_for(lambda: name in admin.list_topics(timeout=5).topics, what=f"topic {name}")
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


@pytest.fixture
def own_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPostgres, str]]:
    """A PostgreSQL server of this test's own, migrated, so it can be stopped harmlessly."""
    server = LocalPostgres(tmp_path_factory.mktemp("pg-own"))
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


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    """A Kafka broker of this test's own, so it can be halted and resumed harmlessly."""
    broker = OwnBroker(tmp_path_factory.mktemp("kafka-own"))
    broker.bootstrap = broker.script("start")
    try:
        yield broker
    finally:
        broker.script("stop")


@pytest.fixture
def seed() -> int:
    """A random seed for a scenario, printed; CERT_CONSUMER_FAULTS_SEED replays one."""
    given = os.environ.get("CERT_CONSUMER_FAULTS_SEED")
    value = int(given) if given else random.randrange(1_000_000)
    print(f"\nfaults: seed {value} (CERT_CONSUMER_FAULTS_SEED={value} replays it)")
    return value


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Start `cert-consumer run` processes, each on its own metrics port; killed at the end."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        log = tmp_path / f"service-{len(started)}.log"
        own = env | {"CERT_CONSUMER_METRICS_PORT": str(free_port())}
        service = ServiceProcess(own, log).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Confluent-compatible registry (Apicurio): CERT_CONSUMER_TEST_REGISTRY_URL when
    set, else one started with scripts/registry.sh and stopped at the end."""
    given = os.environ.get("CERT_CONSUMER_TEST_REGISTRY_URL")
    if given:
        yield given
        return
    env = {**os.environ, "REGISTRY_RUN_DIR": str(tmp_path_factory.mktemp("registry"))}
    script = str(REPO / "scripts" / "registry.sh")
    started = subprocess.run(
        [script, "start"], check=False, env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        pytest.fail(f"could not start the schema registry: {started.stderr.strip()}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([script, "stop"], env=env, check=False)
