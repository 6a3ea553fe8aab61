"""Phase 2, evaluation: K learners who all pass get one burst of events each; the service's
ingest role records them (K pending keys), and once every key is due, the evaluate role alone
is started: keys/s until the pending table is empty. Then the relay role alone publishes the
outbox (relay events/s, a side figure). Beside it, the one-key-per-call rate: fresh keys of
the same world evaluated one ``evaluate_keys(conn, [key])`` transaction at a time, in the
benchmark's process, as the per-event baseline does it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bench.e2e import topics as kafka_topics
from bench.e2e import world
from bench.e2e.context import Context
from bench.e2e.infra import BASELINE_ROLE
from bench.e2e.producing import produce_backlog
from bench.e2e.sampler import CONSUMED, EVALUATED, Sampler
from bench.e2e.service import ServiceProcess
from bench.e2e.waiting import until
from bench.e2e.workload import Encoder, Shape, bursts_for, learners, schedule
from consumer.evaluation import evaluate_keys


def _per_key_rate(url: str, keys: list[tuple[int, int]]) -> dict[str, float]:
    """One key per call, each in its own transaction."""
    engine = sa.create_engine(url, pool_size=1)
    transitions = 0
    try:
        started = time.perf_counter()
        for key in keys:
            with engine.begin() as conn:
                transitions += len(evaluate_keys(conn, [key], now=datetime.now(UTC)).transitions)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "keys": len(keys),
        "seconds": seconds,
        "keys_per_s": len(keys) / seconds,
        "transitions": transitions,
    }


def _run_until(
    service: ServiceProcess, done: Any, *, timeout: float, what: str
) -> tuple[float, float]:
    service.start()
    healthy = service.wait_healthy()
    finished = until(done, timeout=timeout, what=what, interval=0.05)
    return healthy, finished


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.profile.eval_keys
    rng = ctx.rng("evaluation")
    shape = Shape()
    keys = learners(1, count)
    extra = learners(10_001, ctx.profile.per_key_keys, first_user=50_000_000)
    events = schedule(rng, bursts_for(rng, keys, shape), count / 400, shape)
    topics = kafka_topics.create(ctx.admin, "evaluation", partitions=3)
    database = ctx.pg.create_database("evaluation")
    engine = ctx.engine(database)
    services: list[ServiceProcess] = []
    try:
        world.seed_passing(engine, keys + extra)
        produced = produce_backlog(ctx.bootstrap, topics, Encoder(ctx.codec, "eval"), events)
        group = f"bench-eval-{topics.scores[-8:]}"
        timeout = 120 + count / 200
        ingest = ctx.service("eval-ingest", ctx.env(database, topics, group=group, roles="ingest"))
        services.append(ingest)
        _run_until(
            ingest,
            lambda: ingest.metric(CONSUMED) >= len(events),
            timeout=timeout,
            what="evaluation backlog ingested",
        )
        ingest.stop()
        pending = world.pending(engine)
        until(lambda: world.not_yet_due(engine) == 0, timeout=120, what="every key due")
        evaluator = ctx.service("evaluate", ctx.env(database, topics, roles="evaluate"))
        services.append(evaluator)
        with Sampler("evaluation: 1 process, evaluate role", [evaluator]) as timeline:
            healthy, emptied = _run_until(
                evaluator,
                lambda: world.pending(engine) == 0,
                timeout=timeout,
                what="pending table empty",
            )
        ctx.timelines.append(timeline)
        metrics = evaluator.metrics()
        evaluator.stop()
        outbox = world.outbox_rows(engine)
        relay = ctx.service("relay", ctx.env(database, topics, roles="relay"))
        services.append(relay)
        relay_started, relayed = _run_until(
            relay, lambda: world.unpublished(engine) == 0, timeout=timeout, what="outbox published"
        )
        relay.stop()
        per_key = _per_key_rate(ctx.pg.url(database, BASELINE_ROLE), extra)
        seconds = emptied - healthy
        rate = pending / seconds
        triggers = metrics.get("cert_consumer_triggers_per_evaluation_sum", 0.0)
        evaluations = metrics.get(EVALUATED, 0.0)
        return {
            "keys": count,
            "events": len(events),
            "produce_events_per_s": produced.rate,
            "pending_keys_before": pending,
            "service_seconds": seconds,
            "service_keys_per_s": rate,
            "service_evaluations": evaluations,
            "triggers_per_evaluation": triggers / evaluations if evaluations else None,
            "events_per_evaluation": len(events) / evaluations if evaluations else None,
            "evaluation_transaction_seconds_sum": metrics.get(
                "cert_consumer_evaluation_duration_seconds_sum"
            ),
            "grants_written": world.grants(engine) - per_key["transitions"],
            "outbox_events": outbox,
            "relay_seconds": relayed - relay_started,
            "relay_events_per_s": outbox / (relayed - relay_started),
            "one_key_per_call": per_key,
            "ratio_to_one_key_per_call": rate / per_key["keys_per_s"],
        }
    finally:
        for service in services:
            service.stop()
        engine.dispose()
        ctx.pg.drop_database(database)
        kafka_topics.delete(ctx.admin, topics.all)
