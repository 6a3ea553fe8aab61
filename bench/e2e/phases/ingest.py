"""Phase 1, ingest beside its ceiling: N events are produced to the input topics first; then
the same topics are read by (a) a plain consumer, (b) a consumer that also decodes every value
with the service's Codec, and (c) `cert-consumer run` with only the ingest role (so the
evaluator does not compete), timed until every event is upserted (its consumed counter, which
counts only after the batch's upsert committed) and until the group's committed offsets reach
the end of every partition."""

from __future__ import annotations

import time
from typing import Any

from bench.e2e import statements, world
from bench.e2e import topics as kafka_topics
from bench.e2e.context import Context
from bench.e2e.infra import SERVICE_ROLE
from bench.e2e.kafka_read import consume_all
from bench.e2e.producing import produce_backlog
from bench.e2e.sampler import CONSUMED, Sampler
from bench.e2e.waiting import until
from bench.e2e.workload import Encoder, Shape, bursts_for, learners, schedule

BURSTS_PER_LEARNER = 2


def run(ctx: Context) -> dict[str, Any]:
    total = ctx.profile.ingest_events
    rng = ctx.rng("ingest")
    shape = Shape()
    # 5% more bursts than the mean size needs, then cut to exactly ``total`` events.
    count = max(1, round(1.05 * total / (shape.mean_burst * BURSTS_PER_LEARNER)))
    keys = learners(1, count)
    bursts = bursts_for(rng, keys * BURSTS_PER_LEARNER, shape)
    events = schedule(rng, bursts, duration_s=total / 2000, shape=shape)[:total]
    if len(events) < total:
        raise RuntimeError(f"the schedule has {len(events)} events, fewer than {total}")
    distinct = len({(e.section_id, e.user_id) for e in events})
    topics = kafka_topics.create(ctx.admin, "ingest", partitions=3)
    database = ctx.pg.create_database("ingest")
    try:
        produced = produce_backlog(ctx.bootstrap, topics, Encoder(ctx.codec, "ingest"), events)
        del events
        until(
            lambda: kafka_topics.total_end(ctx.admin, topics.inputs) >= total,
            timeout=30,
            what=f"{total} records in the input topics",
        )
        ends = kafka_topics.end_offsets(ctx.admin, topics.inputs)
        plain = consume_all(ctx.bootstrap, topics.inputs, total, codec=None)
        decoded = consume_all(ctx.bootstrap, topics.inputs, total, codec=ctx.codec)
        group = f"bench-ingest-{topics.scores[-8:]}"
        env = ctx.env(database, topics, group=group, roles="ingest")
        service = ctx.service("ingest", env)
        timeout = 120 + total / 1000
        statements.reset(ctx.pg.engine)
        try:
            with Sampler("ingest: 1 process, ingest role", [service]) as timeline:
                service.start()
                healthy = service.wait_healthy()
                upserted = until(
                    lambda: service.metric(CONSUMED) >= total, timeout=timeout, what="all consumed"
                )
                committed = until(
                    lambda: kafka_topics.all_committed(ctx.admin, group, ends),
                    timeout=60,
                    what="committed offsets at the end",
                    interval=0.1,
                )
            ctx.timelines.append(timeline)
            metrics = service.metrics()
            rss_peak = service.high_water_rss_bytes()
            sql = statements.read(ctx.pg.engine, role=SERVICE_ROLE, database=database)
        finally:
            service.stop()
        engine = ctx.engine(database)
        pending = world.pending(engine)
        engine.dispose()
        upserted_s = upserted - healthy
        committed_s = committed - healthy
        ceiling = decoded.rate
        return {
            "events": total,
            "distinct_keys": distinct,
            "partitions": 3,
            "produce_events_per_s": produced.rate,
            "ceiling_plain_consume": {"seconds": plain.seconds, "events_per_s": plain.rate},
            "ceiling_consume_decode": {"seconds": decoded.seconds, "events_per_s": ceiling},
            "service_start_to_healthy_s": healthy - service.spawned_at,
            "service_until_upserted_s": upserted_s,
            "service_until_committed_s": committed_s,
            "service_events_per_s_upserted": total / upserted_s,
            "service_events_per_s_committed": total / committed_s,
            "ratio_upserted_to_decode_ceiling": total / upserted_s / ceiling,
            "ratio_committed_to_decode_ceiling": total / committed_s / ceiling,
            "ratio_committed_to_plain_ceiling": total / committed_s / plain.rate,
            "pending_rows_after": pending,
            "dead_lettered": metrics.get("cert_consumer_dlq_records_total", 0.0),
            "ingest_batch_seconds_sum": metrics.get("cert_consumer_batch_duration_seconds_sum"),
            "ingest_batches": metrics.get("cert_consumer_batch_duration_seconds_count"),
            "service_peak_rss_bytes": rss_peak,
            "service_statements": sql.as_json(),
            "measured_at": time.time(),
        }
    finally:
        ctx.pg.drop_database(database)
        kafka_topics.delete(ctx.admin, topics.all)
