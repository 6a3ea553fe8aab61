"""At least 10,000 hostile records interleaved with good ones, on the real broker and database:
every bad one on the dead-letter topic with its reason, every good one processed, the service
never restarted and healthy throughout."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.faults.conftest import scale
from tests.faults.hostile import BIG_LIMIT_TOPIC_BYTES, Generator, Hostile
from tests.faults.verdict import read_topic, verdict
from tests.faults.world import Triggers, produce, seed_world
from tests.integration.service import (
    Launcher,
    ServiceProcess,
    Topics,
    codec,
    service_env,
)
from tests.support import wait_for

Coordinates = tuple[str, int, int]


@pytest.fixture
def big_scores_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A scores topic that takes records up to 3 MB: bigger than the dead-letter topic does."""
    name = f"scores-big-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    config = {"max.message.bytes": str(BIG_LIMIT_TOPIC_BYTES)}
    admin.create_topics([NewTopic(name, 2, 1, config=config)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


_WATCH = """
import sys, time, urllib.request
url, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
while True:
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            status = str(answer.status)
    except OSError as exc:
        status = type(exc).__name__
    out.write(f"{status} {time.monotonic() - began:.4f}\\n")
    time.sleep(0.25)
"""


class HealthWatch:
    """Polls /healthz every quarter second from a process of its own (so the test's busy
    producer cannot slow the polls down), with a 3 s timeout like the liveness probe's."""

    def __init__(self, service: ServiceProcess, log: Path) -> None:
        self.log = log
        url = f"http://127.0.0.1:{service.port}/healthz"
        self._proc = subprocess.Popen([sys.executable, "-c", _WATCH, url, str(log)])

    def stop(self) -> tuple[int, list[str], float]:
        """(polls, answers other than 200, slowest answer in seconds)."""
        self._proc.terminate()
        self._proc.wait(10)
        answers = [line.split() for line in self.log.read_text().splitlines() if " " in line]
        failures = [status for status, _ in answers if status != "200"]
        return len(answers), failures, max((float(t) for _, t in answers), default=0.0)


def produce_hostile(
    bootstrap: str, records: list[Hostile], between: Callable[[], None]
) -> dict[Coordinates, Hostile]:
    """Produce every record (``between`` runs every 500), returning where each one landed."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": BIG_LIMIT_TOPIC_BYTES + 100_000}
    )
    landed: dict[Coordinates, Hostile] = {}
    refused: list[str] = []

    def report(record: Hostile) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                refused.append(f"{record.kind}: {err}")
            else:
                landed[(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0))] = (
                    record
                )

        return on_delivery

    for index, record in enumerate(records):
        produce(producer, record.topic, record.value, record.key, record.headers, report(record))
        if index % 500 == 0:
            between()
            producer.poll(0)
    assert producer.flush(120) == 0
    assert refused == []
    return landed


def _source(msg: Message) -> Coordinates:
    headers = dict(msg.headers() or [])
    return (
        headers["dlq.source.topic"].decode(),
        int(headers["dlq.source.partition"]),
        int(headers["dlq.source.offset"]),
    )


def test_hostile_records_are_dead_lettered_with_reasons_and_good_ones_processed(
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    big_scores_topic: str,
    launch: Launcher,
    seed: int,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    topics = Topics.create(new_topic, partitions=2)
    topics.scores = big_scores_topic
    world = seed_world(engine, learners_per_section=100, seed=seed)
    service = launch(service_env(database_url, kafka_bootstrap, topics))
    pid = service.proc.pid if service.proc else 0
    health = HealthWatch(service, tmp_path / "healthz.log")
    records = list(Generator(codec(), topics, world, rng).draw(scale(10_000, 50_000), scale(2, 10)))
    triggers = Triggers(kafka_bootstrap, topics, codec())
    landed = produce_hostile(kafka_bootstrap, records, lambda: triggers.round(world, rng))
    triggers.flush()
    bad = {where: r for where, r in landed.items() if r.expected}

    dead: dict[Coordinates, Message] = {}

    def all_dead_lettered() -> bool:
        dead.update((_source(m), m) for m in read_topic(kafka_bootstrap, topics.dlq))
        return len(dead) >= len(bad)

    wait_for(all_dead_lettered, timeout=300, interval=2, what=f"{len(bad)} dead letters")
    result = verdict("hostile", engine, world, kafka_bootstrap, topics, codec())
    polls, health_failures, slowest = health.stop()

    wrong_reason: list[str] = []
    by_kind: Counter[str] = Counter()
    for where, msg in dead.items():
        record = bad.get(where)
        assert record is not None, (
            f"a record that should have been processed was dead-lettered: {where}"
        )
        headers = dict(msg.headers() or [])
        reason = headers["dlq.error.class"].decode()
        by_kind[record.kind.split(":")[0]] += 1
        if reason not in record.expected:
            wrong_reason.append(f"{record.kind}: {reason}")
        if record.kind.startswith("huge"):
            assert any(
                name.startswith("dlq.") and ("truncated" in name or "dropped" in name)
                for name in headers
            ), record.kind
    result.extra = {
        "hostile_records": len(records),
        "dead_letter_expected": len(bad),
        "dead_lettered": len(dead),
        "good_in_hostile_wrapping": len(landed) - len(bad),
        "by_kind": dict(sorted(by_kind.items())),
        "wrong_reason": len(wrong_reason),
        "health_polls": polls,
        "health_failures": len(health_failures),
        "slowest_health_answer_seconds": round(slowest, 3),
        "unexpected_errors": service.metric("cert_consumer_unexpected_record_errors_total"),
        "seed": seed,
    }
    result.record()
    assert len(records) >= 10_000
    assert wrong_reason == []
    assert set(dead) == set(bad)
    assert health_failures == []
    assert service.proc is not None and service.proc.poll() is None and service.proc.pid == pid
    assert result.extra["unexpected_errors"] == 0
    result.assert_correct()
    assert service.terminate() == 0
