"""Produce a batch and wait for every delivery report before saying what was delivered.

Both the relay (outbox events) and ingest (dead-letter records) must know, message by message,
what the broker acknowledged before they mark a row published or store an offset. librdkafka
reports every message within ``message.timeout.ms`` (success or failure), so waiting for all
reports is bounded; re-producing after a partial wait would only queue duplicates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.errors import RefusedError, TransientError
from consumer.events.envelope import Outgoing
from consumer.kafka import refusals

_UNREPORTED = KafkaError(KafkaError._MSG_TIMED_OUT, "no delivery report")
STOP_GRACE_SECONDS = 2.0


class UndeliveredError(TransientError):
    """Kafka did not acknowledge what had to be delivered (an outbox batch, a dead-letter
    copy): the work is retried, nothing is marked done."""


def deliver(
    producer: Producer,
    messages: Sequence[Outgoing],
    *,
    report_timeout: float,
    stop: threading.Event | None = None,
) -> list[KafkaError | None]:
    """The delivery outcome of each message, in order: None when acknowledged.

    A ``stop`` cuts the wait to :data:`STOP_GRACE_SECONDS` more, so a shutdown is not held for
    ``message.timeout.ms`` by a broker that is down; unreported messages count as undelivered
    (the relay publishes them again later, with the same ids).
    """
    reports: dict[int, KafkaError | None] = {}

    def on_delivery(index: int) -> Callable[[KafkaError | None, Message], None]:
        def record(err: KafkaError | None, _msg: Message) -> None:
            reports[index] = err

        return record

    for index, message in enumerate(messages):
        while True:
            try:
                producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=message.headers,
                    on_delivery=on_delivery(index),
                )
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: serve reports, then retry
            except KafkaException as exc:
                # Refused before it left (e.g. larger than message.max.bytes): that is this
                # message's outcome, reported like a broker's refusal.
                reports[index] = exc.args[0]
                break
    deadline = time.monotonic() + report_timeout
    stopping = False
    while len(reports) < len(messages) and time.monotonic() < deadline:
        if stop is not None and stop.is_set() and not stopping:
            stopping = True
            deadline = min(deadline, time.monotonic() + STOP_GRACE_SECONDS)
        producer.flush(0.2)
    outcome = [reports.get(index, _UNREPORTED) for index in range(len(messages))]
    for message, err in zip(messages, outcome, strict=True):
        denied = None if err is None else refusals.denial(err, "WRITE", topic=message.topic)
        if denied is not None:
            raise RefusedError(denied)  # no retry can deliver it: said, and the process ends
    return outcome


def close_producer(producer: Producer, grace: float = STOP_GRACE_SECONDS) -> None:
    """Give queued messages ``grace`` seconds, then drop what is left and close: at shutdown
    nothing waits for a broker that is down. What was dropped was never acknowledged, so its
    outbox row stays unpublished (or its offset unstored) and it is sent again later."""
    if producer.flush(grace) > 0:
        producer.purge()
        producer.flush(0)
    producer.close()
