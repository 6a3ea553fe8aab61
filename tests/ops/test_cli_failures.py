"""Each everyday failure of the CLI, as an operator meets it: `cert-consumer` run as a
subprocess, one line on stderr prefixed ``cert-consumer:`` naming what to fix, a documented
exit code, and no traceback unless ``--debug``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from consumer.store.migrations import upgrade
from consumer.testing.postgres import free_port
from tests.integration.service import REPO
from tests.support import assert_one_line, run_cli, wait_for

pytestmark = pytest.mark.integration


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERT_CONSUMER_")}
    return env | {"CERT_CONSUMER_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"} | settings


@dataclass
class Silent:
    """A TCP endpoint that accepts connections and never says a word."""

    port: int = field(default_factory=free_port)
    sock: socket.socket = field(default_factory=socket.socket)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self._hold, daemon=True).start()

    def _hold(self) -> None:
        held = []
        while True:
            try:
                held.append(self.sock.accept()[0])
            except OSError:
                return


@pytest.fixture
def silent() -> Iterator[Silent]:
    endpoint = Silent()
    yield endpoint
    endpoint.sock.close()


def down_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"


CASES = {
    # name: (args, settings, exit code, fragments of the one line)
    "db upgrade, database down": (
        ["db", "upgrade"],
        {"CERT_CONSUMER_DATABASE_URL": "DOWN"},
        3,
        ("PostgreSQL unreachable", "check CERT_CONSUMER_DATABASE_URL"),
    ),
    "evaluate, database down": (
        ["evaluate", "--section-id", "1", "--user-id", "2"],
        {"CERT_CONSUMER_DATABASE_URL": "DOWN"},
        3,
        ("PostgreSQL unreachable",),
    ),
    "lag, broker down": (
        ["lag"],
        {"CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": "BROKER_DOWN"},
        3,
        ("Kafka unreachable", "check CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS"),
    ),
    "lag, a bad librdkafka property": (
        ["lag"],
        {"CERT_CONSUMER_KAFKA_NO_SUCH_PROPERTY": "1"},
        2,
        ("librdkafka rejected the configuration", "CERT_CONSUMER_KAFKA_"),
    ),
    "a bad --database-url": (
        ["db", "upgrade", "--database-url", "garbage"],
        {},
        2,
        ("invalid configuration: --database-url is not a database URL",),
    ),
    "a registry URL that is not one, never echoed": (
        ["run"],
        {
            "CERT_CONSUMER_DATABASE_URL": "DOWN",
            "CERT_CONSUMER_SCHEMA_REGISTRY_URL": "user:s3cret@registry",
        },
        2,
        ("CERT_CONSUMER_SCHEMA_REGISTRY_URL=<hidden>: must be an http:// or https:// URL",),
    ),
    "a harmful health deadline": (
        ["run"],
        {"CERT_CONSUMER_DATABASE_URL": "DOWN", "CERT_CONSUMER_HEALTH_DEADLINE_SECONDS": "0"},
        2,
        ("CERT_CONSUMER_HEALTH_DEADLINE_SECONDS='0': must be >= 1",),
    ),
    "a usage mistake names no function": (
        ["evaluate", "--section-id", "x", "--user-id", "1"],
        {},
        2,
        ("evaluate: argument --section-id: 'x' is not a whole number > 0",),
    ),
    "a password on the command line": (
        ["db", "upgrade", "--database-url", "postgresql://u:pw@127.0.0.1/db"],
        {},
        2,
        ("--database-url carries a password",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_is_one_line_and_its_exit_code(case: str, kafka_bootstrap: str) -> None:
    args, settings, code, expected = CASES[case]
    values = {"DOWN": down_url(), "BROKER_DOWN": f"127.0.0.1:{free_port()}"}
    given = {k: values.get(v, v) for k, v in settings.items()}
    env = clean_env(**({"CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap} | given))
    got, lines = run_cli(env, *args)
    assert got == code, lines[-10:]
    assert_one_line(lines, *expected)
    assert "s3cret" not in "\n".join(lines)


def test_a_database_that_never_answers_is_given_up_on_and_ctrl_c_is_heard(silent: Silent) -> None:
    env = clean_env(
        CERT_CONSUMER_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{silent.port}/x"
    )
    code, lines = run_cli(env, "db", "upgrade", timeout=30)  # the 5 s connect timeout of `run`
    assert code == 3
    assert_one_line(lines, "PostgreSQL unreachable")
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "db", "upgrade"],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_connected(silent, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert_one_line(err.splitlines(), "interrupted")


def wait_connected(silent: Silent, proc: subprocess.Popen[str]) -> None:
    """Until the process holds a connection to the silent endpoint (its `ss` line)."""

    def connected() -> bool:
        out = subprocess.run(["ss", "-tnp"], capture_output=True, text=True, check=False).stdout
        return any(
            f":{silent.port}" in line and f"pid={proc.pid}," in line for line in out.splitlines()
        )

    wait_for(connected, timeout=20, what="the command connected")


def test_the_metrics_port_in_use_is_named(database_url: str, kafka_bootstrap: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        env = clean_env(
            CERT_CONSUMER_DATABASE_URL=database_url,
            CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            CERT_CONSUMER_METRICS_PORT=str(taken.getsockname()[1]),
        )
        code, lines = run_cli(env, "run")
    assert code == 2
    assert_one_line(lines, "the metrics port is already in use", "CERT_CONSUMER_METRICS_PORT")


def test_a_database_without_the_torus_tables_is_refused_at_start(
    pg_server_url: str, kafka_bootstrap: str
) -> None:
    name = f"bare_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(sa.create_engine(url))  # migrated, but no Torus tables
        env = clean_env(
            CERT_CONSUMER_DATABASE_URL=url.replace("postgresql+psycopg://", "postgres://"),
            CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            CERT_CONSUMER_METRICS_PORT="0",
        )
        code, lines = run_cli(env, "run")
        assert code == 3
        assert_one_line(lines, "not a Torus database", "public.certificates: absent", "role.sql")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_ctrl_c_in_backfill_wait_is_one_line_and_130(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    from tests.faults.world import seed_world  # noqa: PLC0415

    seed_world(engine, learners_per_section=3, seed=1)
    engine.dispose()
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "backfill", "--all", "--wait"],
        env=clean_env(CERT_CONSUMER_DATABASE_URL=database_url),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("backfill: ")  # queued, now waiting (no evaluator)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130
    assert_one_line(err.splitlines(), "interrupted")


def test_debug_adds_the_traceback_and_notices_name_the_nearest_setting() -> None:
    env = clean_env(CERT_CONSUMER_DATABASE_URL=down_url())
    code, lines = run_cli(env, "--debug", "db", "upgrade")
    assert code == 3 and any("Traceback" in line for line in lines)
    assert lines[-1].startswith("cert-consumer: PostgreSQL unreachable")
    code, lines = run_cli(clean_env(CERT_CONSUMER_QUIET_WINDOW_SECOND="2"), "topics", "plan")
    assert code == 0
    assert any("did you mean CERT_CONSUMER_QUIET_WINDOW_SECONDS?" in line for line in lines)


def test_version_and_help() -> None:
    def shown(flag: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "consumer.cli", flag],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert shown("--version").startswith("cert-consumer 0.")
    usage = shown("--help")
    assert "CERT_CONSUMER_DATABASE_PASSWORD" in usage and "130  interrupted" in usage
