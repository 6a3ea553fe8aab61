"""Polling with deadlines: every phase synchronises on observed conditions, never on sleeps,
and a condition that never comes true fails the phase with its name instead of hanging."""

from __future__ import annotations

import time
from collections.abc import Callable


class DeadlineExceededError(RuntimeError):
    """A condition a phase waited for did not come true in time."""


def until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> float:
    """Call ``check`` every ``interval`` seconds until it returns True; the monotonic time at
    which it did. Raises DeadlineExceededError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise DeadlineExceededError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
