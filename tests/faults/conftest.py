"""Fault scenarios on the real broker and database: the mode (short in CI, long for release
checks: CERT_CONSUMER_FAULTS=long), a seed (CERT_CONSUMER_FAULTS_SEED replays one), and a
launcher of service processes."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.localdb import free_port
from tests.integration.service import ServiceProcess

LONG = os.environ.get("CERT_CONSUMER_FAULTS") == "long"

pytestmark = pytest.mark.faults


def scale(short: int, long: int) -> int:
    """A count for this mode."""
    return long if LONG else short


@pytest.fixture
def seed() -> int:
    given = os.environ.get("CERT_CONSUMER_FAULTS_SEED")
    value = int(given) if given else random.randrange(1_000_000)
    print(f"\nfaults: seed {value} (CERT_CONSUMER_FAULTS_SEED={value} replays it)")
    return value


Launcher = Callable[[dict[str, str]], ServiceProcess]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Start a `cert-consumer run` process with its own metrics port; all killed at the end."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        log = tmp_path / f"service-{len(started)}.log"
        own = env | {"CERT_CONSUMER_METRICS_PORT": str(free_port())}
        service = ServiceProcess(own, log).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()
