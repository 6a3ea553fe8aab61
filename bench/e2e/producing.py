"""Writing the workload to the input topics: as fast as possible (a backlog for the ingest,
evaluation, memory and scaling phases) or paced to a schedule (the rate phases), where the time
each burst's last event was handed to the producer is what the latency is measured from."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from bench.e2e.topics import Topics
from bench.e2e.workload import SCORE, Encoded, Encoder, Event, Key


def make_producer(bootstrap: str, *, linger_ms: int) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "log.connection.close": False,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )


class Failures:
    """Delivery reports with an error (flush() alone does not say a record was refused)."""

    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.count += 1
            self.first = self.first or str(err)


_failures = Failures()


def _send(producer: Producer, topic: str, item: Encoded) -> None:
    while True:
        try:
            producer.produce(
                topic, item.value, item.key, headers=item.headers, on_delivery=_failures
            )
            return
        except BufferError:
            producer.poll(0.05)


def _flush(producer: Producer) -> None:
    before = _failures.count
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} input records were not delivered within 120 s")
    if _failures.count > before:
        raise RuntimeError(
            f"{_failures.count - before} input records failed delivery: {_failures.first}"
        )


@dataclass(frozen=True)
class Produced:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def produce_backlog(
    bootstrap: str, topics: Topics, encoder: Encoder, events: Iterable[Event]
) -> Produced:
    """Encode and produce every event as fast as the producer takes them; flushed."""
    producer = make_producer(bootstrap, linger_ms=20)
    started = time.perf_counter()
    count = 0
    for event in events:
        item = encoder.encode(event)
        _send(producer, topics.scores if item.kind == SCORE else topics.posts, item)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    _flush(producer)
    return Produced(count, time.perf_counter() - started)


def produce_encoded(bootstrap: str, topics: Topics, encoded: Sequence[Encoded]) -> Produced:
    """Produce pre-encoded events as fast as the producer takes them (no encoding in the
    loop: several times the service's ingest rate); flushed."""
    producer = make_producer(bootstrap, linger_ms=20)
    started = time.perf_counter()
    for i, item in enumerate(encoded):
        _send(producer, topics.scores if item.kind == SCORE else topics.posts, item)
        if i % 10_000 == 0:
            producer.poll(0)
    _flush(producer)
    return Produced(len(encoded), time.perf_counter() - started)


@dataclass
class Paced:
    """What a paced run sent: when each burst's last event went out (monotonic seconds)."""

    events: int = 0
    seconds: float = 0.0
    last_sent: dict[Key, float] = field(default_factory=dict)
    lateness: list[float] = field(default_factory=list)  # seconds behind schedule, per event

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def produce_paced(
    bootstrap: str, topics: Topics, events: Sequence[Event], encoded: Sequence[Encoded]
) -> Paced:
    """Send each pre-encoded event at its planned time (sleeping until then is the pacing)."""
    producer = make_producer(bootstrap, linger_ms=5)
    paced = Paced()
    started = time.monotonic()
    for event, item in zip(events, encoded, strict=True):
        wait = started + event.at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _send(producer, topics.scores if item.kind == SCORE else topics.posts, item)
        sent = time.monotonic()
        paced.lateness.append(max(0.0, sent - started - event.at))
        if event.last_of_burst:
            paced.last_sent[(event.section_id, event.user_id)] = sent
        producer.poll(0)
    paced.seconds = time.monotonic() - started
    paced.events = len(events)
    _flush(producer)
    return paced
