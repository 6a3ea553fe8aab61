"""Helpers shared by the tests: polling with a deadline, the evaluator loop in a thread, the
CLI as a subprocess and its one-line failures."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
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


REPO = Path(__file__).resolve().parent.parent


def run_cli(env: dict[str, str], *args: str, timeout: float = 90) -> tuple[int, list[str]]:
    """`cert-consumer <args>` as a subprocess to its end: the exit code and stderr's lines."""
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr.splitlines()


def assert_one_line(lines: list[str], *expected: str) -> None:
    """The CLI's failure as it must look: exactly one ``cert-consumer:`` line, the last one,
    with every fragment of ``expected`` in it, and no traceback anywhere."""
    said = [line for line in lines if line.startswith("cert-consumer: ")]
    assert len(said) == 1 and lines[-1] == said[0], lines[-15:]
    assert all(part in said[0] for part in expected), said[0]
    assert not any("Traceback" in line for line in lines), lines[-30:]
