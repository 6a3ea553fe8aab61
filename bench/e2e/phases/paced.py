"""Phases 3 and 4 on one paced workload per rate: statements per event and latency.

At each rate a seeded schedule of bursts (one burst per learner, every learner passing, so each
burst yields exactly one certificate-granted event) is produced at its planned times to a
running `cert-consumer run` (all roles, the service's default debounce). pg_stat_statements is
reset just before; once every output has been read, the service role's statements are summed
and divided by the events produced. Latency is, per burst, from handing its last event to the
producer to the benchmark reading that learner's output event.

The per-event baseline (bench.e2e.baseline) gets the same schedule at the same rate in its own
database; it cannot keep up at the higher rates, so its statements are divided by the events
it handled in the window (its statements per event do not depend on the backlog).
"""

from __future__ import annotations

import time
from typing import Any

from bench.e2e import statements, world
from bench.e2e import topics as kafka_topics
from bench.e2e.baseline import BaselineProcess
from bench.e2e.context import Context
from bench.e2e.infra import BASELINE_ROLE, SERVICE_ROLE
from bench.e2e.kafka_read import OutputReader
from bench.e2e.producing import produce_paced
from bench.e2e.sampler import CONSUMED, Sampler
from bench.e2e.stats import summary
from bench.e2e.waiting import until
from bench.e2e.workload import Encoded, Encoder, Event, Key, Shape, bursts_for, learners, schedule


class Plan:
    """The schedule of one rate, encoded once and sent identically to service and baseline."""

    def __init__(self, ctx: Context, rate: int) -> None:
        quiet = ctx.settings().quiet_window_seconds
        self.shape = Shape().fitted(quiet)
        rng = ctx.rng(f"paced-{rate}")
        seconds = ctx.profile.rate_seconds
        bursts = max(1, round(rate * seconds / self.shape.mean_burst))
        self.keys: list[Key] = learners(1, bursts)
        self.events: list[Event] = schedule(
            rng, bursts_for(rng, self.keys, self.shape), seconds, self.shape
        )
        encoder = Encoder(ctx.codec, f"paced-{rate}")
        self.encoded: list[Encoded] = [encoder.encode(e) for e in self.events]
        self.rate = rate


def _service_run(ctx: Context, plan: Plan, database: str) -> dict[str, Any]:
    topics = kafka_topics.create(ctx.admin, f"paced{plan.rate}", partitions=3)
    env = ctx.env(database, topics)
    settings = ctx.settings(env)
    service = ctx.service(f"paced-{plan.rate}", env)
    reader = OutputReader(ctx.bootstrap, topics.outputs, ctx.codec)
    try:
        service.start()
        service.wait_ready()
        reader.start()
        reader.wait_assigned()
        statements.reset(ctx.pg.engine)
        window_start = time.monotonic()
        with Sampler(f"{plan.rate} ev/s paced: service", [service]) as timeline:
            paced = produce_paced(ctx.bootstrap, topics, plan.events, plan.encoded)
            drain = settings.max_wait_seconds + 60
            until(lambda: reader.count() >= len(plan.keys), timeout=drain, what="every output")
            until(lambda: service.metric(CONSUMED) >= len(plan.events), timeout=30, what="all in")
        count = statements.read(ctx.pg.engine, role=SERVICE_ROLE, database=database)
        window = time.monotonic() - window_start
        ctx.timelines.append(timeline)
        metrics = service.metrics()
    finally:
        reader.close()
        service.stop()
        kafka_topics.delete(ctx.admin, topics.all)
    latencies = [
        reader.first[key].at - paced.last_sent[key] for key in plan.keys if key in reader.first
    ]
    events = len(plan.events)
    return {
        "events": events,
        "bursts": len(plan.keys),
        "achieved_events_per_s": paced.rate,
        "producer_lateness_s": summary(paced.lateness),
        "statements": count.as_json(),
        "statement_window_s": window,
        "statements_per_event": count.total / events,
        "statements_per_event_without_utility": (count.total - count.utility) / events,
        "outputs_read": len(reader.event_ids),
        "duplicate_output_ids": len(reader.event_ids) - len(set(reader.event_ids)),
        "bursts_without_output": len(plan.keys) - len(latencies),
        "latency_s": summary(latencies),
        "latencies_s": sorted(round(x, 4) for x in latencies),
        "evaluations": metrics.get("cert_consumer_evaluations_total"),
        "quiet_window_s": settings.quiet_window_seconds,
        "idle_sleep_s": settings.idle_sleep_seconds,
    }


def _baseline_run(ctx: Context, plan: Plan, database: str) -> dict[str, Any]:
    topics = kafka_topics.create(ctx.admin, f"base{plan.rate}", partitions=3)
    baseline = BaselineProcess(
        bootstrap=ctx.bootstrap,
        database_url=ctx.pg.url(database, BASELINE_ROLE),
        topics=list(topics.inputs),
        work=ctx.work,
    )
    try:
        baseline.start()
        statements.reset(ctx.pg.engine)
        paced = produce_paced(ctx.bootstrap, topics, plan.events, plan.encoded)
        drain = max(5.0, ctx.profile.rate_seconds / 5)
        end = time.monotonic() + drain
        until(
            lambda: baseline.events() >= len(plan.events) or time.monotonic() > end,
            timeout=drain + 10,
            what="baseline drain",
        )
        state = baseline.stop()
        count = statements.read(ctx.pg.engine, role=BASELINE_ROLE, database=database)
    finally:
        baseline.stop()
        kafka_topics.delete(ctx.admin, topics.all)
    handled = int(state.get("events", 0))
    return {
        "events_produced": len(plan.events),
        "achieved_events_per_s": paced.rate,
        "events_handled": handled,
        "events_per_s_handled": handled / (paced.seconds + drain),
        "kept_up": handled >= len(plan.events),
        "transitions": state.get("transitions"),
        "statements": count.as_json(),
        "statements_per_event": count.total / handled if handled else None,
    }


def run(
    ctx: Context, *, latency_rates: tuple[int, ...], statement_rates: tuple[int, ...]
) -> dict[str, Any]:
    results: dict[str, Any] = {"rates": {}}
    for rate in sorted(set(latency_rates) | set(statement_rates)):
        plan = Plan(ctx, rate)
        seed_db = ctx.pg.create_database(f"paced_seed_{rate}")
        engine = ctx.engine(seed_db)
        world.seed_passing(engine, plan.keys)
        engine.dispose()
        entry: dict[str, Any] = {"shape": vars(plan.shape)}
        try:
            service_db = ctx.pg.create_database(f"paced_svc_{rate}", template=seed_db)
            try:
                entry["service"] = _service_run(ctx, plan, service_db)
            finally:
                ctx.pg.drop_database(service_db)
            if rate in statement_rates:
                base_db = ctx.pg.create_database(f"paced_base_{rate}", template=seed_db)
                try:
                    entry["baseline"] = _baseline_run(ctx, plan, base_db)
                finally:
                    ctx.pg.drop_database(base_db)
                svc, base = entry["service"], entry["baseline"]
                if base["statements_per_event"]:
                    entry["baseline_to_service_ratio"] = (
                        base["statements_per_event"] / svc["statements_per_event"]
                    )
        finally:
            ctx.pg.drop_database(seed_db)
        results["rates"][str(rate)] = entry
    return results
