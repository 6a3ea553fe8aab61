"""The pure arithmetic of replay plans and lag, as tables (no broker)."""

from __future__ import annotations

import argparse

import pytest

from consumer.cli.ops import add_commands, parse_offsets
from consumer.kafka.watermarks import Bounds
from consumer.ops.offsets import (
    ToEarliest,
    ToOffsets,
    ToTimestamp,
    compute_lag,
    plan_replay,
    resolve_targets,
)

T = "topic"
BOUNDS = {(T, 0): Bounds(earliest=5, log_end=20), (T, 1): Bounds(earliest=0, log_end=10)}


@pytest.mark.parametrize(
    ("target", "by_time", "expected"),
    [
        (ToEarliest(), None, {(T, 0): 5, (T, 1): 0}),
        # Clamped into [earliest, log-end], as kafka-consumer-groups does.
        (ToOffsets({(T, 0): 2, (T, 1): 99}), None, {(T, 0): 5, (T, 1): 10}),
        (ToOffsets({(T, 1): 4}), None, {(T, 1): 4}),
        (ToTimestamp(1), {(T, 0): 7, (T, 1): 3}, {(T, 0): 7, (T, 1): 3}),
        # No record that recent: -1 from the broker means the end of the log.
        (ToTimestamp(1), {(T, 0): -1, (T, 1): 3}, {(T, 0): 20, (T, 1): 3}),
    ],
)
def test_resolve_targets(target, by_time, expected) -> None:
    assert resolve_targets(target, BOUNDS, by_time) == expected


@pytest.mark.parametrize(
    ("committed", "target", "rereads", "skips"),
    [(12, 5, 7, 0), (5, 12, 0, 7), (8, 8, 0, 0), (None, 5, 0, 0)],
)
def test_plan_counts(committed, target, rereads, skips) -> None:
    plan = plan_replay(
        "g", {} if committed is None else {(T, 0): committed}, BOUNDS, {(T, 0): target}
    )
    (move,) = plan.moves
    assert (move.committed, move.target, move.log_end) == (committed, target, 20)
    assert (move.rereads, move.skips, plan.rereads, plan.skips) == (rereads, skips, rereads, skips)
    assert plan.targets() == {(T, 0): target}


def test_plan_sorted_and_totals() -> None:
    committed = {(T, 0): 15, (T, 1): 10}
    plan = plan_replay("g", committed, BOUNDS, {(T, 1): 0, (T, 0): 5})
    assert [(m.topic, m.partition) for m in plan.moves] == [(T, 0), (T, 1)]
    assert plan.rereads == 10 + 10


def test_lag() -> None:
    report = compute_lag("g", {(T, 0): 15, (T, 1): 10}, {(T, 0): 20, (T, 1): 10, ("u", 0): 4})
    assert [(p.topic, p.partition, p.lag) for p in report.partitions] == [
        (T, 0, 5),
        (T, 1, 0),
        ("u", 0, None),
    ]
    assert (report.total_lag, report.uncommitted) == (5, 1)


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("a:0:5,a:1:7", None, {("a", 0): 5, ("a", 1): 7}),
        ("0:5, 1:7", "a", {("a", 0): 5, ("a", 1): 7}),
        ("b.x-y:2:0", "a", {("b.x-y", 2): 0}),
    ],
)
def test_parse_offsets(text, default, expected) -> None:
    assert parse_offsets(text, default) == expected


@pytest.mark.parametrize("text", ["0:5", "a:0", "a:x:1", "a:0:-1", ":0:1", ""])
def test_parse_offsets_rejects(text) -> None:
    with pytest.raises(ValueError, match="topic:partition:offset"):
        parse_offsets(text)


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        ("2026-01-01T00:00:01", 1_767_225_601_000),  # naive means UTC
        ("2026-01-01T00:00:01.250Z", 1_767_225_601_250),
        ("2026-01-01T02:00:01+02:00", 1_767_225_601_000),
    ],
)
def test_to_datetime_parses_iso_8601(raw, ms) -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["replay", "--group", "g", "--to-datetime", raw])
    assert args.to_datetime == ms
    with pytest.raises(SystemExit):
        parser.parse_args(["replay", "--group", "g", "--to-datetime", "yesterday"])
