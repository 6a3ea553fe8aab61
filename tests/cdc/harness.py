"""A real Debezium pipeline for one test: a database of its own on the logical-decoding
PostgreSQL, a connector of its own on the session's Kafka Connect worker, its own topics.

The connector is registered only when the test says so (``start_capture``), so rows written
before are what Debezium's initial snapshot reads (``op: r``); rows written after are streamed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.events.cdc import CdcTable
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "connect.sh"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"


def connect_script(run_dir: Path, *args: str, bootstrap: str = "") -> str:
    """Run ``scripts/connect.sh`` with this session's run folder; its stdout, or fail loudly."""
    env = os.environ | {"CONNECT_RUN_DIR": str(run_dir), "PYTHON": sys.executable}
    if bootstrap:
        env["KAFKA_BOOTSTRAP"] = bootstrap
    done = subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"connect.sh {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    sys.stderr.write(done.stderr)
    return done.stdout.strip()


def connector_config(
    name: str, database: sa.URL, prefix: str, *, schemas: bool = False
) -> dict[str, Any]:
    """The README's recommended configuration, pointed at one test database."""
    tables = ",".join(f"public.{t.value}" for t in CdcTable)
    converter = {
        f"{side}.converter{suffix}": value
        for side in ("key", "value")
        for suffix, value in (("", JSON_CONVERTER), (".schemas.enable", str(schemas).lower()))
    }
    return {
        "name": name,
        "config": {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "plugin.name": "pgoutput",
            "database.hostname": database.host,
            "database.port": str(database.port),
            "database.user": database.username,
            "database.password": "unused (trust)",
            "database.dbname": database.database,
            "topic.prefix": prefix,
            "slot.name": name,
            "publication.name": name,
            "publication.autocreate.mode": "filtered",
            "table.include.list": tables,
            "snapshot.mode": "initial",
            "poll.interval.ms": "100",
            "topic.creation.default.replication.factor": "1",
            "topic.creation.default.partitions": "1",
            **converter,
        },
    }


@dataclass
class Capture:
    """One test's Debezium connector on its own database and topics."""

    run_dir: Path
    bootstrap: str
    admin_url: sa.URL  # a superuser connection to the server, for slots and databases
    database_url: sa.URL
    name: str = field(default_factory=lambda: f"cdc_{uuid.uuid4().hex[:10]}")
    registered: bool = False

    @property
    def prefix(self) -> str:
        return self.name

    def topic(self, table: CdcTable) -> str:
        return f"{self.prefix}.public.{table.value}"

    def create_topics(self) -> None:
        """Every change topic exists before the service subscribes (a table's topic would
        otherwise appear only with its first change)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        names = [self.topic(t) for t in CdcTable]
        futures = admin.create_topics([NewTopic(n, 1, 1) for n in names], operation_timeout=30)
        for future in futures.values():
            future.result(timeout=30)
        wait_for(
            lambda: set(names) <= set(admin.list_topics(timeout=5).topics),
            what="the change topics",
        )

    def start_capture(self, *, schemas: bool = False) -> None:
        """Register the connector and wait until it and its task are RUNNING."""
        config = self.run_dir / f"{self.name}.json"
        config.write_text(json.dumps(connector_config(self.name, self.database_url, self.prefix,
                                                      schemas=schemas)))  # fmt: skip
        connect_script(self.run_dir, "register", self.name, str(config))
        self.registered = True

    def stop_capture(self) -> None:
        """Delete the connector and drop its replication slot (the connector does not)."""
        if self.registered:
            connect_script(self.run_dir, "delete", self.name)
            self.registered = False
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        slot = sa.text(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = :name AND NOT active"
        )
        active = sa.text("SELECT count(*) FROM pg_replication_slots WHERE slot_name = :name")

        def dropped() -> bool:
            with engine.connect() as conn:
                conn.execute(slot, {"name": self.name})
                return conn.execute(active, {"name": self.name}).scalar_one() == 0

        try:
            wait_for(dropped, timeout=60, interval=0.5, what=f"slot {self.name} dropped")
        finally:
            engine.dispose()
