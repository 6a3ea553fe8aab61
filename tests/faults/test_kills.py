"""`kill -9` of one of two service processes at random moments under a steady workload."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from tests.faults.conftest import scale
from tests.faults.verdict import verdict
from tests.faults.world import Triggers, World, rounds, seed_world
from tests.integration.service import Launcher, Topics, codec, service_env


def play_in_background(
    world: World, triggers: Triggers, count: int, seed: int, pause: float
) -> threading.Thread:
    """Produce ``count`` rounds of triggers, ``pause`` seconds apart, beside the scenario."""

    def play() -> None:
        for _ in rounds(world, triggers, count, seed):
            time.sleep(pause)

    thread = threading.Thread(target=play, name="workload", daemon=True)
    thread.start()
    return thread


def test_kill_9_at_random_moments_loses_nothing_and_grants_once(
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    launch: Launcher,
    seed: int,
) -> None:
    rng = random.Random(seed)
    topics = Topics.create(new_topic, partitions=4)
    world = seed_world(engine, learners_per_section=scale(150, 400), seed=seed)
    env = service_env(
        database_url,
        kafka_bootstrap,
        topics,
        CERT_CONSUMER_LEASE_SECONDS="3",
        CERT_CONSUMER_CONSUME_BATCH_SIZE="200",
        CERT_CONSUMER_EVALUATION_BATCH_SIZE="50",
        CERT_CONSUMER_RELAY_BATCH_SIZE="50",
    )
    processes = [launch(env), launch(env)]
    kills = scale(10, 50)
    workload = play_in_background(
        world, Triggers(kafka_bootstrap, topics, codec()), scale(8, 30), seed, pause=1.0
    )
    for _ in range(kills):
        time.sleep(rng.uniform(0.2, 2.5))
        victim = rng.randrange(len(processes))
        processes[victim].kill()
        processes[victim] = launch(env)
    workload.join(timeout=300)
    assert not workload.is_alive()
    result = verdict("kill-9", engine, world, kafka_bootstrap, topics, codec())
    result.extra = {"kills": kills, "seed": seed}
    result.record()
    result.assert_correct()
    assert [p.terminate() for p in processes] == [0, 0]
