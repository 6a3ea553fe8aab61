"""A background thread that reads the running services' counters and memory every fraction of
a second, for the throughput-over-time plot and the peak RSS figure."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from bench.e2e.service import ServiceProcess

CONSUMED = "cert_consumer_events_consumed_total"
EVALUATED = "cert_consumer_evaluations_total"
PUBLISHED = "cert_consumer_events_published_total"


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the sampler started
    consumed: float
    evaluated: float
    published: float
    rss_bytes: int  # summed over the processes


@dataclass
class Timeline:
    label: str
    samples: list[Sample] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "t": [round(s.t, 3) for s in self.samples],
            "consumed": [s.consumed for s in self.samples],
            "evaluated": [s.evaluated for s in self.samples],
            "published": [s.published for s in self.samples],
            "rss_bytes": [s.rss_bytes for s in self.samples],
        }


class Sampler:
    """``with Sampler(label, services) as timeline:`` samples until the block ends."""

    def __init__(self, label: str, services: list[ServiceProcess], interval: float = 0.25) -> None:
        self.timeline = Timeline(label)
        self._services = services
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{label}", daemon=True)
        self._started = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            consumed = evaluated = published = 0.0
            rss = 0
            for service in self._services:
                if service.proc is None or service.proc.poll() is not None:
                    continue
                values = service.metrics()
                consumed += values.get(CONSUMED, 0.0)
                evaluated += values.get(EVALUATED, 0.0)
                published += values.get(PUBLISHED, 0.0)
                rss += service.rss_bytes()
            sample = Sample(time.monotonic() - self._started, consumed, evaluated, published, rss)
            self.timeline.samples.append(sample)
            self._stop.wait(self._interval)

    def __enter__(self) -> Timeline:
        self._started = time.monotonic()
        self._thread.start()
        return self.timeline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
