"""The per-event baseline: the same input, handled as Torus's worker handles it today, one
evaluation per event, at once, in its own transaction (``evaluate_keys(conn, [key])``), with no
debounce. Run as its own process (``python -m bench.e2e.baseline``) so it neither shares the
benchmark's interpreter lock nor its CPU accounting; it reports progress through a small JSON
file and stops on SIGTERM after the event in hand.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Consumer

from bench.e2e import cleanup
from bench.e2e.infra import REPO
from bench.e2e.waiting import until
from consumer.evaluation import evaluate_keys
from consumer.events.catalogue import load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec


def _write(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def serve(bootstrap: str, database_url: str, topics: list[str], progress: Path) -> None:
    """Consume ``topics`` and evaluate each event's key alone, until SIGTERM."""
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    codec = Codec(load_catalogue(locate_schemas_dir()))
    engine = sa.create_engine(database_url, pool_size=1)
    assigned = threading.Event()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"baseline-{uuid.uuid4().hex[:8]}",
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "log.connection.close": False,
        }
    )
    consumer.subscribe(topics, on_assign=lambda *_: assigned.set())
    state: dict[str, Any] = {"assigned": False, "events": 0, "transitions": 0}
    written = 0.0
    try:
        while not stop.is_set():
            for msg in consumer.consume(100, timeout=0.1):
                if stop.is_set():
                    break
                if msg.error() is not None:
                    continue
                record = codec.decode(msg.value()).record
                key = (int(record["section_id"]), int(record["user_id"]))
                with engine.begin() as conn:
                    result = evaluate_keys(conn, [key], now=datetime.now(UTC))
                state["events"] += 1
                state["transitions"] += len(result.transitions)
            if time.monotonic() - written > 0.2:
                state["assigned"] = assigned.is_set()
                _write(progress, state)
                written = time.monotonic()
    finally:
        state["assigned"] = assigned.is_set()
        state["stopped"] = True
        _write(progress, state)
        consumer.close()
        engine.dispose()


class BaselineProcess:
    """The baseline as a child process of the benchmark."""

    def __init__(self, *, bootstrap: str, database_url: str, topics: list[str], work: Path) -> None:
        self.progress = work / f"baseline-{uuid.uuid4().hex[:6]}.json"
        self.log = work / f"{self.progress.stem}.log"
        self._args = [
            sys.executable,
            "-m",
            "bench.e2e.baseline",
            "--bootstrap",
            bootstrap,
            "--database-url",
            database_url,
            "--progress",
            str(self.progress),
            "--topics",
            ",".join(topics),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self._forget: Any = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self._args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
        self._forget = cleanup.register("baseline", self._stop_at_exit)
        until(
            lambda: self._alive() and bool(self.state().get("assigned")),
            timeout=60,
            what="baseline consumer assignment",
        )

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"baseline exited: {self.log.read_text()[-2000:]}")
        return True

    def state(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return {}
        return loaded

    def events(self) -> int:
        return int(self.state().get("events", 0))

    def _stop_at_exit(self) -> None:
        self.stop()

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait for the final progress; what it had done by then."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if self._forget is not None:
            forget, self._forget = self._forget, None
            forget()
        return self.state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated input topics")
    parser.add_argument("--progress", type=Path, required=True)
    args = parser.parse_args()
    serve(args.bootstrap, args.database_url, args.topics.split(","), args.progress)


if __name__ == "__main__":
    main()
