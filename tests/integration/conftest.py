"""Fixtures and seeds shared by the end-to-end tests of the running service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer.store import torus
from consumer.testing import seeding
from tests.integration.service import (
    ActivityProducer,
    OutputReader,
    ServiceProcess,
    Topics,
    service_env,
)

PAGES = ((101, True, False), (102, True, False))


def seed_section(
    conn: sa.Connection, section_id: int, learners: list[int], *, approval: bool = False
) -> None:
    instructor = section_id * 1000
    seeding.add_users(
        conn,
        [{"id": instructor, "name": "Prof", "email": f"p{section_id}@x"}]
        + [{"id": u, "name": f"Learner {u}", "email": f"{u}@x"} for u in learners],
    )
    seeding.add_section(conn, section_id)
    seeding.enroll(conn, section_id, [instructor], role=seeding.INSTRUCTOR)
    seeding.enroll(conn, section_id, learners)
    seeding.add_pages(conn, section_id, PAGES)
    seeding.add_certificate(
        conn,
        seeding.Certificate(
            id=section_id, section_id=section_id, requires_instructor_approval=approval
        ),
    )


def pass_completion(conn: sa.Connection, section_id: int, user_id: int) -> None:
    seeding.set_scores(conn, section_id, user_id, {101: (70.0, 100.0), 102: (7.0, 10.0)})


def pass_distinction(conn: sa.Connection, section_id: int, user_id: int) -> None:
    seeding.set_scores(conn, section_id, user_id, {101: (95.0, 100.0), 102: (10.0, 10.0)})


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> Topics:
    return Topics.create(new_topic, partitions=2)


@pytest.fixture
def env(database_url: str, kafka_bootstrap: str, topics: Topics) -> dict[str, str]:
    return service_env(database_url, kafka_bootstrap, topics)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        service = ServiceProcess(env, tmp_path / f"service-{len(started)}.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()


@pytest.fixture
def activity(kafka_bootstrap: str, topics: Topics) -> ActivityProducer:
    return ActivityProducer(kafka_bootstrap, topics)


@pytest.fixture
def outputs(kafka_bootstrap: str, topics: Topics) -> Iterator[OutputReader]:
    reader = OutputReader(kafka_bootstrap, topics.granted, topics.approval)
    yield reader
    reader.close()


def grants(engine: sa.Engine) -> list[sa.Row]:
    g = torus.granted_certificates
    with engine.connect() as conn:
        return list(conn.execute(sa.select(g).order_by(g.c.user_id)))


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
