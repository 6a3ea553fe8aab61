"""Secured infrastructure for the security tests, all real and throw-away.

- TLS material made by scripts/certs.sh at test time (one CA signs the broker's and
  PostgreSQL's certificates; a second, unrelated CA is the "untrusted" case).
- A Kafka broker with only a SASL_SSL listener, SCRAM-SHA-512 users made when its storage is
  formatted, and the StandardAuthorizer on (scripts/kafka.sh, KAFKA_SECURITY=sasl_ssl).
- PostgreSQL taking TCP only over TLS, with scram-sha-256 passwords, on the system's
  OpenSSL-built server (the embedded wheel has no TLS); per test a database with the Torus
  tables and deploy/postgresql/role.sql applied, migrated as that least-privileged role.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient

from consumer.store.migrations import upgrade
from consumer.store.torus import create_torus_tables
from consumer.testing.postgres import LocalPostgres, Secured, system_binaries

REPO = Path(__file__).resolve().parents[2]
ROLE_SQL = REPO / "deploy" / "postgresql" / "role.sql"
ROLE = "cert_consumer"
SERVICE_USER = "certconsumer"  # the service's Kafka principal: User:certconsumer


def _run_dir(prefix: str) -> Path:
    parent = os.environ.get("CERT_CONSUMER_TEST_RUN_DIR")  # scripts/test cleans it up
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


@pytest.fixture(scope="session")
def tls() -> Iterator[Path]:
    folder = _run_dir("tls-")
    subprocess.run([str(REPO / "scripts" / "certs.sh"), str(folder)], check=True)
    (folder).chmod(0o755)
    for name in ("ca.pem", "other-ca.pem", "server.pem"):
        (folder / name).chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class SecuredKafka:
    bootstrap: str
    ca: Path
    admin_password: str
    service_password: str

    def client(self, user: str = "admin", password: str | None = None) -> dict[str, object]:
        """librdkafka settings of a client authenticated as ``user``."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password or self.admin_password,
            "ssl.ca.location": str(self.ca),
        }

    def admin(self) -> AdminClient:
        return AdminClient(self.client())


@pytest.fixture(scope="session")
def secured_kafka(tls: Path) -> Iterator[SecuredKafka]:
    admin_password, service_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    run_dir = _run_dir("kafka-secured-")
    env = {
        **os.environ,
        "KAFKA_RUN_DIR": str(run_dir),
        "KAFKA_SECURITY": "sasl_ssl",
        "KAFKA_CERT_DIR": str(tls),
        "KAFKA_SCRAM_USERS": f"admin:{admin_password},{SERVICE_USER}:{service_password}",
    }
    env.setdefault("PYTHON", sys.executable)
    script = str(REPO / "scripts" / "kafka.sh")
    started = subprocess.run(
        [script, "start"], check=False, env=env, capture_output=True, text=True
    )
    if started.returncode != 0:
        pytest.fail(f"could not start the secured broker: {started.stderr.strip()}")
    try:
        yield SecuredKafka(started.stdout.strip(), tls / "ca.pem", admin_password, service_password)
    finally:
        subprocess.run([script, "stop"], env=env, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def secured_postgres(tls: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres(
        _run_dir("pg-secured-"),
        secured=Secured(tls / "server.pem", tls / "server.key", tls / "ca.pem"),
        bin_dir=system_binaries(os.environ.get("CERT_CONSUMER_TEST_PG_BIN")),
    )
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@dataclass(frozen=True)
class TorusDatabase:
    """A Torus database with the service's role: ``superuser_url`` for the test's own
    seeding and checks, ``role_url`` (no password in it) and ``role_password`` for the
    service."""

    superuser_url: str
    role_url: str
    role_password: str


@pytest.fixture
def torus_database(secured_postgres: LocalPostgres) -> Iterator[TorusDatabase]:
    name = f"sec_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(secured_postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    superuser = sa.make_url(secured_postgres.url).set(database=name)
    engine = sa.create_engine(superuser)
    password = secrets.token_urlsafe(18)
    with engine.begin() as conn:
        create_torus_tables(conn)
        conn.exec_driver_sql(ROLE_SQL.read_text())  # the file as an operator runs it
        conn.exec_driver_sql(f"ALTER ROLE {ROLE} PASSWORD '{password}'")
    engine.dispose()
    role_url = superuser._replace(username=ROLE, password=None)  # set() keeps a None field
    as_role = sa.create_engine(role_url.set(password=password))
    upgrade(as_role)  # `db upgrade` as the role itself: its schema, no CREATE on the database
    as_role.dispose()
    try:
        yield TorusDatabase(
            superuser.render_as_string(hide_password=False),
            role_url.render_as_string(hide_password=False),
            password,
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
