"""Phase 5, peak memory with many pending keys: one page_score_updated event for each of N
distinct learners (per-user triggers) is produced first; the whole service (all roles) then
ingests them with a quiet window and maximum wait of a day, so the evaluator runs but holds
off and every key stays pending. The process's resident memory is sampled every 0.25 s and
its kernel high-water mark (VmHWM) read before it is stopped."""

from __future__ import annotations

from typing import Any

from bench.e2e import topics as kafka_topics
from bench.e2e import world
from bench.e2e.context import Context
from bench.e2e.producing import produce_backlog
from bench.e2e.sampler import CONSUMED, Sampler
from bench.e2e.waiting import until
from bench.e2e.workload import Encoder, learners, one_each

HOLD_OFF = {
    "CERT_CONSUMER_QUIET_WINDOW_SECONDS": "86400",
    "CERT_CONSUMER_MAX_WAIT_SECONDS": "86400",
}


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.profile.pending_keys
    topics = kafka_topics.create(ctx.admin, "memory", partitions=3)
    database = ctx.pg.create_database("memory")
    engine = ctx.engine(database)
    try:
        keys = learners(1, count)
        produced = produce_backlog(ctx.bootstrap, topics, Encoder(ctx.codec, "mem"), one_each(keys))
        del keys
        env = ctx.env(database, topics, extra=HOLD_OFF)
        service = ctx.service("memory", env)
        try:
            with Sampler("pending keys: 1 process, all roles, evaluator held off", [service]) as tl:
                service.start()
                healthy = service.wait_healthy()
                idle_rss = service.rss_bytes()
                done = until(
                    lambda: service.metric(CONSUMED) >= count,
                    timeout=300 + count / 1000,
                    what="every key ingested",
                    interval=0.25,
                )
                pending = world.pending(engine)
                hwm = service.high_water_rss_bytes()
                last_rss = service.rss_bytes()
            ctx.timelines.append(tl)
            evaluations = service.metric("cert_consumer_evaluations_total")
        finally:
            service.stop()
        sampled_peak = max((s.rss_bytes for s in tl.samples), default=0)
        return {
            "keys": count,
            "produce_events_per_s": produced.rate,
            "ingest_seconds": done - healthy,
            "ingest_events_per_s": count / (done - healthy),
            "pending_rows": pending,
            "evaluations_during": evaluations,
            "rss_after_start_bytes": idle_rss,
            "rss_at_end_bytes": last_rss,
            "peak_rss_sampled_bytes": sampled_peak,
            "peak_rss_vmhwm_bytes": hwm,
            "peak_rss_bytes": max(hwm, sampled_peak),
        }
    finally:
        engine.dispose()
        ctx.pg.drop_database(database)
        kafka_topics.delete(ctx.admin, topics.all)
