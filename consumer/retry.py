"""Classifies failures at loop boundaries and paces retries with capped exponential backoff.

Database connection failures and registry outages are transient: the loop backs off and
retries the same work without committing past it. Anything else is a bug or poison and is
handled where it is raised.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from consumer.errors import TransientError


def is_transient(exc: BaseException) -> bool:
    """True for failures that retrying the same work can cure."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError
        )
    return isinstance(exc, sa.exc.DisconnectionError | sa.exc.TimeoutError)


@dataclass
class Backoff:
    """0.2 s, 0.4 s, ... doubling up to ``cap``; ``reset`` after a success."""

    cap: float
    first: float = 0.2
    attempt: int = 0

    def next_delay(self) -> float:
        delay = float(min(self.cap, self.first * (2**self.attempt)))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
