"""REPORT.md from the raw figures: the targets first, then every figure with how it was
measured, then the machine. Everything in it comes from the run's JSON, so the two agree."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from bench.e2e.targets import Target


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _targets(targets: list[Target]) -> list[str]:
    rows = [
        (
            t.name,
            f"{_n(t.figure, 3 if t.unit in ('x', 's') else 1)} {t.unit}",
            f"{'>=' if t.higher_is_better else '<='} {t.target:g} {t.unit}",
            _n(t.ratio, 2),
            f"**{t.verdict}**",
            t.note,
        )
        for t in targets
    ]
    return [
        "## Targets",
        "",
        "Reported, not asserted. Ratio >= 1 means met (figure/target for an at-least target, "
        "target/figure for an at-most one).",
        "",
        *_table(("target", "figure", "target", "ratio", "verdict", "note"), rows),
    ]


def _code_changes(phases: dict[str, Any]) -> list[str]:
    """A warning when the service's code or settings changed while the run was under way."""
    codes = {c for r in phases.values() for c in (r.get("code"), r.get("code_at_end")) if c}
    keys = [json.dumps(r.get("settings"), sort_keys=True) for r in phases.values()]
    if len(codes) <= 1 and len(set(keys)) <= 1:
        return []
    rows = [(name, str(r.get("code")), str(r.get("code_at_end"))) for name, r in phases.items()]
    return [
        "## The service changed during this run",
        "",
        "The code under consumer/ (commit + digest of uncommitted changes) or its settings "
        "differed between phases: each phase's figures are of the code it started with.",
        "",
        *_table(("phase", "code at start", "code at end"), rows),
    ]


def _ingest(r: dict[str, Any]) -> list[str]:
    rows = [
        (
            "(a) plain consume (ceiling 1)",
            _n(r["ceiling_plain_consume"]["seconds"], 2),
            _n(r["ceiling_plain_consume"]["events_per_s"]),
        ),
        (
            "(b) consume + Codec.decode (ceiling 2)",
            _n(r["ceiling_consume_decode"]["seconds"], 2),
            _n(r["ceiling_consume_decode"]["events_per_s"]),
        ),
        (
            "(c) service, until every event upserted",
            _n(r["service_until_upserted_s"], 2),
            _n(r["service_events_per_s_upserted"]),
        ),
        (
            "(c) service, committed offsets at the end",
            _n(r["service_until_committed_s"], 2),
            _n(r["service_events_per_s_committed"]),
        ),
    ]
    return [
        "## 1. Ingest beside its ceiling",
        "",
        f"{r['events']:,} events ({r['distinct_keys']:,} keys, bursts of 3-8 events, 15% "
        f"post_created) on two {r['partitions']}-partition input topics, produced first at "
        f"{_n(r['produce_events_per_s'])} events/s.",
        "",
        *_table(("reader", "seconds", "events/s"), rows),
        f"Service / ceiling 2: **{_n(r['ratio_upserted_to_decode_ceiling'], 3)}** until "
        f"upserted, **{_n(r['ratio_committed_to_decode_ceiling'], 3)}** with committed offsets "
        f"(service / ceiling 1 with offsets: {_n(r['ratio_committed_to_plain_ceiling'], 3)}). "
        f"Pending rows afterwards: {r['pending_rows_after']:,}; dead-lettered: "
        f"{_n(r['dead_lettered'])}; {_n(r['ingest_batches'])} batches, "
        f"{_n(r['ingest_batch_seconds_sum'], 2)} s inside them; start to healthy "
        f"{_n(r['service_start_to_healthy_s'], 2)} s (not counted).",
        "",
        *_sql_time(r.get("service_statements")),
    ]


def _sql_time(sql: dict[str, Any] | None) -> list[str]:
    """Where the ingest's time in PostgreSQL went (pg_stat_statements total_exec_time)."""
    if not sql:
        return []
    top = "; ".join(
        f"`{t['query'][:50]}` x{t['calls']:,} {t['exec_seconds']:.2f} s" for t in sql["top"][:3]
    )
    return [
        f"PostgreSQL executed {sql['total']:,} statements of the service for "
        f"{sql['exec_seconds']:.2f} s in all: {top}.",
        "",
    ]


def _evaluation(r: dict[str, Any]) -> list[str]:
    per_key = r["one_key_per_call"]
    rows = [
        (
            "service, evaluate role alone",
            f"{r['pending_keys_before']:,}",
            _n(r["service_seconds"], 2),
            _n(r["service_keys_per_s"]),
        ),
        (
            "one key per call (evaluate_keys(conn, [key]))",
            f"{per_key['keys']:,}",
            _n(per_key["seconds"], 2),
            _n(per_key["keys_per_s"]),
        ),
        (
            "relay role alone (outbox -> Kafka)",
            f"{r['outbox_events']:,}",
            _n(r["relay_seconds"], 2),
            _n(r["relay_events_per_s"]),
        ),
    ]
    return [
        "## 2. Evaluation",
        "",
        *_table(("what", "keys", "seconds", "per s"), rows),
        f"Service / one key per call: **{_n(r['ratio_to_one_key_per_call'], 1)}x**. "
        f"{r['events']:,} events made {_n(r['service_evaluations'])} evaluations: "
        f"**{_n(r['events_per_evaluation'], 2)} events per evaluation** (the service's own "
        f"triggers-per-evaluation histogram: {_n(r['triggers_per_evaluation'], 2)}). "
        f"Grants written {r['grants_written']:,}; time inside evaluation transactions "
        f"{_n(r['evaluation_transaction_seconds_sum'], 2)} s of {_n(r['service_seconds'], 2)} s.",
        "",
    ]


def _paced(r: dict[str, Any]) -> list[str]:
    stmt_rows, lat_rows = [], []
    for rate, e in sorted(r["rates"].items(), key=lambda kv: int(kv[0])):
        s = e["service"]
        b = e.get("baseline")
        stmt_rows.append(
            (
                rate,
                _n(s["achieved_events_per_s"]),
                f"{s['events']:,}",
                f"{s['statements']['total']:,}",
                _n(s["statements_per_event"], 3),
                _n(s["statements_per_event_without_utility"], 3),
                _n(b["statements_per_event"], 2) if b else "-",
                f"{b['events_handled']:,} ({_n(b['events_per_s_handled'])}/s)" if b else "-",
                _n(e.get("baseline_to_service_ratio"), 1),
            )
        )
        lat = s["latency_s"]
        if lat:
            lat_rows.append(
                (
                    rate,
                    f"{lat['count']:,}",
                    _n(lat["min"], 3),
                    _n(lat["p50"], 3),
                    _n(lat["p90"], 3),
                    _n(lat["p99"], 3),
                    _n(lat["max"], 3),
                    str(s["bursts_without_output"]),
                    str(s["duplicate_output_ids"]),
                    _n(s["producer_lateness_s"].get("p99"), 3),
                )
            )
    first = next(iter(r["rates"].values()))["service"]
    out = [
        "## 3. Statements per event, service vs per-event baseline",
        "",
        *_table(
            (
                "ev/s",
                "achieved",
                "events",
                "service stmts",
                "service /event",
                "service /event w/o BEGIN/COMMIT",
                "baseline /event",
                "baseline handled",
                "baseline / service",
            ),
            stmt_rows,
        ),
    ]
    tops = [
        f"- {rate} ev/s: "
        + "; ".join(
            f"`{t['query'][:70]}` x{t['calls']:,}" for t in e["service"]["statements"]["top"][:4]
        )
        for rate, e in sorted(r["rates"].items(), key=lambda kv: int(kv[0]))
    ]
    out += [
        "Statements are counted from the reset before producing until every output was read "
        "(the window includes the last quiet window and the relay). Baseline handled: events "
        "it evaluated in the window plus its drain; it cannot keep up beyond that rate.",
        "",
        "The service's most frequent statements per rate:",
        "",
        *tops,
        "",
    ]
    out += [
        "## 4. Latency, last trigger -> output event read",
        "",
        f"Quiet window {first['quiet_window_s']:g} s (the service default unless --quiet-window "
        f"was given), idle sleep {first['idle_sleep_s']:g} s. Seconds:",
        "",
        *_table(
            (
                "ev/s",
                "bursts",
                "min",
                "p50",
                "p90",
                "p99",
                "max",
                "no output",
                "duplicate ids",
                "producer p99 behind schedule",
            ),
            lat_rows,
        ),
    ]
    return out


def _idle(r: dict[str, Any]) -> list[str]:
    rows = [
        (
            "all roles in one process",
            _n(r["all_roles"]["window_s"], 1),
            f"{r['all_roles']['statements']['total']:,}",
            _n(r["all_roles"]["statements_per_s"], 2),
            _n(r["all_roles"]["statements_per_s_per_loop"], 2),
        )
    ]
    for role, m in r["per_role"].items():
        rows.append(
            (
                f"{role} alone",
                _n(m["window_s"], 1),
                f"{m['statements']['total']:,}",
                _n(m["statements_per_s"], 2),
                _n(m["statements_per_s_per_loop"], 2),
            )
        )
    tops = "; ".join(
        f"`{t['query'][:60]}` x{t['calls']}" for t in r["all_roles"]["statements"]["top"][:5]
    )
    return [
        "## 3b. Idle",
        "",
        f"No input; idle sleep {r['idle_sleep_s']:g} s.",
        "",
        *_table(("process", "window s", "statements", "per s", "per s per loop"), rows),
        f"Statements while idle (all roles): {tops or 'none'}",
        "",
    ]


def _memory(r: dict[str, Any]) -> list[str]:
    mb = 2**20
    return [
        "## 5. Peak RSS with pending keys",
        "",
        *_table(
            (
                "keys",
                "pending rows",
                "ingest events/s",
                "RSS after start",
                "peak RSS (VmHWM)",
                "peak RSS (sampled)",
                "RSS at end",
            ),
            [
                (
                    f"{r['keys']:,}",
                    f"{r['pending_rows']:,}",
                    _n(r["ingest_events_per_s"]),
                    f"{r['rss_after_start_bytes'] / mb:.1f} MB",
                    f"{r['peak_rss_vmhwm_bytes'] / mb:.1f} MB",
                    f"{r['peak_rss_sampled_bytes'] / mb:.1f} MB",
                    f"{r['rss_at_end_bytes'] / mb:.1f} MB",
                )
            ],
        ),
        f"Evaluations while the keys were held pending: {_n(r['evaluations_during'])}.",
        "",
    ]


def _scaling(r: dict[str, Any]) -> list[str]:
    rows = []
    for run in r["runs"]:
        c = run["checks"]
        rows.append(
            (
                str(run["processes"]),
                _n(run["ingest_events_per_s"]),
                " / ".join(_n(x) for x in run["consumed_per_process"]),
                _n(run["evaluations_per_s"]),
                _n(run["evaluations_per_s_all_joined"]),
                " / ".join(_n(x) for x in run["evaluations_per_process"]),
                f"{run['grants']:,} / {run['outbox']:,} / {run['outputs_read']:,}",
                f"{c['duplicate_grants']} / {c['duplicate_output_ids']} / "
                f"{c['keys_with_two_transition_lines']} / {c['failure_lines']}",
                "**ok**" if c["ok"] else "**FAILED**",
            )
        )
    return [
        "## 6. 1, 2 and 3 processes on 6 partitions",
        "",
        f"{r['keys']:,} keys, {r['events']:,} events on {r['partitions']}-partition topics. "
        "Ingest: the partitions are spread over the processes before the backlog is produced "
        "(consumed per process shows how the broker spread the load). Evaluation: "
        "from the first process's /healthz, and over the keys left once the last one was "
        "healthy (- when under a tenth was left).",
        "",
        *_table(
            (
                "processes",
                "ingest ev/s",
                "consumed per process",
                "evaluations/s",
                "evaluations/s, all in",
                "evaluated per process",
                "grants / outbox / outputs",
                "dup grants / dup ids / keys with 2 transition lines / failure lines",
                "checks",
            ),
            rows,
        ),
    ]


_HOW = """## How each figure was measured

- **Processes.** Every service figure is of `cert-consumer run` started as a separate process
  with `CERT_CONSUMER_*` variables (JSON logs to a file, its own metrics port), on the
  benchmark's own Kafka broker (`scripts/kafka.sh`) and embedded PostgreSQL (fsync off,
  `shared_preload_libraries=pg_stat_statements`); broker, database, service and benchmark share
  the machine's cores. Each phase uses its own database cloned from a migrated template, and
  fresh topics. Settings not named are the service's defaults.
- **Ingest.** The input is produced first. Ceiling 1 is a confluent-kafka consumer reading the
  whole input in batches of 2,000 (the service's batch size); ceiling 2 also decodes every value
  with `consumer.events.codec.Codec.decode`. Both are timed from creating the consumer (group
  join included). The service runs the ingest role only (`CERT_CONSUMER_ROLES=ingest`: no
  evaluator competes), timed from its /healthz first answering 200 (group join included, the
  interpreter start not) until `cert_consumer_events_consumed_total` (counted after the batch's
  upsert commits) reaches N, and until `list_consumer_group_offsets` equals every partition's
  high watermark (the service auto-commits stored offsets every second).
- **Evaluation.** The backlog (one burst per passing learner) is ingested by an ingest-only
  process; once no pending row has `due_at` in the future, an evaluate-only process is started
  and timed from /healthz to an empty `pending_evaluations` table (polled every 50 ms). Events
  per evaluation = events produced / `cert_consumer_evaluations_total`. One key per call is
  `evaluate_keys(conn, [key], now=...)` in its own transaction per key, on other learners of
  the same database, in the benchmark's process.
- **Statements.** `pg_stat_statements_reset()` just before producing; the sum of `calls` of the
  statements run by the service's database role in its database (BEGIN/COMMIT included; the
  benchmark connects as `postgres`, so its polling is excluded), read once every output event
  has arrived, divided by the events produced. The baseline (`bench/e2e/baseline.py`, its own
  process and role) evaluates one key per event at once in its own transaction; it gets the
  same schedule at the same rate plus a short drain and is stopped; its statements are divided
  by the events it handled (at the higher rates it cannot keep up).
- **Idle.** After readiness and a 2 s warm-up, statements over the window divided by its
  length; per loop = divided by the number of loops of the process; also each role alone.
- **Latency.** Per burst, from handing its last event to the producer (linger 5 ms) to the
  benchmark's consumer reading that learner's certificate-granted event (every learner passes,
  so the first evaluation grants; each learner bursts once, so each burst has one output).
  Bursts last 0.2-1.0 s (at most half the quiet window), starts uniform over the window.
- **Peak RSS.** `/proc/<pid>/status` VmHWM of the service process (read before stopping) and
  psutil RSS sampled every 0.25 s, while it ingests one event per distinct learner with all
  roles running and quiet window = max wait = 1 day, so the evaluator holds off.
- **Processes on 6 partitions.** One workload (two bursts per learner), encoded once; per
  process count fresh 6-partition topics, a new group and a fresh copy of the seeded database.
  n ingest-only processes are started and, once `describe_consumer_groups` shows the 12 input
  partitions spread evenly over n members, the pre-encoded backlog is produced at full speed;
  ingest is timed from the first record produced to the summed consumed counters reaching N.
  Then, all keys due, n evaluate-only processes (from the first /healthz, and over the keys
  left once the last is healthy, to an empty pending table), then one relay. The JSON logs
  have one `transition_written` line per transition but no per-key claim/release lines, so
  overlap in time cannot be read from them; the checks are: summed evaluations = keys, no
  duplicate granted certificate, outbox = grants, outputs read = outbox, no event id twice,
  no key with two transition lines, no `batch_failed_isolating` / `evaluation_failed` lines.
"""


def render(run: dict[str, Any], targets: list[Target]) -> str:
    machine = run["machine"]
    phases = run["phases"]
    out = [
        "# End-to-end benchmark of `cert-consumer run`",
        "",
        f"Mode **{run['mode']}**, started {machine['started_at']}, took "
        f"{run['duration_s'] / 60:.1f} min: `{run['command']}`. Raw figures: "
        f"[`{run['json_name']}`]({run['json_name']}).",
        "",
    ]
    out += _targets(targets)
    out += _code_changes(phases)
    failed = {k: v["error"] for k, v in phases.items() if isinstance(v, dict) and "error" in v}
    if failed:
        out += ["## Phases that failed", ""]
        out += [f"- **{k}**: `{v}`" for k, v in failed.items()] + [""]
    sections = {
        "ingest": _ingest,
        "evaluation": _evaluation,
        "paced": _paced,
        "idle": _idle,
        "memory": _memory,
        "scaling": _scaling,
    }
    for name, render_phase in sections.items():
        if name in phases and name not in failed:
            out += render_phase(phases[name])
    if run.get("plots"):
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in run["plots"]] + [""]
    out += ["## Load on the machine", ""]
    out += [
        "1-minute load average at the start and end of each phase (2 cores: above ~2, something "
        "else was also running, e.g. another test session; the benchmark itself keeps ~2 busy "
        "in the throughput phases).",
        "",
    ]
    out += _table(
        ("phase", "seconds", "load at start", "load at end"),
        [
            (name, _n(r.get("phase_seconds"), 0), str(r.get("load_at_start", ["-"])[0]),
             str(r.get("load_at_end", ["-"])[0]))
            for name, r in phases.items()
        ],
    )  # fmt: skip
    settings = run["settings"]
    out += ["## Service settings", ""]
    out += _table(("setting", "value"), [(k, str(v)) for k, v in settings.items()])
    out += ["## Machine", ""]
    out += _table(
        ("fact", "value"),
        [
            ("cores", str(machine["cores"])),
            ("memory", f"{machine['memory_gb']} GB"),
            ("load at start (1/5/15 min)", " / ".join(str(x) for x in machine["load_at_start"])),
            ("platform", machine["platform"]),
            ("python", machine["python"]),
            ("librdkafka", machine["librdkafka"]),
            ("Kafka broker", run["kafka_version"]),
            ("PostgreSQL", run["postgres_version"]),
            ("packages", ", ".join(f"{k} {v}" for k, v in machine["packages"].items())),
            (
                "git commit",
                f"{machine['git_commit']} ({machine['git_dirty_files']} tracked files "
                "modified in the working tree)",
            ),
        ],
    )
    out.append(_HOW)
    return "\n".join(out)
