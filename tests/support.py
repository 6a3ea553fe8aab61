"""Helpers shared by the tests: polling with a deadline, the evaluator loop in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa

from consumer.config import Settings
from consumer.observability.dependencies import Dependencies
from consumer.observability.metrics import Metrics
from consumer.pipeline.evaluator import EvaluatorLoop

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns a truthy value, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@contextlib.contextmanager
def evaluator_running(engine: sa.Engine, settings: Settings) -> Iterator[Metrics]:
    """The real evaluator loop in a thread for the block; it must stop within 10 s after."""
    stop = threading.Event()
    metrics = Metrics()
    loop = EvaluatorLoop(
        engine=engine,
        settings=settings,
        metrics=metrics,
        stop=stop,
        beat=lambda: None,
        now=lambda: datetime.now(UTC),
        dependencies=Dependencies(metrics.dependency_up),
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield metrics
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the evaluator did not stop within 10 s of being asked"
