"""Liveness bookkeeping: each loop beats after every unit of progress, idle wait, or wait for a
dependency (a loop waiting for PostgreSQL is alive; only a wedged one stops beating).

``/healthz`` is healthy when every running loop has beaten within its deadline; readiness is
decided by the caller from ``ready`` flags (partitions assigned, database reachable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Heartbeats:
    """Last beat per loop name, read by the health endpoint from another thread."""

    def __init__(self, deadline_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._deadline = deadline_seconds
        self._clock = clock
        self._last: dict[str, float] = {}
        self._ready: dict[str, bool] = {}
        self._lock = threading.Lock()

    def beat(self, loop: str) -> None:
        with self._lock:
            self._last[loop] = self._clock()

    def forget(self, name: str) -> None:
        """Stop watching ``name`` (a phase that ended, such as start-up)."""
        with self._lock:
            self._last.pop(name, None)
            self._ready.pop(name, None)

    def set_ready(self, loop: str, ready: bool) -> None:
        with self._lock:
            self._ready[loop] = ready

    def stale(self) -> dict[str, float]:
        """Loops whose last beat is older than the deadline, with its age in seconds."""
        now = self._clock()
        with self._lock:
            ages = {name: now - last for name, last in self._last.items()}
        return {name: age for name, age in ages.items() if age > self._deadline}

    def not_ready(self) -> list[str]:
        with self._lock:
            return sorted(name for name, ready in self._ready.items() if not ready)
