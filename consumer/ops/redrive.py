"""Dead-letter redrive: once the cause is fixed (a registry configured, a schema registered, a
producer corrected), send dead-lettered records back to the input topic they came from.

A record goes back with its original key, value and headers (the ``dlq.*`` ones removed) plus
``dlq.redriven.from`` naming the dead-letter record, so a trace can follow it. A copy that was
cut to fit the dead-letter topic is not the original any more and is never sent back (it is
counted as ``truncated``); nor is one whose source is not one of our input topics.

Idempotent by construction: the redrive reads under a consumer group of its own
(``<group>.dlq-redrive``) and commits how far it got only after every record it sent was
acknowledged, so a second run sends nothing twice; ``--since``/``--offset`` choose the start
explicitly. A record sent back is a trigger like any other: processing it twice changes nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Message, TopicPartition

from consumer.errors import TransientError
from consumer.events.envelope import Headers, Outgoing
from consumer.kafka.dead_letters import cut_parts, header_list

REDRIVEN_FROM = "dlq.redriven.from"


@dataclass
class RedrivePlan:
    """What a redrive sends back, and what it leaves, by reason."""

    outgoing: list[Outgoing] = field(default_factory=list)
    by_source: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    left: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, object]:
        return {
            "redriven": len(self.outgoing),
            "by_source_topic": dict(sorted(self.by_source.items())),
            "by_error_class": dict(sorted(self.by_error.items())),
            "left": dict(sorted(self.left.items())),
        }


def plan_redrive(messages: Sequence[Message], inputs: Collection[str]) -> RedrivePlan:
    """The records of ``messages`` (dead-letter records) that go back, and where."""
    plan = RedrivePlan()
    for msg in messages:
        headers = header_list(msg)
        source = _text(dict(headers).get("dlq.source.topic"))
        if cut_parts(headers):
            plan.left["truncated"] += 1
        elif source not in inputs:
            plan.left["not_an_input_topic"] += 1
        else:
            plan.outgoing.append(_back(msg, source, headers))
            plan.by_source[source] += 1
            plan.by_error[_text(dict(headers).get("dlq.error.class")) or "unknown"] += 1
    return plan


def read_range(
    consumer: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int], timeout: float
) -> list[Message]:
    """Every record of ``topic`` from ``starts`` up to (not including) ``ends``, per partition."""
    wanted = {p: e for p, e in ends.items() if e > starts.get(p, 0)}
    if not wanted:
        return []
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in wanted])
    found: list[Message] = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(done) < len(wanted):
        if time.monotonic() > deadline:
            raise TransientError(f"reading {topic} did not reach its end within {timeout:g}s")
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error() is not None:
                continue
            partition, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            if offset < wanted.get(partition, -1):
                found.append(msg)
            if offset + 1 >= wanted.get(partition, 0):
                done.add(partition)
    return found


def _back(msg: Message, source: str, headers: Headers) -> Outgoing:
    original: Headers = [(n, v) for n, v in headers if not n.startswith("dlq.")]
    where = f"{msg.topic()}:{msg.partition()}:{msg.offset()}".encode()
    return Outgoing(source, msg.value(), msg.key(), [*original, (REDRIVEN_FROM, where)])


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
