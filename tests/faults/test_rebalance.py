"""A rebalance storm: three processes joining and leaving (SIGTERM and start) during a workload,
under each group protocol. Every SIGTERM exits 0; the longest stretch with an unassigned input
partition is reported (goal: under 10 s after the last membership change)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.faults.conftest import LONG, scale
from tests.faults.membership import Change, changes_in_log, longest_unassigned
from tests.faults.test_kills import play_in_background
from tests.faults.verdict import verdict
from tests.faults.world import Triggers, seed_world
from tests.integration.service import (
    Launcher,
    ServiceProcess,
    Topics,
    codec,
    service_env,
)
from tests.support import wait_for

MEMBERSHIPS = ["consumer", "classic"] + (["consumer-static", "classic-static"] if LONG else [])


class Storm:
    """Three slots of service processes; each change stops a running one or starts a stopped one."""

    def __init__(self, launch: Launcher, env: dict[str, str], static: bool) -> None:
        self.launch = launch
        self.env = env
        self.static = static
        self.slots: list[ServiceProcess | None] = [None, None, None]
        self.ended: list[tuple[str, ServiceProcess, float]] = []
        self.exit_codes: list[int] = []
        self.stop_seconds: list[float] = []
        self.generation = 0

    def start(self, slot: int) -> None:
        env = dict(self.env)
        if self.static:
            env["CERT_CONSUMER_GROUP_INSTANCE_ID"] = f"slot-{slot}"
        self.slots[slot] = self.launch(env)

    def stop(self, slot: int) -> None:
        process = self.slots[slot]
        assert process is not None
        began = time.monotonic()
        self.exit_codes.append(process.terminate(timeout=60))
        self.stop_seconds.append(time.monotonic() - began)
        self.ended.append((f"{slot}-{self.generation}", process, time.time()))
        self.generation += 1
        self.slots[slot] = None

    def change(self, rng: random.Random) -> None:
        slot = rng.randrange(3)
        running = [s for s in range(3) if self.slots[s] is not None]
        if self.slots[slot] is None:
            self.start(slot)
        elif len(running) == 1:
            self.start(next(s for s in range(3) if self.slots[s] is None))
        else:
            self.stop(slot)

    def changes(self) -> list[Change]:
        found: list[Change] = []
        for owner, process, ended_at in self.ended:
            found += changes_in_log(owner, process.log_path, ended_at)
        for slot, process in enumerate(self.slots):
            if process is not None:
                found += changes_in_log(f"{slot}-live", process.log_path, None)
        return found


@pytest.mark.parametrize("membership", MEMBERSHIPS)
def test_rebalance_storm(
    membership: str,
    engine: sa.Engine,
    database_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    launch: Launcher,
    seed: int,
) -> None:
    rng = random.Random(seed)
    protocol, _, static = membership.partition("-")
    topics = Topics.create(new_topic, partitions=4)
    partitions = {
        f"{t}:{p}" for t in (topics.scores, topics.posts, topics.settings) for p in range(4)
    }
    world = seed_world(engine, learners_per_section=scale(100, 300), seed=seed)
    env = service_env(
        database_url,
        kafka_bootstrap,
        topics,
        CERT_CONSUMER_GROUP_PROTOCOL=protocol,
        CERT_CONSUMER_CONSUME_BATCH_SIZE="200",
    )
    storm = Storm(launch, env, static == "static")
    for slot in range(3):
        storm.start(slot)
    changes = scale(8, 40)
    workload = play_in_background(
        world, Triggers(kafka_bootstrap, topics, codec()), scale(10, 40), seed, pause=1.0
    )
    for _ in range(changes):
        time.sleep(rng.uniform(1.5, 4.0))
        storm.change(rng)
    last_change = time.time()
    workload.join(timeout=300)

    wait_for(lambda: _all_owned(storm, partitions), timeout=120, interval=0.5, what="all assigned")
    settle_seconds = time.time() - last_change
    longest = longest_unassigned(storm.changes(), partitions, time.time())
    result = verdict(f"rebalance-{membership}", engine, world, kafka_bootstrap, topics, codec())
    for slot, process in enumerate(storm.slots):
        if process is not None:
            storm.stop(slot)
    result.extra = {
        "membership": membership,
        "membership_changes": changes,
        "sigterm_exits": len(storm.exit_codes),
        "sigterm_nonzero": sum(1 for code in storm.exit_codes if code != 0),
        "longest_stop_seconds": round(max(storm.stop_seconds), 2),
        "longest_unassigned_seconds": round(longest, 2),
        "fully_assigned_after_last_change_seconds": round(settle_seconds, 2),
        "seed": seed,
    }
    result.record()
    result.assert_correct()
    assert storm.exit_codes and all(code == 0 for code in storm.exit_codes), storm.exit_codes


def _all_owned(storm: Storm, partitions: set[str]) -> bool:
    """True when every partition has an owner among the live processes right now."""
    owners = dict.fromkeys(partitions, 0)
    for change in storm.changes():
        if change.partition in owners:
            owners[change.partition] += change.delta
    return all(n > 0 for n in owners.values())
