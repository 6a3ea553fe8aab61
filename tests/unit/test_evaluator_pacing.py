"""How long the evaluator sleeps between claims (pure arithmetic, the database says the dues)."""

from __future__ import annotations

import pytest

from consumer.pipeline.evaluator import batch_wait


@pytest.mark.parametrize(
    ("next_due", "batch_due", "expected"),
    [
        (None, None, 5.0),  # nothing pending: the longest sleep
        (2.0, None, 3.0),  # one key due in 2 s, fewer than a batch: it lingers 1 s
        (2.0, 2.4, 2.4),  # a batch is due before the linger is out: then
        (2.0, 9.0, 3.0),  # the linger is out before the batch: then
        (-0.4, None, 0.6),  # overdue keys linger only what is left
        (-3.0, 1.0, 0.0),  # past its linger: at once
        (30.0, None, 5.0),  # never past the longest sleep
    ],
)
def test_batch_wait(next_due: float | None, batch_due: float | None, expected: float) -> None:
    assert batch_wait(next_due, batch_due, linger=1.0, cap=5.0) == pytest.approx(expected)
