"""Drives the real `cert-consumer run` process in end-to-end tests: its environment, topics,
input records, output records and metrics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.events.catalogue import EventType, load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec
from consumer.events.envelope import build_headers, format_key
from consumer.testing.postgres import free_port
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Topics:
    scores: str
    posts: str
    settings: str
    granted: str
    approval: str
    dlq: str

    @classmethod
    def create(cls, new_topic: Callable[..., str], partitions: int = 1) -> Topics:
        return cls(
            scores=new_topic("scores", partitions),
            posts=new_topic("posts", partitions),
            settings=new_topic("settings", partitions),
            granted=new_topic("granted"),
            approval=new_topic("approval"),
            dlq=new_topic("dlq"),
        )


def service_env(database_url: str, bootstrap: str, topics: Topics, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERT_CONSUMER_")}
    env |= {
        "CERT_CONSUMER_DATABASE_URL": database_url,
        "CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CERT_CONSUMER_GROUP_ID": f"g-{topics.scores}",
        "CERT_CONSUMER_SCORES_TOPIC": topics.scores,
        "CERT_CONSUMER_POSTS_TOPIC": topics.posts,
        "CERT_CONSUMER_SETTINGS_TOPIC": topics.settings,
        "CERT_CONSUMER_GRANTED_TOPIC": topics.granted,
        "CERT_CONSUMER_APPROVAL_TOPIC": topics.approval,
        "CERT_CONSUMER_DLQ_TOPIC": topics.dlq,
        "CERT_CONSUMER_QUIET_WINDOW_SECONDS": "0.5",
        "CERT_CONSUMER_MAX_WAIT_SECONDS": "5",
        "CERT_CONSUMER_IDLE_SLEEP_SECONDS": "0.05",
        "CERT_CONSUMER_EVALUATION_LINGER_SECONDS": "0.05",
        "CERT_CONSUMER_INGEST_LINGER_SECONDS": "0.05",
        "CERT_CONSUMER_MAX_BACKOFF_SECONDS": "1",
        "CERT_CONSUMER_SHUTDOWN_TIMEOUT_SECONDS": "15",
        "CERT_CONSUMER_LOG_FORMAT": "json",
        "CERT_CONSUMER_METRICS_PORT": str(free_port()),
        "CERT_CONSUMER_KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS": "1000",
    }
    return env | extra


@dataclass
class ServiceProcess:
    """One `cert-consumer run` child process."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", "run"],
            env=self.env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.healthy, timeout=60, what="service /healthz")
        return self

    @property
    def port(self) -> int:
        return int(self.env["CERT_CONSUMER_METRICS_PORT"])

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            metric, _, label_text = sample.partition("{")
            if metric != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
            if (labels or {}).items() <= found.items():
                total += float(value)
        return total

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self._log is not None:
            self._log.close()


Launcher = Callable[[dict[str, str]], "ServiceProcess"]


def codec() -> Codec:
    return Codec(load_catalogue(locate_schemas_dir()))


class ActivityProducer:
    """Produces input events the way a Torus-side producer would."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.topics = topics
        self.codec = codec()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

    def _send(self, topic: str, event: EventType, record: dict[str, Any], key: bytes) -> None:
        headers = build_headers(
            event_id=f"in-{topic}-{id(record)}",
            ce_type=self.codec.catalogue.latest(event).ce_type,
            source="urn:test",
            time=datetime.now(UTC),
        )
        self.producer.produce(topic, self.codec.encode(event, record), key, headers=headers)

    def score(self, section_id: int, user_id: int, resource_id: int = 101) -> None:
        record = {
            "section_id": section_id,
            "user_id": user_id,
            "resource_id": resource_id,
            "score": 1.0,
            "out_of": 1.0,
            "cause": "GRADED_FINALIZE",
            "occurred_at": datetime.now(UTC),
        }
        self._send(
            self.topics.scores,
            EventType.PAGE_SCORE_UPDATED,
            record,
            format_key(section_id, user_id),
        )

    def settings_changed(self, section_id: int) -> None:
        record = {"section_id": section_id, "occurred_at": datetime.now(UTC)}
        self._send(
            self.topics.settings,
            EventType.CERTIFICATE_SETTINGS_CHANGED,
            record,
            format_key(section_id, None),
        )

    def raw(self, topic: str, value: bytes, key: bytes = b"1:1") -> None:
        self.producer.produce(topic, value, key)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


def read_raw(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Message]:
    """The first ``count`` raw records of ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[Message] = []

    def enough() -> bool:
        found.extend(m for m in consumer.consume(10, timeout=0.2) if m.error() is None)
        return len(found) >= count

    try:
        wait_for(enough, timeout=timeout, what=f"{count} records on {topic}")
    finally:
        consumer.close()
    return found


OutputRecord = tuple[str, dict[str, Any], dict[str, bytes]]


class OutputReader:
    """Reads everything on output topics from the beginning, decoding values."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.codec = codec()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{topics[0]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe(list(topics))
        self.records: list[OutputRecord] = []

    def _drain(self) -> None:
        for msg in self.consumer.consume(100, timeout=0.2):
            assert msg.error() is None, msg.error()
            headers = dict(msg.headers() or [])
            self.records.append((msg.topic(), self.codec.decode(msg.value()).record, headers))

    def read_until(self, count: int, timeout: float = 60) -> list[OutputRecord]:
        """Read until ``count`` records arrived."""

        def enough() -> bool:
            self._drain()
            return len(self.records) >= count

        wait_for(enough, timeout=timeout, what=f"{count} output records")
        return self.records

    def read_distinct(self, count: int, timeout: float = 60) -> list[OutputRecord]:
        """Read until ``count`` distinct event ids arrived (re-published duplicates included)."""

        def enough() -> bool:
            self._drain()
            return len({str(r["event_id"]) for _, r, _ in self.records}) >= count

        wait_for(enough, timeout=timeout, what=f"{count} distinct output events")
        return self.records

    def settle(self, seconds: float = 2.0) -> list[OutputRecord]:
        """Read whatever else arrives in the next few seconds (to prove nothing more came)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._drain()
        return self.records

    def close(self) -> None:
        self.consumer.close()


@dataclass
class OwnBroker:
    """A broker of one test's own (``scripts/kafka.sh`` in its own folder), so it can be
    stopped (``halt``) and started again (``resume``) without harming other tests."""

    run_dir: Path
    bootstrap: str = ""

    def script(self, command: str) -> str:
        env = os.environ | {"KAFKA_RUN_DIR": str(self.run_dir), "PYTHON": sys.executable}
        done = subprocess.run(
            [str(REPO / "scripts" / "kafka.sh"), command],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def halt(self) -> None:
        self.script("halt")

    def resume(self) -> None:
        self.script("resume")

    def topics(self, partitions: int) -> Topics:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        suffix = uuid.uuid4().hex[:8]
        names = {
            n: f"{n}-{suffix}"
            for n in ("scores", "posts", "settings", "granted", "approval", "dlq")
        }
        inputs = {"scores", "posts", "settings"}
        new = [NewTopic(t, partitions if n in inputs else 1, 1) for n, t in names.items()]
        for future in admin.create_topics(new, operation_timeout=30).values():
            future.result(30)
        wait_for(
            lambda: set(names.values()) <= set(admin.list_topics(timeout=5).topics),
            what="topics on the own broker",
        )
        return Topics(**names)
