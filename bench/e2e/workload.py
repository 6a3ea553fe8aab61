"""The seeded, bursty workload: each learner's activity comes in bursts of a few events within
about a second (mostly page_score_updated, some post_created), bursts of different learners
interleaved in time, as a class at work produces them. The same seed gives the same schedule,
so the service and the per-event baseline see identical input.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from consumer.events.catalogue import EventType
from consumer.events.codec import Codec
from consumer.events.envelope import Headers, build_headers, format_key

Key = tuple[int, int]
SCORE, POST = 0, 1
_SOURCE = "urn:bench:e2e"


class Event(NamedTuple):
    """One planned input event; ``at`` is seconds from the schedule's start."""

    at: float
    section_id: int
    user_id: int
    kind: int  # SCORE or POST
    last_of_burst: bool


@dataclass(frozen=True)
class Shape:
    """How bursts look: sizes, how long one lasts, and the share of post_created events."""

    burst_min: int = 3
    burst_max: int = 8
    span_min_s: float = 0.2
    span_max_s: float = 1.0
    post_share: float = 0.15

    @property
    def mean_burst(self) -> float:
        return (self.burst_min + self.burst_max) / 2

    def fitted(self, quiet_window_s: float) -> Shape:
        """A burst must end within the quiet window (else it is two evaluations): spans are
        capped at half the window."""
        if quiet_window_s <= 0:
            return Shape(self.burst_min, self.burst_max, 0.0, 0.0, self.post_share)
        cap = min(self.span_max_s, quiet_window_s / 2)
        return Shape(
            self.burst_min, self.burst_max, min(self.span_min_s, cap), cap, self.post_share
        )


def learners(
    first_section: int, count: int, *, first_user: int = 1_000_000, section_size: int = 1000
) -> list[Key]:
    """``count`` learners (user ids from ``first_user``) in sections of ``section_size``
    starting at ``first_section``."""
    return [(first_section + i // section_size, first_user + i) for i in range(count)]


def bursts_for(rng: random.Random, keys: Sequence[Key], shape: Shape) -> list[tuple[Key, int]]:
    """One burst per key, of a random size."""
    return [(key, rng.randint(shape.burst_min, shape.burst_max)) for key in keys]


def schedule(
    rng: random.Random, bursts: Sequence[tuple[Key, int]], duration_s: float, shape: Shape
) -> list[Event]:
    """Spread the bursts' starts uniformly over ``duration_s`` (so the mean rate is events /
    duration); the events of a burst fall within its random span; sorted by time."""
    events: list[Event] = []
    for (section_id, user_id), size in bursts:
        span = rng.uniform(shape.span_min_s, shape.span_max_s)
        start = rng.uniform(0.0, max(duration_s - span, 0.0))
        offsets = [*sorted(rng.uniform(0.0, span) for _ in range(size - 1)), span]
        for i, offset in enumerate(offsets):
            kind = POST if rng.random() < shape.post_share else SCORE
            events.append(Event(start + offset, section_id, user_id, kind, i == size - 1))
    events.sort()
    return events


def one_each(keys: Iterable[Key]) -> Iterator[Event]:
    """One page_score_updated per key, in key order (the pending-keys memory phase)."""
    for section_id, user_id in keys:
        yield Event(0.0, section_id, user_id, SCORE, True)


class Encoded(NamedTuple):
    """An event ready for Producer.produce: which input topic, key, value, headers."""

    kind: int
    key: bytes
    value: bytes
    headers: Headers


class Encoder:
    """Avro values (single-object framing, as a producer without a registry writes them) and
    CloudEvents headers of input events, through the service's own Codec."""

    def __init__(self, codec: Codec, run_id: str) -> None:
        self._codec = codec
        self._run = run_id
        self._n = 0
        self._types = {
            SCORE: EventType.PAGE_SCORE_UPDATED,
            POST: EventType.POST_CREATED,
        }
        self._ce_types = {k: codec.catalogue.latest(t).ce_type for k, t in self._types.items()}

    def encode(self, event: Event) -> Encoded:
        self._n += 1
        now = datetime.now(UTC)
        record: dict[str, Any]
        if event.kind == SCORE:
            record = {
                "section_id": event.section_id,
                "user_id": event.user_id,
                "resource_id": 101 + self._n % 2,
                "score": 8.0,
                "out_of": 10.0,
                "cause": "GRADED_FINALIZE",
                "occurred_at": now,
            }
        else:
            record = {
                "section_id": event.section_id,
                "user_id": event.user_id,
                "post_id": self._n,
                "annotated_resource_id": None,
                "visibility": "PUBLIC",
                "occurred_at": now,
            }
        headers = build_headers(
            event_id=f"{self._run}-{self._n}",
            ce_type=self._ce_types[event.kind],
            source=_SOURCE,
            time=now,
        )
        value = self._codec.encode(self._types[event.kind], record)
        return Encoded(event.kind, format_key(event.section_id, event.user_id), value, headers)
