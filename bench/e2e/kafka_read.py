"""The benchmark's own consumers: the ingest ceilings (a plain consume of the whole input, and
consume + the service's Avro decode) and the output reader that times each key's
certificate-granted / approval-requested event."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer

from bench.e2e.waiting import until
from consumer.events.codec import Codec

_BATCH = 2000


def _consumer(bootstrap: str, prefix: str, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "group.protocol": "consumer",  # the service's default protocol (KIP-848)
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "log.connection.close": False,
            **extra,
        }
    )


@dataclass(frozen=True)
class Ceiling:
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def consume_all(
    bootstrap: str,
    topics: Sequence[str],
    total: int,
    *,
    codec: Codec | None,
    timeout: float = 600,
) -> Ceiling:
    """Read ``total`` records of ``topics`` from the start, in batches of 2,000 (the service's
    batch size), decoding each value with ``codec`` when given. Timed from the consumer's
    creation (group join and first fetch included, as for the service) to the last record."""
    started = time.perf_counter()
    consumer = _consumer(bootstrap, "ceiling")
    consumer.subscribe(list(topics))
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"ceiling consumer read {seen} of {total} records")
            for msg in consumer.consume(_BATCH, timeout=0.5):
                if msg.error() is not None:
                    continue
                if codec is not None:
                    codec.decode(msg.value())
                seen += 1
        return Ceiling(seen, time.perf_counter() - started)
    finally:
        consumer.close()


@dataclass
class Arrival:
    at: float  # monotonic seconds when the bench read it
    event_id: str
    topic: str


class OutputReader(threading.Thread):
    """Reads the output topics from the start and records, per (section_id, user_id), when its
    first output event was read, and every event id (duplicates show re-publishing)."""

    def __init__(self, bootstrap: str, topics: Sequence[str], codec: Codec) -> None:
        super().__init__(name="output-reader", daemon=True)
        self._codec = codec
        self._consumer = _consumer(bootstrap, "bench-reader")
        self._assigned = threading.Event()
        self._consumer.subscribe(list(topics), on_assign=lambda *_: self._assigned.set())
        self._halt = threading.Event()
        self.first: dict[tuple[int, int], Arrival] = {}
        self.event_ids: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for msg in self._consumer.consume(500, timeout=0.05):
                    if msg.error() is not None:
                        continue
                    at = time.monotonic()
                    record = self._codec.decode(msg.value()).record
                    key = (int(record["section_id"]), int(record["student"]["user_id"]))
                    event_id = str(record["event_id"])
                    self.event_ids.append(event_id)
                    self.first.setdefault(key, Arrival(at, event_id, str(msg.topic())))
        except BaseException as exc:  # reported by the phase, never silently lost
            self.failure = exc
        finally:
            self._consumer.close()

    def wait_assigned(self, timeout: float = 60) -> None:
        until(self._assigned.is_set, timeout=timeout, what="output reader assignment")

    def count(self) -> int:
        if self.failure is not None:
            raise RuntimeError(f"output reader failed: {self.failure!r}")
        return len(self.event_ids)

    def close(self) -> None:
        self._halt.set()
        self.join(15)


@dataclass
class OutputCheck:
    read: int = 0
    distinct_ids: int = 0
    duplicate_ids: int = 0
    keys: int = 0
    ids: list[str] = field(default_factory=list, repr=False)


def read_outputs(
    bootstrap: str, topics: Sequence[str], codec: Codec, expected: int, timeout: float
) -> OutputCheck:
    """Read every output event (until ``expected`` arrived, then one quiet second more so a
    duplicate after the last is still seen); counts and duplicate event ids."""
    reader = OutputReader(bootstrap, topics, codec)
    reader.start()
    try:
        until(lambda: reader.count() >= expected, timeout=timeout, what=f"{expected} outputs")
        time.sleep(1.0)  # an observation window for late duplicates, not a synchronisation
    finally:
        reader.close()
    ids = list(reader.event_ids)
    return OutputCheck(len(ids), len(set(ids)), len(ids) - len(set(ids)), len(reader.first), ids)
