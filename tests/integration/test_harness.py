"""Smoke tests proving the harness is real: a Kafka broker that keeps group offsets, and a
PostgreSQL that keeps committed transactions and drops rolled-back ones."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.store import torus

pytestmark = pytest.mark.integration


def _consume_values(consumer: Consumer, count: int) -> list[bytes]:
    values: list[bytes] = []
    for _ in range(200):
        for msg in consumer.consume(num_messages=count - len(values), timeout=0.5):
            assert msg.error() is None, msg.error()
            values.append(msg.value())
        if len(values) >= count:
            return values
    raise AssertionError(f"consumed only {len(values)} of {count} messages")


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )


def test_group_offsets_are_committed_and_resumed(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("harness")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(10):
        producer.produce(topic, value=f"m{i}".encode())
    assert producer.flush(30) == 0
    group = f"g-{uuid.uuid4().hex[:8]}"

    first = _consumer(kafka_bootstrap, group)
    first.subscribe([topic])
    assert _consume_values(first, 4) == [b"m0", b"m1", b"m2", b"m3"]
    first.commit(asynchronous=False)
    first.close()

    second = _consumer(kafka_bootstrap, group)
    committed = second.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == 4
    second.subscribe([topic])
    assert _consume_values(second, 6) == [f"m{i}".encode() for i in range(4, 10)]
    second.close()


def test_postgres_transactions_commit_and_roll_back(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(torus.sections).values(id=1, slug="s1", title="Course"))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(sa.insert(torus.sections).values(id=2, slug="s2", title="Lost"))
        raise RuntimeError("roll back")
    with engine.connect() as conn:
        ids = conn.execute(sa.select(torus.sections.c.id)).scalars().all()
        driver = conn.exec_driver_sql("select 1").cursor
    assert ids == [1]
    assert type(driver).__module__.startswith("psycopg")


def test_each_test_gets_an_empty_database(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(torus.sections)).scalar() == 0
