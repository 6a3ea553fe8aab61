"""``replay`` against the real broker: the plan's numbers for each kind of target, the same
targets as Kafka's own ``--reset-offsets --dry-run``, execution, and refusal while the group
has a live member."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from consumer.cli import main as cli
from tests.ops.support import (
    BASE_MS,
    consume_and_commit,
    group_member,
    kafka_tool,
    new_group,
    parse_tool_table,
    produce,
)

pytestmark = pytest.mark.integration

COUNTS = {0: 10, 1: 10}
COMMITTED = {0: 6, 1: 8}


@pytest.fixture
def consumed(kafka_bootstrap: str, new_topic: Callable[..., str]) -> tuple[str, str]:
    """A 2-partition topic of 2x10 records and a group that committed 6 and 8 of them."""
    topic, group = new_topic("replay", partitions=2), new_group()
    produce(kafka_bootstrap, topic, COUNTS)
    consume_and_commit(kafka_bootstrap, group, topic, COMMITTED, total=sum(COUNTS.values()))
    return topic, group


def replay(
    capsys: pytest.CaptureFixture[str], bootstrap: str, *args: str
) -> tuple[int, dict[str, Any]]:
    code = cli.main(["replay", "--bootstrap-servers", bootstrap, "--json", *args])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def moves(plan: dict[str, Any]) -> dict[int, tuple[int | None, int, int, int]]:
    """partition -> (committed, target, log_end, rereads)."""
    return {
        m["partition"]: (m["committed"], m["target"], m["log_end"], m["rereads"])
        for m in plan["partitions"]
    }


def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {tp.partition: tp.offset for tp in result.result(timeout=30).topic_partitions}


def test_plan_to_earliest(capsys, kafka_bootstrap, consumed) -> None:
    topic, group = consumed
    code, plan = replay(
        capsys, kafka_bootstrap, "--group", group, "--topic", topic, "--to-earliest"
    )
    assert code == 0
    assert moves(plan) == {0: (6, 0, 10, 6), 1: (8, 0, 10, 8)}
    assert (plan["rereads"], plan["skips"], plan["executed"]) == (14, 0, False)
    assert committed(kafka_bootstrap, group) == COMMITTED  # a plan changes nothing


def test_plan_to_offsets_clamps_and_moves_only_those(capsys, kafka_bootstrap, consumed) -> None:
    topic, group = consumed
    code, plan = replay(
        capsys, kafka_bootstrap, "--group", group, "--to-offset", f"{topic}:0:2,{topic}:1:99"
    )
    assert code == 0
    assert moves(plan) == {0: (6, 2, 10, 4), 1: (8, 10, 10, 0)}
    assert plan["skips"] == 2
    code, plan = replay(
        capsys, kafka_bootstrap, "--group", group, "--topic", topic, "--to-offset", "1:3"
    )
    assert moves(plan) == {1: (8, 3, 10, 5)}


def test_plan_to_datetime_matches_kafka_tool(capsys, kafka_bootstrap, consumed) -> None:
    topic, group = consumed
    when = datetime.fromtimestamp(BASE_MS / 1000, UTC) + timedelta(seconds=4.5)
    iso = when.isoformat(timespec="milliseconds")
    code, plan = replay(
        capsys, kafka_bootstrap, "--group", group, "--topic", topic, "--to-datetime", iso
    )
    assert code == 0
    # Record i is stamped BASE + i s: the first at or after BASE + 4.5 s is offset 5.
    assert moves(plan) == {0: (6, 5, 10, 1), 1: (8, 5, 10, 3)}
    tool = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        kafka_bootstrap,
        "--group",
        group,
        "--topic",
        topic,
        "--reset-offsets",
        "--to-datetime",
        iso.replace("+00:00", "Z"),
        "--dry-run",
    )
    theirs = {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in parse_tool_table(tool, group)}
    assert theirs == {p: m[1] for p, m in moves(plan).items()}
    later = (when + timedelta(days=1)).isoformat()
    _, plan = replay(
        capsys, kafka_bootstrap, "--group", group, "--topic", topic, "--to-datetime", later
    )
    assert moves(plan) == {0: (6, 10, 10, 0), 1: (8, 10, 10, 0)}


def test_execute_commits_the_targets(capsys, kafka_bootstrap, consumed) -> None:
    topic, group = consumed
    args = ("--group", group, "--topic", topic, "--to-datetime", "2026-01-01T00:00:03Z")
    code, plan = replay(capsys, kafka_bootstrap, *args, "--execute")
    assert (code, plan["executed"], plan["rereads"]) == (0, True, 3 + 5)
    assert committed(kafka_bootstrap, group) == {0: 3, 1: 3}


def test_execute_refused_while_a_member_is_active(capsys, kafka_bootstrap, consumed) -> None:
    topic, group = consumed
    member = group_member(kafka_bootstrap, group, topic)
    try:
        code = replay_earliest_cli(kafka_bootstrap, group, topic, "--execute")
        err = capsys.readouterr().err
    finally:
        member.close()
    assert code == 2
    assert "refusing to replay" in err and "1 active member" in err
    assert committed(kafka_bootstrap, group) == COMMITTED


def test_text_plan_and_unknown_topic(capsys, kafka_bootstrap, consumed) -> None:
    topic, group = consumed
    code = replay_earliest_cli(kafka_bootstrap, group, topic)
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "NEW-OFFSET",
        "LOG-END-OFFSET",
        "RE-READ",
    ]
    assert "14 record(s) to re-read" in out and "dry run" in out
    code = cli.main(
        [
            "replay",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--group",
            group,
            "--topic",
            "no-such-topic",
            "--to-earliest",
        ]
    )
    assert code == 3  # a check failed: the topic does not exist
    assert "unknown topic 'no-such-topic'" in capsys.readouterr().err


def replay_earliest_cli(bootstrap: str, group: str, topic: str, *extra: str) -> int:
    """`cert-consumer replay --to-earliest` for one topic, in text mode."""
    return cli.main(
        [
            "replay",
            "--bootstrap-servers",
            bootstrap,
            "--group",
            group,
            "--topic",
            topic,
            "--to-earliest",
            *extra,
        ]
    )
