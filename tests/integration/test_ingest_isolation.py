"""The ingest loop on the real broker and database with faults injected into our own code: an
exception while turning one record into a trigger, a non-transient database error on one
record's upsert, and an exception while announcing one change record's earned certificate.
Each faulty record ends on the dead-letter topic with the exception's class
(``dlq.error.kind=unexpected``); the loop goes on, the good records of the same batch are
recorded, and the offsets move past all of them.

The hostile suite proves that no input of ours reaches an unforeseen exception; this proves
what happens if one ever does.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumer.config import load_settings
from consumer.events.catalogue import EventType
from consumer.events.codec import Codec, Decoded
from consumer.kafka import clients
from consumer.observability.dependencies import Dependencies
from consumer.observability.metrics import Metrics
from consumer.pipeline import ingest
from consumer.pipeline.ingest import IngestLoop
from consumer.store import debounce
from consumer.store.service_tables import pending_evaluations
from tests.faults.verdict import read_topic
from tests.faults.world import Triggers, score_record
from tests.integration.service import Topics, codec, service_env
from tests.support import wait_for

pytestmark = pytest.mark.integration

SECTION = 1
GOOD = list(range(1, 9))
CODE_FAULT = 666  # our decoding path raises KeyError on this learner's record
DATABASE_FAULT = 777  # the upsert of a batch holding this learner fails with a DataError
ANNOUNCE_FAULT = 888  # announcing this granted certificate raises RuntimeError


class FaultyCodec(Codec):
    """The real codec, raising an unforeseen KeyError after decoding one learner's record."""

    def decode(self, value: bytes | None, **kwargs: Any) -> Decoded:
        decoded = super().decode(value, **kwargs)
        if decoded.record.get("user_id") == CODE_FAULT:
            raise KeyError("occurred_at")
        return decoded


def _faulty_upsert(real: Callable[..., int]) -> Callable[..., int]:
    def upsert(conn: sa.Connection, batch: debounce.TriggerBatch, **kwargs: Any) -> int:
        if (SECTION, DATABASE_FAULT) in batch.counts:
            raise sa.exc.DataError("INSERT ...", {}, Exception("value out of range"))
        return real(conn, batch, **kwargs)

    return upsert


def _faulty_announce(real: Callable[..., Any]) -> Callable[..., Any]:
    def announce(conn: sa.Connection, ids: Any, **kwargs: Any) -> Any:
        ids = list(ids)
        if ANNOUNCE_FAULT in ids:
            raise RuntimeError("announcement failed")
        return real(conn, ids, **kwargs)

    return announce


def change(granted_certificate_id: int) -> bytes:
    after = {"id": granted_certificate_id, "state": "earned"}
    return json.dumps({"op": "u", "before": None, "after": after}).encode()


@dataclass
class Loop:
    thread: threading.Thread
    topics: Topics
    changes: str  # the granted_certificates change topic
    metrics: Metrics


@pytest.fixture
def loop_thread(
    database_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], monkeypatch: Any
) -> Iterator[Loop]:
    monkeypatch.setattr(ingest.debounce, "upsert", _faulty_upsert(debounce.upsert))
    monkeypatch.setattr(ingest, "announce_earned", _faulty_announce(ingest.announce_earned))
    topics = Topics.create(new_topic, partitions=1)
    prefix = f"cdc{uuid.uuid4().hex[:8]}"
    changes = f"{prefix}.public.granted_certificates"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(changes, 1, 1)])[changes].result(30)
    cdc = {
        "CERT_CONSUMER_CDC_TOPIC_PREFIX": prefix,
        "CERT_CONSUMER_CDC_TABLES": "granted_certificates",
    }
    settings = load_settings(service_env(database_url, kafka_bootstrap, topics) | cdc)
    metrics = Metrics()
    stop = threading.Event()
    loop = IngestLoop(
        consumer=Consumer(clients.consumer_config(settings)),
        admin=AdminClient(clients.admin_config(settings)),
        dlq_producer=Producer(clients.producer_config(settings)),
        codec=FaultyCodec(codec().catalogue),
        engine=sa.create_engine(database_url),
        settings=settings,
        metrics=metrics,
        stop=stop,
        beat=lambda: None,
        set_ready=lambda _ready: None,
        dependencies=Dependencies(metrics.dependency_up),
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    yield Loop(thread, topics, changes, metrics)
    stop.set()
    thread.join(30)
    admin.delete_topics([changes])[changes].result(30)


def test_an_exception_of_ours_on_one_record_dead_letters_it_and_the_loop_goes_on(
    loop_thread: Loop,
    engine: sa.Engine,
    kafka_bootstrap: str,
) -> None:
    thread, topics, metrics = loop_thread.thread, loop_thread.topics, loop_thread.metrics
    triggers = Triggers(kafka_bootstrap, topics, codec())
    now = datetime.now(UTC)
    for user_id in [*GOOD[:4], CODE_FAULT, *GOOD[4:6], DATABASE_FAULT, *GOOD[6:]]:
        triggers.send(topics.scores, EventType.PAGE_SCORE_UPDATED, score_record(1, user_id, now))
    triggers.flush()

    dead: list[Any] = []
    wait_for(
        lambda: dead.extend(read_topic(kafka_bootstrap, topics.dlq)) or len(dead) >= 2,
        timeout=60,
        what="two dead letters",
    )
    headers = [dict(m.headers()) for m in dead]
    assert sorted(h["dlq.error.class"] for h in headers) == [b"DataError", b"KeyError"]
    assert {h["dlq.error.kind"] for h in headers} == {b"unexpected"}
    with engine.connect() as conn:
        pending = set(conn.execute(sa.select(pending_evaluations.c.user_id)).scalars())
    assert pending == set(GOOD)
    assert thread.is_alive()  # the loop did not end
    sample = metrics.registry.get_sample_value
    assert sample("cert_consumer_unexpected_record_errors_total", {"error": "KeyError"}) == 1
    assert sample("cert_consumer_unexpected_record_errors_total", {"error": "DataError"}) == 1

    # The offsets move past the faulty records: a restart would not read them again.
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topics.scores}"})
    try:
        wait_for(
            lambda: (
                probe.committed([TopicPartition(topics.scores, 0)], timeout=10)[0].offset
                == len(GOOD) + 2
            ),
            timeout=30,
            what="offsets committed past every record",
        )
    finally:
        probe.close()


def test_an_exception_while_announcing_one_change_dead_letters_it_and_the_loop_goes_on(
    loop_thread: Loop, kafka_bootstrap: str
) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for granted_certificate_id in (5, ANNOUNCE_FAULT, 6):  # 5 and 6 exist nowhere: no event
        producer.produce(loop_thread.changes, change(granted_certificate_id), b"{}")
    producer.produce(loop_thread.changes, b"not a change", b"{}")
    assert producer.flush(30) == 0

    dead: list[Any] = []
    wait_for(
        lambda: dead.extend(read_topic(kafka_bootstrap, loop_thread.topics.dlq)) or len(dead) >= 2,
        timeout=60,
        what="two dead letters",
    )
    classes = sorted(dict(m.headers())["dlq.error.class"] for m in dead)
    assert classes == [b"MalformedChangeError", b"RuntimeError"]
    assert loop_thread.thread.is_alive()  # the loop did not end
    probe = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{loop_thread.topics.scores}"}
    )
    try:
        wait_for(
            lambda: (
                probe.committed([TopicPartition(loop_thread.changes, 0)], timeout=10)[0].offset == 4
            ),
            timeout=30,
            what="offsets committed past every change",
        )
    finally:
        probe.close()
