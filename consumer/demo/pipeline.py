"""The running demo: plays the course's phases as Torus would (commit, then produce the trigger),
waits until the service is idle after each, and reads how far it got for the live display.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from consumer.demo import course
from consumer.demo.display import Display, OutputWatcher, Snapshot
from consumer.demo.expected import Expected
from consumer.domain import rules
from consumer.errors import FatalError
from consumer.events.envelope import Outgoing, build_headers, format_key
from consumer.kafka.delivery import deliver
from consumer.runtime import Service, build_codec
from consumer.store import database, debounce, outbox
from consumer.store.facts import load_facts
from consumer.testing.kafka import QUIET_KAFKA

SOURCE = "urn:oli:torus:demo"
PHASE_SECONDS = 2.0  # one phase's activity is spread over about this long, to be watchable
SETTLE_SECONDS = 45.0  # a phase not fully processed by then fails the demo
_REFRESH_SECONDS = 0.1
_COUNTS = sa.text(
    """
    SELECT count(*) FILTER (WHERE state = 'earned') AS earned,
           count(*) FILTER (WHERE state = 'pending') AS pending_approval,
           count(*) FILTER (WHERE with_distinction) AS with_distinction
    FROM public.granted_certificates
    """
)
_GRANTS = sa.text(
    """
    SELECT c.section_id, g.user_id, g.state::text AS state, g.with_distinction
    FROM public.granted_certificates g JOIN public.certificates c ON c.id = g.certificate_id
    """
)


class Pipeline:
    """The running demo: plays the phases as Torus, and reads how far the service got."""

    def __init__(
        self,
        plan: course.CoursePlan,
        service: Service,
        watcher: OutputWatcher,
        url: str,
        display: Display,
    ) -> None:
        self.plan = plan
        self.service = service
        self.watcher = watcher
        self.display = display
        self.engine = database.create_engine(url)
        self.started = time.monotonic()
        self.produced = 0
        self.phase = ("", 0)
        self._codec = build_codec(service.settings)
        self._producer = Producer(
            {"bootstrap.servers": service.settings.bootstrap_servers, "client.id": "demo-torus"}
            | {"enable.idempotence": True, "linger.ms": 2, **QUIET_KAFKA}
        )
        self._shown_at = 0.0

    def run(self) -> bool:
        """Play every phase, each followed by a wait until the pipeline is idle."""
        for number, phase in enumerate(self.plan.phases, start=1):
            self.phase = (phase.title, number)
            self._play(phase)
            if not self.settle():
                return False
        return True

    def _play(self, phase: course.Phase) -> None:
        pause = min(PHASE_SECONDS / max(len(phase.steps), 1), 0.2)
        for step in phase.steps:
            with self.engine.begin() as conn:
                events = course.write_step(conn, step, datetime.now(UTC))
            self._publish(events)
            self.refresh()
            time.sleep(pause)
        for section_id, threshold in phase.lowered:
            with self.engine.begin() as conn:
                event = course.lower_threshold(conn, section_id, threshold, datetime.now(UTC))
            self._publish([event])

    def _publish(self, events: list[course.TorusEvent]) -> None:
        outgoing = [
            Outgoing(
                event.event_type.default_topic,
                self._codec.encode(event.event_type, event.record),
                format_key(event.section_id, event.user_id),
                list(
                    build_headers(
                        event_id=str(uuid.uuid4()),
                        ce_type=self._codec.catalogue.latest(event.event_type).ce_type,
                        source=SOURCE,
                        time=datetime.now(UTC),
                    )
                ),
            )
            for event in events
        ]
        failures = [err for err in deliver(self._producer, outgoing, report_timeout=10) if err]
        if failures:
            raise FatalError(f"producing Torus events failed: {failures[:3]}")
        self.produced += len(events)

    def settle(self) -> bool:
        """Wait until the service has consumed, evaluated and published everything."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while not self.refresh(force=True).settled():
            if self.service.stop.is_set() or time.monotonic() > deadline:
                return False
            time.sleep(_REFRESH_SECONDS)
        return True

    def refresh(self, *, force: bool = False) -> Snapshot:
        """Read the pipeline; show it at most every ``_REFRESH_SECONDS`` unless forced."""
        snapshot = self.snapshot()
        if force or time.monotonic() - self._shown_at >= _REFRESH_SECONDS:
            self.display.show(snapshot)
            self._shown_at = time.monotonic()
        return snapshot

    def snapshot(self) -> Snapshot:
        """Metrics first, then the tables, then the output topics: a figure read earlier can only
        lag behind one read later, so ``Snapshot.settled`` is never true too early."""
        registry = self.service.metrics.registry
        topics = self.service.settings.input_topics
        consumed = sum(_count(registry, "events_consumed", topic=t) for t in topics)
        kinds = ("no_change", "create", "upgrade")
        evaluations = {d: _count(registry, "evaluations", decision=d) for d in kinds}
        transitions = {
            k: _count(registry, "transitions", kind=k, state="earned")
            + _count(registry, "transitions", kind=k, state="pending")
            for k in kinds[1:]
        }
        with self.engine.connect() as conn:
            row = conn.execute(_COUNTS).one()
            pending_keys = debounce.stats(conn).pending
            outbox_total = outbox.total(conn)
            outbox_backlog = outbox.backlog(conn).unpublished
        self.watcher.poll()
        title, number = self.phase
        return Snapshot(
            phase=title,
            phase_number=number,
            phases=len(self.plan.phases),
            elapsed=time.monotonic() - self.started,
            produced=self.produced,
            consumed=consumed,
            evaluations=evaluations,
            transitions=transitions,
            pending_keys=pending_keys,
            outbox_total=outbox_total,
            outbox_backlog=outbox_backlog,
            **row._asdict(),
            received=tuple(self.watcher.received),
            duplicates=self.watcher.duplicates,
        )

    def check(self, expected: Expected) -> dict[str, Any]:
        """The service's results next to the model's, and the rules applied to the final facts:
        with everything processed, no learner may still be owed a transition."""
        snapshot = self.refresh(force=True)
        with self.engine.connect() as conn:
            grants = {
                (r.section_id, r.user_id): (r.state, r.with_distinction)
                for r in conn.execute(_GRANTS)
            }
            facts = load_facts(conn, self.plan.learner_keys())
        owed = sorted(key for key, f in facts.items() if rules.decide(f).changes)
        differ = sorted(
            k
            for k in grants.keys() | expected.grants.keys()
            if grants.get(k) != expected.grants.get(k)
        )
        return {
            "events_produced": snapshot.produced,
            "events_consumed": snapshot.consumed,
            "evaluations": sum(snapshot.evaluations.values()),
            "expected": expected.totals(),
            "actual": snapshot.totals(),
            "learners_differing": [list(k) for k in differ],
            "learners_owed_a_transition": [list(k) for k in owed],
            "duplicates_received": snapshot.duplicates,
        }

    def close(self) -> None:
        self._producer.close()
        self.engine.dispose()


def _count(registry: CollectorRegistry, name: str, **labels: str) -> int:
    return int(registry.get_sample_value(f"cert_consumer_{name}_total", labels) or 0)
