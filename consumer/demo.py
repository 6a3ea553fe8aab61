"""`cert-consumer demo`: the whole service on embedded infrastructure, no servers needed.

For now it starts the embedded PostgreSQL, creates the Torus tables and the service schema,
reports what it made and stops everything; the Kafka part comes with the demo issue.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from consumer.localdb import LocalPostgres
from consumer.migrations import upgrade
from consumer.torus import create_torus_tables


def run_demo(*, keep: bool, learners: int) -> int:
    del learners  # the full demo comes with its own issue
    data_dir = Path(tempfile.mkdtemp(prefix="cert-consumer-demo-"))
    server = LocalPostgres(data_dir / "pg")
    started = time.monotonic()
    url = server.start()
    try:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            create_torus_tables(conn)
        applied = upgrade(engine)
        engine.dispose()
        print(f"embedded PostgreSQL ready in {time.monotonic() - started:.1f}s at {url}")
        print(f"Torus tables created; service migrations applied: {applied}")
    finally:
        if keep:
            print(f"kept: {data_dir} (start it again with the same folder to reconnect)")
            server.stop()
        else:
            server.destroy()
    return 0
