"""`cert-consumer demo` end to end, as a newcomer runs it: a real subprocess, everything embedded.

The demo checks itself (the service's results against a model built from the plan with the pure
rules, and the rules applied to the final facts); this test makes sure that check ran, that it
covered every kind of outcome, and that nothing was left running afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_SECONDS = 120


def _summary(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1, f"expected one SUMMARY line in:\n{stdout[-3000:]}"
    summary: dict[str, Any] = json.loads(lines[0].removeprefix("SUMMARY "))
    return summary


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (e.g. a postgres -D <data dir>)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.fixture(scope="module")
def demo_run() -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERT_CONSUMER_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "demo", "--learners", "30"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    return result, time.monotonic() - started


def test_demo_exits_0_with_results_matching_the_rules(
    demo_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, _ = demo_run
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr}"
    summary = _summary(result.stdout)
    assert summary["agree"] is True
    assert summary["settled"] is True
    assert summary["service_exit_code"] == 0
    assert summary["actual"] == summary["expected"]
    assert summary["learners_differing"] == []
    assert summary["learners_owed_a_transition"] == []
    assert summary["events_consumed"] == summary["events_produced"] > 0


def test_demo_covers_every_kind_of_outcome(
    demo_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    expected = _summary(demo_run[0].stdout)["expected"]
    for figure in ("earned", "pending", "with_distinction", "upgrades", "approval_events"):
        assert expected[figure] > 0, figure
    # Every transition is announced exactly once, on the topic its state calls for.
    transitions = expected["creates"] + expected["upgrades"]
    assert expected["granted_events"] + expected["approval_events"] == transitions


def test_demo_leaves_nothing_running(
    demo_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, seconds = demo_run
    summary = _summary(result.stdout)
    data_dir = summary["data_dir"]
    assert not Path(data_dir).exists(), "the temporary database folder was not removed"
    assert _processes_mentioning(data_dir) == []
    assert summary["threads_left"] == 0
    assert seconds < 60, f"the demo took {seconds:.0f}s; a newcomer is promised under a minute"
