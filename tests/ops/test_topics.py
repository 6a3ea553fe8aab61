"""``topics plan|create|check`` on the real broker (auto-create off, as in production), then the
service on the topics it created; and a missing input topic named by readiness."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import astuple

import pytest
import sqlalchemy as sa
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.faults.verdict import verdict
from tests.faults.world import Triggers, rounds, seed_world
from tests.integration.service import REPO, Launcher, Topics, codec, service_env
from tests.integration.test_dependencies import probe
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    """Six names nobody has created; whatever a test creates of them is deleted after it."""
    suffix = uuid.uuid4().hex[:8]
    names = Topics(
        *(f"{n}-{suffix}" for n in ("scores", "posts", "settings", "granted", "approval", "dlq"))
    )
    yield names
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    existing = [t for t in astuple(names) if t in admin.list_topics(timeout=10).topics]
    if existing:
        for future in admin.delete_topics(existing, operation_timeout=30).values():
            future.result(timeout=30)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_create_then_check_then_run_on_a_broker_without_auto_create(
    database_url: str, kafka_bootstrap: str, topics: Topics, launch: Launcher, seed: int
) -> None:
    env = service_env(database_url, kafka_bootstrap, topics)
    missing = cli(env, "topics", "check")
    assert missing.returncode == 3
    assert sorted(missing.stderr.splitlines()) == sorted(
        f"cert-consumer: topic {t!r}: missing" for t in astuple(topics)
    )
    created = cli(env, "topics", "create", "--json")
    assert created.returncode == 0, created.stderr
    assert sorted(json.loads(created.stdout)["created"]) == sorted(astuple(topics))
    again = cli(env, "topics", "create", "--json")
    assert json.loads(again.stdout) == {"created": [], "already_there": list(astuple(topics))}
    checked = cli(env, "topics", "check")
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout == "all 6 topics are there as planned\n"

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    assert len(metadata[topics.scores].partitions) == 6
    assert len(metadata[topics.dlq].partitions) == 1
    dlq = ConfigResource(ResourceType.TOPIC, topics.dlq)
    config = admin.describe_configs([dlq])[dlq].result(30)
    assert config["retention.ms"].value == str(30 * 24 * 3600 * 1000)

    engine = sa.create_engine(database_url)
    world = seed_world(engine, learners_per_section=10, seed=seed)
    service = launch(env)
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=60, what="ready")
    triggers = Triggers(kafka_bootstrap, topics, codec())
    for _ in rounds(world, triggers, 1, seed):
        pass
    verdict("topics-created", engine, world, kafka_bootstrap, topics, codec()).assert_correct()
    assert service.terminate() == 0
    engine.dispose()


def test_a_missing_input_topic_is_named_by_readiness_until_it_is_created(
    database_url: str, kafka_bootstrap: str, topics: Topics, launch: Launcher
) -> None:
    env = service_env(database_url, kafka_bootstrap, topics, CERT_CONSUMER_LAG_INTERVAL_SECONDS="1")
    assert cli(env, "topics", "create").returncode == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics([topics.posts], operation_timeout=30).values():
        future.result(timeout=30)
    wait_for(lambda: topics.posts not in admin.list_topics(timeout=10).topics, what="deleted")
    service = launch(env)

    def named() -> bool:
        status, body = probe(service, "/readyz")
        down = body.get("dependencies_down") or {}
        return status == 503 and topics.posts in str(down.get("kafka_topics", ""))  # type: ignore[union-attr]

    wait_for(named, timeout=60, what="readiness naming the missing topic")
    _, body = probe(service, "/readyz")
    assert "cert-consumer topics create" in str(body)
    assert "dependency_down" in service.logs() and topics.posts in service.logs()
    assert cli(env, "topics", "create").returncode == 0
    wait_for(lambda: probe(service, "/readyz")[0] == 200, timeout=60, what="ready once created")
    assert service.terminate() == 0
