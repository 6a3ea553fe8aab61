"""``lag`` against the real broker: the numbers equal what Kafka's own kafka-consumer-groups
tool reports for the same group."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from consumer.cli import main as cli
from tests.ops.support import (
    consume_and_commit,
    kafka_tool,
    new_group,
    parse_tool_table,
    produce,
)

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
    ]
    rows = sorted(line.split()[1:] for line in lines[1:4])
    assert rows == sorted(
        [[fresh, "0", "-", "0", "-"], [topic, "0", "2", "5", "3"], [topic, "1", "5", "5", "0"]]
    )
    assert lines[4] == "total lag 3 over 3 partition(s) (1 never committed, lag unknown)"
    assert cli.main(["lag", "--bootstrap-servers", kafka_bootstrap, "--group", new_group()]) == 0
    assert "has no committed offsets" in capsys.readouterr().out
