"""Session infrastructure for the CDC tests: a PostgreSQL with logical decoding and a Kafka
Connect worker running the Debezium PostgreSQL connector (``scripts/connect.sh``), both started
here unless CERT_CONSUMER_TEST_CONNECT_DIR names the run folder of a worker already running."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer.store.migrations import upgrade
from consumer.store.torus import create_torus_tables
from consumer.testing.postgres import LocalPostgres
from tests.cdc.harness import Capture, connect_script
from tests.integration.service import ServiceProcess, Topics, service_env

TEMPLATE = "cdc_template"
# scripts/test sets it, so that its clean-up finds whatever a killed pytest left running.
RUN_PARENT = os.environ.get("CERT_CONSUMER_TEST_RUN_DIR") or None


@pytest.fixture(scope="session")
def cdc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.URL]:
    """The logical-decoding server, with a template database holding the Torus tables and
    the service's schema (REPLICA IDENTITY FULL on sections and certificates, as advised)."""
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="cdc-pg-", dir=RUN_PARENT)), logical=True)
    url = sa.make_url(server.start())
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{TEMPLATE}"'))
    admin.dispose()
    engine = sa.create_engine(url.set(database=TEMPLATE))
    with engine.begin() as conn:
        create_torus_tables(conn)
        for table in ("sections", "certificates"):
            conn.execute(sa.text(f"ALTER TABLE public.{table} REPLICA IDENTITY FULL"))
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def connect_worker(kafka_bootstrap: str) -> Iterator[Path]:
    """The run folder of a Kafka Connect worker with the Debezium plugin."""
    given = os.environ.get("CERT_CONSUMER_TEST_CONNECT_DIR")
    if given:
        yield Path(given)
        return
    run_dir = Path(tempfile.mkdtemp(prefix="connect-", dir=RUN_PARENT))
    connect_script(run_dir, "start", bootstrap=kafka_bootstrap)
    try:
        yield run_dir
    finally:
        connect_script(run_dir, "stop")
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
def capture(cdc_server: sa.URL, connect_worker: Path, kafka_bootstrap: str) -> Iterator[Capture]:
    """This test's own database (from the template), change topics and connector."""
    name = f"c_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(cdc_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    world = Capture(connect_worker, kafka_bootstrap, cdc_server, cdc_server.set(database=name))
    world.create_topics()
    try:
        yield world
    finally:
        world.stop_capture()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def cdc_engine(capture: Capture) -> Iterator[sa.Engine]:
    engine = sa.create_engine(capture.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def cdc_env(capture: Capture, new_topic: Callable[..., str]) -> dict[str, str]:
    """The service reading the change topics (and its own, unused, activity topics)."""
    topics = Topics.create(new_topic)
    url = capture.database_url.render_as_string(hide_password=False)
    return service_env(url, capture.bootstrap, topics) | {
        "CERT_CONSUMER_CDC_TOPIC_PREFIX": capture.prefix,
    }


@pytest.fixture
def cdc_topics(cdc_env: dict[str, str]) -> Topics:
    return Topics(
        scores=cdc_env["CERT_CONSUMER_SCORES_TOPIC"],
        posts=cdc_env["CERT_CONSUMER_POSTS_TOPIC"],
        settings=cdc_env["CERT_CONSUMER_SETTINGS_TOPIC"],
        granted=cdc_env["CERT_CONSUMER_GRANTED_TOPIC"],
        approval=cdc_env["CERT_CONSUMER_APPROVAL_TOPIC"],
        dlq=cdc_env["CERT_CONSUMER_DLQ_TOPIC"],
    )


@dataclass
class Pipeline:
    """Torus's database, its Debezium capture, and the service's environment and outputs."""

    capture: Capture
    engine: sa.Engine
    env: dict[str, str]
    topics: Topics
    launch: Callable[[dict[str, str]], ServiceProcess]


@pytest.fixture
def pipeline(
    capture: Capture,
    cdc_engine: sa.Engine,
    cdc_env: dict[str, str],
    cdc_topics: Topics,
    launch: Callable[[dict[str, str]], ServiceProcess],
) -> Pipeline:
    return Pipeline(capture, cdc_engine, cdc_env, cdc_topics, launch)
