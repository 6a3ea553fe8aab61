"""Phase 3b, idle: what the service costs the database when nothing happens. The service runs
with no input for a window (after a short warm-up that keeps start-up out of it) and the
service role's statements are counted; per loop = the all-roles figure divided by the number
of loops, and, in a second pass, each role alone in its own process. A window is never shorter
than three idle sleeps (CERT_CONSUMER_IDLE_SLEEP_SECONDS), so a loop that wakes once per sleep
is seen at least twice."""

from __future__ import annotations

import time
from typing import Any

from bench.e2e import statements
from bench.e2e import topics as kafka_topics
from bench.e2e.context import Context
from bench.e2e.infra import SERVICE_ROLE

ROLES = ("ingest", "evaluate", "relay")
WARM_UP_S = 2.0


def _measure(ctx: Context, roles: str, seconds: float) -> dict[str, Any]:
    database = ctx.pg.create_database(f"idle_{roles.replace(',', '_')}")
    topics = kafka_topics.create(ctx.admin, "idle", partitions=3)
    service = ctx.service(f"idle-{roles}", ctx.env(database, topics, roles=roles))
    try:
        service.start()
        if "ingest" in roles:
            service.wait_ready()
        else:
            service.wait_healthy()
        time.sleep(WARM_UP_S)  # start-up statements stay out of the window
        statements.reset(ctx.pg.engine)
        started = time.monotonic()
        time.sleep(seconds)  # the measurement window itself
        count = statements.read(ctx.pg.engine, role=SERVICE_ROLE, database=database)
        window = time.monotonic() - started
    finally:
        service.stop()
        ctx.pg.drop_database(database)
        kafka_topics.delete(ctx.admin, topics.all)
    loops = len(roles.split(","))
    return {
        "roles": roles,
        "window_s": window,
        "statements": count.as_json(),
        "statements_per_s": count.total / window,
        "statements_per_s_per_loop": count.total / window / loops,
    }


def run(ctx: Context) -> dict[str, Any]:
    settings = ctx.settings()
    shortest = 3 * settings.idle_sleep_seconds
    result: dict[str, Any] = {
        "idle_sleep_s": settings.idle_sleep_seconds,
        "all_roles": _measure(ctx, ",".join(ROLES), max(ctx.profile.idle_seconds, shortest)),
        "per_role": {},
    }
    if ctx.profile.idle_role_seconds > 0:
        for role in ROLES:
            seconds = max(ctx.profile.idle_role_seconds, shortest)
            result["per_role"][role] = _measure(ctx, role, seconds)
    # The worst of: each loop alone, and the all-roles process's share per loop.
    worst = [r["statements_per_s_per_loop"] for r in result["per_role"].values()]
    worst.append(result["all_roles"]["statements_per_s_per_loop"])
    result["worst_loop_statements_per_s"] = max(worst)
    return result
