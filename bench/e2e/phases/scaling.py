"""Phase 6, 1, 2 and 3 service processes on 6 partitions: one workload (two bursts per passing
learner), encoded once, and per process count fresh 6-partition topics, a new group and a fresh
copy of the seeded database.

(i) n ingest-only processes are started and, once the group's partitions are spread evenly over
them (describe_consumer_groups), the pre-encoded backlog is produced at full speed (several
times the ingest rate): aggregate ingest rate = events / (first event produced -> summed
consumed counters reach N). (ii) Once every key is due, n evaluate-only processes are started
together: the aggregate evaluation rate is given from the first one's /healthz and over the
keys left once the last one is healthy (the steady rate with all n working). (iii) One relay
publishes the outbox.

Then the checks that no key was evaluated twice: the evaluations counted over all processes
equal the keys, no duplicate granted certificate, outbox events equal grants, no event id
twice on the output topic, and at most one transition log line per key across the logs.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from bench.e2e import topics as kafka_topics
from bench.e2e import world
from bench.e2e.context import Context
from bench.e2e.kafka_read import read_outputs
from bench.e2e.producing import produce_encoded
from bench.e2e.sampler import CONSUMED, EVALUATED, Sampler
from bench.e2e.service import ServiceProcess, start_all, stop_all, total
from bench.e2e.waiting import until
from bench.e2e.workload import Encoded, Encoder, Shape, bursts_for, learners, schedule

PARTITIONS = 6
_FAILURE_EVENTS = ("batch_failed_isolating", "evaluation_failed", "loop_failed")


def _log_checks(services: list[ServiceProcess]) -> dict[str, int]:
    per_key: Counter[tuple[int, int]] = Counter()
    failures = 0
    for service in services:
        for line in service.log_records():
            if line.get("event") == "transition_written":
                per_key[(int(line["section_id"]), int(line["user_id"]))] += 1
            elif line.get("event") in _FAILURE_EVENTS:
                failures += 1
    return {
        "transition_lines": sum(per_key.values()),
        "keys_with_two_transition_lines": sum(1 for n in per_key.values() if n > 1),
        "failure_lines": failures,
    }


def _rate(left: float, whole: float, seconds: float) -> float | None:
    """Work per second over ``seconds``; None when under a tenth of the work was left (too
    little to be a rate)."""
    return left / seconds if left >= whole / 10 and seconds > 0 else None


def _one_count(ctx: Context, n: int, encoded: list[Encoded], seed_db: str) -> dict[str, Any]:
    events = len(encoded)
    topics = kafka_topics.create(ctx.admin, f"scale{n}", partitions=PARTITIONS)
    database = ctx.pg.create_database(f"scale_{n}", template=seed_db)
    engine = ctx.engine(database)
    group = f"bench-scale{n}-{topics.granted[-8:]}"
    timeout = 180 + events / 500
    ingest = [
        ctx.service(f"scale{n}-ingest{i}", ctx.env(database, topics, group=group, roles="ingest"))
        for i in range(n)
    ]
    evaluate = [
        ctx.service(f"scale{n}-evaluate{i}", ctx.env(database, topics, roles="evaluate"))
        for i in range(n)
    ]
    relay = ctx.service(f"scale{n}-relay", ctx.env(database, topics, roles="relay"))
    try:
        with Sampler(f"{n} process(es), 6 partitions: ingest role", ingest) as tl_ingest:
            start_all(ingest, ready=True)
            until(
                lambda: kafka_topics.balanced(ctx.admin, group, n, 2 * PARTITIONS),
                timeout=60,
                what=f"partitions spread over {n} processes",
            )
            first = time.monotonic()
            produced = produce_encoded(ctx.bootstrap, topics, encoded)
            consumed = until(
                lambda: total(ingest, CONSUMED) >= events,
                timeout=timeout,
                what=f"{n} ingest processes consumed all",
            )
            per_process = [s.metric(CONSUMED) for s in ingest]
        stop_all(ingest)
        keys = world.pending(engine)
        until(lambda: world.not_yet_due(engine) == 0, timeout=120, what="every key due")
        with Sampler(f"{n} process(es): evaluate role", evaluate) as tl_eval:
            eval_first, eval_joined = start_all(evaluate)
            keys_at_join = world.pending(engine)
            emptied = until(
                lambda: world.pending(engine) == 0,
                timeout=timeout,
                what=f"{n} evaluators emptied the pending table",
                interval=0.05,
            )
            evaluations = total(evaluate, EVALUATED)
            per_evaluator = [s.metric(EVALUATED) for s in evaluate]
            failures = total(evaluate, "cert_consumer_evaluation_failures_total")
        stop_all(evaluate)
        ctx.timelines.extend([tl_ingest, tl_eval])
        relay.start()
        relay.wait_healthy()
        until(lambda: world.unpublished(engine) == 0, timeout=timeout, what="outbox published")
        outbox = world.outbox_rows(engine)
        outputs = read_outputs(ctx.bootstrap, topics.outputs, ctx.codec, outbox, timeout=120)
        relay.stop()
        grants = world.grants(engine)
        checks = {
            "evaluations_equal_keys": evaluations == keys,
            "duplicate_grants": world.duplicate_grants(engine),
            "outbox_equals_grants": outbox == grants,
            "outputs_equal_outbox": outputs.read == outbox,
            "duplicate_output_ids": outputs.duplicate_ids,
            "evaluation_failures_metric": failures,
            **_log_checks(evaluate),
        }
        checks["ok"] = bool(
            checks["evaluations_equal_keys"]
            and checks["outbox_equals_grants"]
            and checks["outputs_equal_outbox"]
            and not checks["duplicate_grants"]
            and not checks["duplicate_output_ids"]
            and not checks["evaluation_failures_metric"]
            and not checks["keys_with_two_transition_lines"]
            and not checks["failure_lines"]
        )
        return {
            "processes": n,
            "produce_seconds": produced.seconds,
            "ingest_seconds": consumed - first,
            "ingest_events_per_s": events / (consumed - first),
            "consumed_per_process": per_process,
            "pending_keys": keys,
            "evaluate_seconds": emptied - eval_first,
            "evaluations_per_s": keys / (emptied - eval_first),
            "keys_left_when_all_joined": keys_at_join,
            "evaluations_per_s_all_joined": _rate(keys_at_join, keys, emptied - eval_joined),
            "evaluations_per_process": per_evaluator,
            "grants": grants,
            "outbox": outbox,
            "outputs_read": outputs.read,
            "checks": checks,
        }
    finally:
        stop_all([*ingest, *evaluate, relay])
        engine.dispose()
        ctx.pg.drop_database(database)
        kafka_topics.delete(ctx.admin, topics.all)


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.profile.scale_keys
    rng = ctx.rng("scaling")
    shape = Shape()
    keys = learners(1, count)
    events = schedule(rng, bursts_for(rng, keys + keys, shape), count / 200, shape)
    encoder = Encoder(ctx.codec, "scale")
    encoded = [encoder.encode(e) for e in events]
    del events
    seed_db = ctx.pg.create_database("scale_seed")
    try:
        engine = ctx.engine(seed_db)
        world.seed_passing(engine, keys)
        engine.dispose()
        runs = [_one_count(ctx, n, encoded, seed_db) for n in ctx.profile.scale_processes]
        return {"keys": count, "events": len(encoded), "partitions": PARTITIONS, "runs": runs}
    finally:
        ctx.pg.drop_database(seed_db)
