"""The benchmark's own Kafka broker and PostgreSQL server, and the databases of each phase.

PostgreSQL preloads pg_stat_statements so that statements can be counted per database role:
the service connects as ``SERVICE_ROLE``, the per-event baseline as ``BASELINE_ROLE`` and the
benchmark itself as ``postgres``, so its own polling never counts. Each phase works in a
database of its own, cloned from a template that holds the Torus tables and the service's
schema, and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from bench.e2e import cleanup
from consumer.store.migrations import upgrade
from consumer.store.torus import create_torus_tables
from consumer.testing.postgres import LocalPostgres

REPO = Path(__file__).resolve().parents[2]
SERVICE_ROLE = "cert_service"
BASELINE_ROLE = "cert_baseline"
TEMPLATE = "bench_template"
_PG_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.max": "10000",
    "pg_stat_statements.track": "top",
    "pg_stat_statements.track_utility": "on",
}


class Broker:
    """A single-node broker from scripts/kafka.sh in its own run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.bootstrap = ""

    def _script(self, command: str) -> str:
        env = os.environ | {"KAFKA_RUN_DIR": str(self.run_dir), "PYTHON": sys.executable}
        done = subprocess.run(
            [str(REPO / "scripts" / "kafka.sh"), command],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=240,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed: {done.stderr.strip()[-800:]}")
        return done.stdout.strip()

    def start(self) -> str:
        cleanup.register("kafka broker", self.stop)
        self.bootstrap = self._script("start")
        return self.bootstrap

    def stop(self) -> None:
        if self.run_dir.exists():
            self._script("stop")

    def version(self) -> str:
        pom = (REPO / "scripts" / "kafka" / "pom.xml").read_text()
        start = pom.find("<kafka.version>")
        end = pom.find("</kafka.version>")
        return pom[start + len("<kafka.version>") : end] if start >= 0 else "?"


class PgServer:
    """The embedded PostgreSQL with pg_stat_statements, its roles and the phase template."""

    def __init__(self, data_dir: Path) -> None:
        self.server = LocalPostgres(data_dir, server_settings=dict(_PG_SETTINGS))
        self.admin: sa.Engine | None = None

    def start(self) -> None:
        cleanup.register("postgresql", self.destroy)
        self.server.start()
        self.admin = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            for role in (SERVICE_ROLE, BASELINE_ROLE):
                conn.execute(sa.text(f"CREATE ROLE {role} LOGIN SUPERUSER"))
            conn.execute(sa.text(f'CREATE DATABASE "{TEMPLATE}"'))
        engine = sa.create_engine(self.url(TEMPLATE))
        with engine.begin() as conn:
            create_torus_tables(conn)
        upgrade(engine)
        engine.dispose()

    def url(self, database: str, role: str = "postgres") -> str:
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.server.port}/{database}"

    @property
    def engine(self) -> sa.Engine:
        assert self.admin is not None, "PgServer.start() first"
        return self.admin

    def create_database(self, name: str, template: str = TEMPLATE) -> str:
        """A new database cloned from ``template`` (which must have no connections)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        return name

    def drop_database(self, name: str) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def version(self) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one())

    def destroy(self) -> None:
        if self.admin is not None:
            self.admin.dispose()
            self.admin = None
        self.server.destroy()
