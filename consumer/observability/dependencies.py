"""What the service depends on, and whether each one answers now: PostgreSQL, Kafka (and its
input topics existing) and the schema registry.

Loops report what they see (a failed query, a broker that is down, an unregistered subject);
readiness and ``cert_consumer_dependency_up{dependency}`` read it. Liveness never does: a
dependency that is down makes the process unready, never "stuck", so an outage does not turn
into a restart storm. A change of state is logged once, not at every retry.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

import structlog
from prometheus_client import Gauge

from consumer.events.errors import RegistryUnavailableError, UnregisteredSchemaError
from consumer.kafka.delivery import UndeliveredError

log = structlog.get_logger("consumer.observability.dependencies")


class Dependency(enum.StrEnum):
    POSTGRESQL = "postgresql"
    KAFKA = "kafka"
    SCHEMA_REGISTRY = "schema_registry"
    # The input topics: each subscribed one exists (with auto-create off, a missing one
    # would otherwise leave the service reading the others in silence).
    KAFKA_TOPICS = "kafka_topics"


def blame(exc: BaseException) -> Dependency:
    """Which dependency a transient failure of a loop is about: an unacknowledged delivery is
    Kafka's, a registry error the registry's, anything else (a query) PostgreSQL's."""
    if isinstance(exc, UndeliveredError):
        return Dependency.KAFKA
    if isinstance(exc, RegistryUnavailableError | UnregisteredSchemaError):
        return Dependency.SCHEMA_REGISTRY
    return Dependency.POSTGRESQL


@dataclass(frozen=True)
class State:
    up: bool
    reason: str


class Dependencies:
    """Thread-safe last known state of each dependency (unknown counts as up)."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._states: dict[Dependency, State] = {}
        self._lock = threading.Lock()

    def up(self, dependency: Dependency) -> None:
        self._set(dependency, State(True, ""))

    def down(self, dependency: Dependency, reason: str) -> None:
        self._set(dependency, State(False, reason[:300]))

    def _set(self, dependency: Dependency, state: State) -> None:
        with self._lock:
            before = self._states.get(dependency)
            self._states[dependency] = state
        self._gauge.labels(dependency.value).set(1 if state.up else 0)
        if before is None and state.up:
            return
        if before is None or before.up != state.up:
            if state.up:
                log.info("dependency_up", dependency=dependency.value)
            else:
                log.warning("dependency_down", dependency=dependency.value, reason=state.reason)

    def problems(self) -> dict[str, str]:
        """Each dependency that is down, with why."""
        with self._lock:
            return {d.value: s.reason for d, s in self._states.items() if not s.up}
