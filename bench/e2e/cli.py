"""`bench/run [--quick] [--phases ...] [--output-dir DIR]`: start the infrastructure, run the
phases, write REPORT.md, the raw JSON and the plots, and stop everything it started.

A phase that fails is recorded as failed in the report and the others still run; the exit code
is then 1. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench.e2e import cleanup, machine, report, targets
from bench.e2e.context import FULL, QUICK, Context, Profile
from bench.e2e.infra import REPO, Broker, PgServer
from bench.e2e.phases import evaluation, idle, ingest, memory, paced, scaling
from consumer.events.catalogue import load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec

PHASES = ("ingest", "evaluation", "statements", "latency", "idle", "scaling", "memory")
JSON_NAME = "e2e.json"
# Settings that name this run's resources rather than describe how the service behaves.
_NOT_SETTINGS = {
    "database_url", "bootstrap_servers", "group_id", "group_instance_id", "metrics_port",
    "schemas_dir", "kafka_properties", "schema_registry_url", "scores_topic", "posts_topic",
    "settings_topic", "granted_topic", "approval_topic", "dlq_topic", "cdc_topic_prefix",
    "cdc_schema", "cdc_tables",
}  # fmt: skip


def _rates(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description="End-to-end benchmark report of `cert-consumer run`."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    parser.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    parser.add_argument("--seed", type=int, default=20261201, help="workload random seed")
    parser.add_argument("--events", type=int, help="ingest phase events")
    parser.add_argument("--eval-keys", type=int, help="keys due at once in the evaluation phase")
    parser.add_argument("--per-key-keys", type=int, help="keys evaluated one per call")
    parser.add_argument("--rate-seconds", type=float, help="seconds of paced input per rate")
    parser.add_argument("--statement-rates", type=_rates, help="e.g. 50,400,2000")
    parser.add_argument("--latency-rates", type=_rates, help="e.g. 400,2000")
    parser.add_argument("--idle-seconds", type=float, help="idle window, all roles")
    parser.add_argument("--idle-role-seconds", type=float, help="idle window per role; 0 skips")
    parser.add_argument("--pending-keys", type=int, help="distinct keys of the memory phase")
    parser.add_argument("--scale-keys", type=int, help="keys of the scaling phase")
    parser.add_argument("--scale-processes", type=_rates, help="e.g. 1,2,3")
    parser.add_argument(
        "--quiet-window", type=float, help="service quiet window (default: its own)"
    )
    parser.add_argument("--service-env", action="append", default=[], metavar="NAME=VALUE",
                        help="more CERT_CONSUMER_* settings for every service process")  # fmt: skip
    parser.add_argument("--keep-work", action="store_true", help="keep logs and data folder")
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}")
    return args


def profile_of(args: argparse.Namespace) -> Profile:
    base = QUICK if args.quick else FULL
    overrides = {
        "ingest_events": args.events,
        "eval_keys": args.eval_keys,
        "per_key_keys": args.per_key_keys,
        "rate_seconds": args.rate_seconds,
        "statement_rates": args.statement_rates,
        "latency_rates": args.latency_rates,
        "idle_seconds": args.idle_seconds,
        "idle_role_seconds": args.idle_role_seconds,
        "pending_keys": args.pending_keys,
        "scale_keys": args.scale_keys,
        "scale_processes": args.scale_processes,
        "quiet_window_s": args.quiet_window,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _runners(ctx: Context, selected: list[str]) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The phases in order; statements and latency share one paced run per rate."""
    p = ctx.profile
    lat = p.latency_rates if "latency" in selected else ()
    stm = p.statement_rates if "statements" in selected else ()
    runs: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for name in selected:
        if name in ("statements", "latency"):
            if not any(r[0] == "paced" for r in runs):
                runs.append(
                    ("paced", lambda: paced.run(ctx, latency_rates=lat, statement_rates=stm))
                )
        else:
            module = {"ingest": ingest, "evaluation": evaluation, "idle": idle,
                      "memory": memory, "scaling": scaling}[name]  # fmt: skip
            runs.append((name, lambda m=module: m.run(ctx)))  # type: ignore[misc]
    return runs


def _settings_table(ctx: Context) -> dict[str, Any]:
    return {k: v for k, v in ctx.settings_now().items() if k not in _NOT_SETTINGS}


def _plots(out: Path, run: dict[str, Any], ctx: Context) -> list[str]:
    """The PNGs, when matplotlib is installed (the bench extra); the report says if not."""
    try:
        from bench.e2e import plots  # noqa: PLC0415 - optional dependency
    except ImportError:
        print("bench: matplotlib missing (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return []
    quiet = float(run["settings"]["quiet_window_seconds"])
    good = {k: v for k, v in run["phases"].items() if isinstance(v, dict) and "error" not in v}
    made = []
    if "paced" in good:
        made.append(plots.latency_cdf(good["paced"], quiet, out / "e2e-latency-cdf.png"))
        made.append(plots.statements_by_rate(good["paced"], out / "e2e-statements.png"))
    made.append(plots.throughput(ctx.timelines, out / "e2e-throughput.png"))
    return [p.name for p in made if p is not None]


def _write(out: Path, run: dict[str, Any], ctx: Context, rows: list[targets.Target]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run["plots"] = _plots(out, run, ctx)
    run["targets"] = [t.as_json() for t in rows]
    run["timelines"] = [tl.as_json() for tl in ctx.timelines]
    (out / JSON_NAME).write_text(json.dumps(run, indent=1, default=str) + "\n")
    (out / "REPORT.md").write_text(report.render(run, rows))


def _summary(rows: list[targets.Target]) -> None:
    print("\nbench: targets")
    for t in rows:
        figure = "-" if t.figure is None else f"{t.figure:,.3f}"
        print(f"  {t.verdict:6} {t.name}: {figure} {t.unit} (target {t.target:g})")


def _run(args: argparse.Namespace, run: dict[str, Any], work: Path) -> list[targets.Target]:
    """Infrastructure up, every phase, the files written; returns the target rows. Its Kafka
    clients go with its frame, before the broker is stopped."""
    started = time.monotonic()
    broker = Broker(work / "kafka")
    bootstrap = args.bootstrap or broker.start()
    run["kafka_version"] = broker.version()
    pg = PgServer(work / "pg")
    pg.start()
    run["postgres_version"] = pg.version()
    ctx = Context(
        profile=profile_of(args),
        bootstrap=bootstrap,
        pg=pg,
        admin=AdminClient({"bootstrap.servers": bootstrap}),
        codec=Codec(load_catalogue(locate_schemas_dir())),
        work=work,
        seed=args.seed,
        service_extra=dict(pair.split("=", 1) for pair in args.service_env),
    )
    run["settings"] = _settings_table(ctx)
    print(f"bench: infrastructure up in {time.monotonic() - started:.0f}s", flush=True)
    selected = [p for p in PHASES if p in args.phases.split(",")]
    for name, runner in _runners(ctx, selected):
        phase_started = time.monotonic()
        load = [round(x, 2) for x in os.getloadavg()]
        code, settings = machine.code_identity(), _settings_table(ctx)
        print(f"bench: {name} ... (load {load[0]})", flush=True)
        try:
            result = runner()
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
        result["phase_seconds"] = time.monotonic() - phase_started
        result["load_at_start"] = load
        result["code"] = code
        result["code_at_end"] = machine.code_identity()
        result["settings"] = settings
        result["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        run["phases"][name] = result
        print(f"bench: {name} done in {result['phase_seconds']:.0f}s", flush=True)
    run["duration_s"] = time.monotonic() - run.pop("_started")
    rows = targets.evaluate(run["phases"], float(run["settings"]["quiet_window_seconds"]))
    _write(args.output_dir, run, ctx, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cleanup.install()
    profile = profile_of(args)
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    if not args.keep_work:
        cleanup.register("work folder", lambda: shutil.rmtree(work, ignore_errors=True))
    print(f"bench: {profile.name} mode, phases {args.phases}, work in {work}", flush=True)
    run: dict[str, Any] = {
        "_started": time.monotonic(),
        "mode": profile.name,
        "command": "bench/run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "json_name": JSON_NAME,
        "profile": dataclasses.asdict(profile),
        "machine": machine.facts(),
        "phases": {},
    }
    try:
        rows = _run(args, run, work)
    finally:
        gc.collect()  # the benchmark's Kafka clients are gone before the broker
        cleanup.run_all()
    _summary(rows)
    print(f"bench: report in {args.output_dir / 'REPORT.md'}")
    failed = [n for n, r in run["phases"].items() if "error" in r]
    if failed:
        print(f"bench: phases failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
