"""Smoke test of `bench/run`: its smallest mode (the latency phase at one low rate for a few
seconds) against the session's Kafka broker, with its own embedded PostgreSQL, so the
end-to-end benchmark keeps working as the service changes. Targets are not asserted; only that
the run completes, every burst got its one output event, and the report and JSON are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_quick_latency_phase_writes_a_report(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.e2e", "--quick", "--phases", "latency",
            "--latency-rates", "150", "--rate-seconds", "3", "--bootstrap", kafka_bootstrap,
            "--output-dir", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((out / "e2e.json").read_text())
    service = figures["phases"]["paced"]["rates"]["150"]["service"]
    assert service["bursts"] > 0
    assert service["bursts_without_output"] == 0
    assert service["duplicate_output_ids"] == 0
    assert service["statements"]["total"] > 0
    report = (out / "REPORT.md").read_text()
    assert "## 4. Latency" in report
