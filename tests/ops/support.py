"""Helpers of the operations tests: records with chosen timestamps, a group that has consumed
and committed part of them, Kafka's own command-line tools from the cached jars, and a YAML
parser (PyYAML when installed, else the snakeyaml inside those same jars)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def produce(bootstrap: str, topic: str, counts: Mapping[int, int]) -> None:
    """``counts[p]`` records on partition p; record i is stamped BASE_MS + i seconds."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(
                topic,
                value=b"x",
                key=f"{partition}:{i}",
                partition=partition,
                timestamp=BASE_MS + i * 1000,
            )
    assert producer.flush(30) == 0


def consume_and_commit(
    bootstrap: str, group: str, topic: str, commit: Mapping[int, int], total: int
) -> None:
    """Join ``group``, read all ``total`` records, commit ``commit[p]`` per partition, leave."""
    consumer = _consumer(bootstrap, group, topic)
    try:
        seen: list[object] = []

        def read() -> bool:
            seen.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
            return len(seen) >= total

        wait_for(read, what=f"{total} records")
        offsets = [TopicPartition(topic, p, o) for p, o in commit.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def group_member(bootstrap: str, group: str, topic: str) -> Consumer:
    """A live member of ``group`` with its partitions assigned; the caller closes it."""
    consumer = _consumer(bootstrap, group, topic)

    def assigned() -> bool:
        consumer.poll(0.2)  # joins the group; what it reads does not matter here
        return bool(consumer.assignment())

    wait_for(assigned, what="assignment")
    return consumer


def _consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    return consumer


def new_group() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def kafka_jars() -> Path:
    """The folder of Kafka's jars that scripts/kafka.sh fetched (skip when absent)."""
    cache = Path(os.environ.get("CERT_CONSUMER_CACHE") or REPO / ".cache")
    found = sorted(p for p in cache.glob("kafka-jars-*") if (p / ".complete").exists())
    if not found or shutil.which("java") is None:
        pytest.skip("needs Java and the Kafka jars (scripts/kafka.sh start fetches them)")
    return found[-1]


def kafka_tool(main_class: str, *args: str) -> str:
    """Run one of Kafka's own tools (e.g. ConsumerGroupCommand); return its stdout."""
    done = subprocess.run(
        ["java", "-cp", f"{kafka_jars()}/*", main_class, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def parse_tool_table(text: str, group: str) -> list[dict[str, str]]:
    """The rows of a kafka-consumer-groups table about ``group``, keyed by the header names."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    header = next(cells for cells in lines if cells[:1] == ["GROUP"])
    return [dict(zip(header, cells, strict=True)) for cells in lines if cells[0] == group]


def load_yaml(paths: Sequence[Path]) -> dict[Path, list[Any]]:
    """Every document of every file, parsed by a real YAML parser."""
    return {p: [d for d in yaml.safe_load_all(p.read_text()) if d is not None] for p in paths}
