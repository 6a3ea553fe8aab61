"""Fault scenarios on the real broker and database: the mode (short in CI, long for release
checks: CERT_CONSUMER_FAULTS=long). The fixtures they share with the integration tests
(``launch``, ``seed``, ``own_database``, ``own_broker``) are in ``tests/conftest.py``."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("CERT_CONSUMER_FAULTS") == "long"

pytestmark = pytest.mark.faults


def scale(short: int, long: int) -> int:
    """A count for this mode."""
    return long if LONG else short
