"""The loops' shared skeleton: run a step until stopped, ride out transient failures with capped
exponential backoff, stay alive (beating) while waiting.

Database connection failures and registry outages are transient: the loop backs off and
retries the same work without committing past it. Anything else is a bug or poison and is
handled where it is raised, or ends the loop (the runtime then stops the process).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from consumer.errors import TransientError
from consumer.observability.logs import Throttled


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
    """Capped exponential backoff with jitter: attempt n waits a random time in
    [d/2, d], d = min(cap, first * 2^n); ``reset`` after a success.

    The jitter keeps the loops of every pod from retrying in lock-step after a blip, which
    would hit a recovering database with all of them at once.
    """

    cap: float
    first: float = 0.2
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = float(min(self.cap, self.first * (2 ** min(self.attempt, 32))))
        self.attempt += 1
        return ceiling * (0.5 + self.rng.random() / 2)

    def reset(self) -> None:
        self.attempt = 0


def wait_beating(stop: threading.Event, seconds: float, beat: Callable[[], None]) -> bool:
    """Wait ``seconds`` (or until ``stop``), beating at least once a second: a loop that
    waits for a dependency is alive, not stuck. True when the wait ended by ``stop``."""
    deadline = time.monotonic() + seconds
    while True:
        beat()
        left = deadline - time.monotonic()
        if left <= 0:
            return stop.is_set()
        if stop.wait(min(left, 1.0)):
            return True


def first_line(exc: BaseException) -> str:
    """The first line of an error, for a log field or a readiness reason."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def wait_for(
    woken: Callable[[float], bool],
    seconds: float,
    *,
    stop: threading.Event,
    beat: Callable[[], None],
    chunk: float = 0.25,
) -> bool:
    """Wait up to ``seconds`` in pieces of ``woken`` (a wait that returns True when the loop is
    woken early, e.g. by a database notification), beating between pieces and ending on
    ``stop``. True when woken."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        beat()
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if woken(min(left, chunk)):
            return True
    return False


def run_until_stopped(
    step: Callable[[], bool],
    *,
    stop: threading.Event,
    beat: Callable[[], None],
    max_backoff: float,
    idle: Callable[[], None],
    on_transient: Callable[[Exception], None],
    on_success: Callable[[], None],
    retrying: Throttled,
    event: str,
) -> None:
    """Call ``step`` until ``stop`` is set; when it says there is nothing more to do right now
    (False), call ``idle``, the loop's own way of waiting for work (beating, ending on stop).

    A transient failure of either goes to ``on_transient`` (the loop marks its dependency down,
    drops a connection), is logged as ``event`` (throttled per error class) and retried after a
    backoff of at most ``max_backoff`` seconds during which the loop beats; a success calls
    ``on_success`` and resets the backoff. Any other exception propagates: the loop is broken,
    and the runtime ends the process.
    """
    backoff = Backoff(max_backoff)
    while not stop.is_set():
        try:
            more = step()
            backoff.reset()
            on_success()
            beat()
            if not more:
                idle()
        except Exception as exc:
            if not is_transient(exc):
                raise
            on_transient(exc)
            delay = backoff.next_delay()
            retrying.warning(event, type(exc), error=first_line(exc), delay_s=round(delay, 2))
            wait_beating(stop, delay, beat)
