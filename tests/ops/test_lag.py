"""``lag`` against the real broker: the numbers equal what Kafka's own kafka-consumer-groups
tool reports for the same group."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumer.cli import main as cli
from tests.ops.support import (
    consume_and_commit,
    kafka_tool,
    new_group,
    parse_tool_table,
    produce,
)
from tests.support import wait_for

pytestmark = pytest.mark.integration

GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def test_lag_equals_kafka_consumer_groups(
    capsys: pytest.CaptureFixture[str], kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    busy, quiet = new_topic("lag", partitions=2), new_topic("lag", partitions=1)
    group = new_group()
    produce(kafka_bootstrap, busy, {0: 7, 1: 4})
    produce(kafka_bootstrap, quiet, {0: 3})
    consume_and_commit(kafka_bootstrap, group, busy, {0: 3, 1: 4}, total=11)
    consume_and_commit(kafka_bootstrap, group, quiet, {0: 1}, total=3)

    assert (
        cli.main(["lag", "--bootstrap-servers", kafka_bootstrap, "--group", group, "--json"]) == 0
    )
    ours = json.loads(capsys.readouterr().out)
    table = kafka_tool(
        GROUP_COMMAND, "--bootstrap-server", kafka_bootstrap, "--describe", "--group", group
    )
    theirs = {
        (row["TOPIC"], int(row["PARTITION"])): (
            int(row["CURRENT-OFFSET"]),
            int(row["LOG-END-OFFSET"]),
            int(row["LAG"]),
        )
        for row in parse_tool_table(table, group)
    }
    mine = {
        (p["topic"], p["partition"]): (p["committed"], p["log_end"], p["lag"])
        for p in ours["partitions"]
    }
    assert mine == theirs
    assert mine == {(busy, 0): (3, 7, 4), (busy, 1): (4, 4, 0), (quiet, 0): (1, 3, 2)}
    assert ours["total_lag"] == sum(lag for _, _, lag in theirs.values()) == 6
    assert ours["uncommitted_partitions"] == 0


def test_lag_table_and_topics_never_committed(
    capsys: pytest.CaptureFixture[str], kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic, fresh = new_topic("lag", partitions=2), new_topic("lag", partitions=1)
    group = new_group()
    produce(kafka_bootstrap, topic, {0: 5, 1: 5})
    consume_and_commit(kafka_bootstrap, group, topic, {0: 2, 1: 5}, total=10)
    args = ["lag", "--bootstrap-servers", kafka_bootstrap, "--group", group]
    assert cli.main([*args, "--topic", topic, "--topic", fresh]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    rows = sorted(line.split()[1:] for line in lines[1:4])
    unowned = ["-", "-", "-"]
    assert rows == sorted(
        [
            [fresh, "0", "-", "0", "-", *unowned],
            [topic, "0", "2", "5", "3", *unowned],
            [topic, "1", "5", "5", "0", *unowned],
        ]
    )
    assert lines[4] == "total lag 3 over 3 partition(s) (1 never committed, lag unknown)"


def test_an_unknown_group_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], kafka_bootstrap: str
) -> None:
    group = new_group()
    assert cli.main(["lag", "--bootstrap-servers", kafka_bootstrap, "--group", group]) == 3
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == (
        f"cert-consumer: consumer group {group!r} does not exist (no members, no committed "
        "offsets)\n"
    )


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_a_live_group_matches_kafka_consumer_groups_row_for_row(
    capsys: pytest.CaptureFixture[str],
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    protocol: str,
) -> None:
    topic = new_topic("lag", partitions=3)
    group = new_group()
    produce(kafka_bootstrap, topic, {0: 4, 1: 2, 2: 3})
    member = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "group.protocol": protocol,
            "client.id": "lag-test-member",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    member.subscribe([topic])
    try:
        wait_for(lambda: bool(member.poll(0.2)) and len(member.assignment()) == 3, what="assigned")
        member.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        # Only partition 0 has a committed offset: the others show "-" with their owner.
        tool = kafka_tool(
            GROUP_COMMAND, "--bootstrap-server", kafka_bootstrap, "--describe", "--group", group
        )
        assert cli.main(["lag", "--bootstrap-servers", kafka_bootstrap, "--group", group]) == 0
        ours = capsys.readouterr().out
    finally:
        member.close()
    columns = [
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    theirs = sorted([r[c] for c in columns] for r in parse_tool_table(tool, group))
    mine = sorted([r[c] for c in columns] for r in parse_tool_table(ours, group))
    assert len(mine) == 3 and mine == theirs
    assert [r[2] for r in mine] == ["1", "-", "-"]
    assert {r[7] for r in mine} == {"lag-test-member"}
