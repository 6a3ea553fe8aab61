"""The ``cert-consumer`` command: parse, load settings, set up logging, wire, run.

Stays thin: each subcommand hands over to the module that owns the work. Exit codes: 0 ok,
1 fatal error, 2 bad configuration or usage, 3 a check failed (e.g. schemas incompatible).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import sqlalchemy as sa
import structlog

from consumer.cli import ops, schemas
from consumer.cli.common import command_engine, command_settings, positive_int
from consumer.errors import (
    CertConsumerError,
    ConfigError,
    FatalError,
    MissingExtraError,
    RefusedError,
    StartupTimeoutError,
)
from consumer.observability import logs
from consumer.store.refusals import refusal

Handler = Callable[[argparse.Namespace], int]
log = structlog.get_logger("consumer.cli.main")


def _db_upgrade(args: argparse.Namespace) -> int:
    from consumer.store.migrations import upgrade  # noqa: PLC0415

    with command_engine(command_settings(args)) as engine:
        applied = upgrade(engine)
    log.info("db_upgraded", applied=applied)
    print(f"applied migrations: {applied or 'none (already up to date)'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415

    from consumer.evaluation import evaluate_keys  # noqa: PLC0415

    key = (args.section_id, args.user_id)
    with command_engine(command_settings(args)) as engine, engine.begin() as conn:
        result = evaluate_keys(conn, [key], now=datetime.now(UTC), apply=not args.dry_run)
    decision = result.decisions[key]
    print(
        json.dumps(
            {
                "decision": decision.kind.value,
                "reason": decision.reason.value if decision.reason else None,
                "state": decision.state.value if decision.state else None,
                "with_distinction": decision.with_distinction,
                "applied": bool(result.transitions),
            }
        )
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from consumer.runtime import run_service  # noqa: PLC0415

    roles = None
    if args.role:
        roles = ("ingest", "evaluate", "relay") if args.role == "all" else (args.role,)
    return run_service(command_settings(args, roles=roles))


def _learners(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 5000:
        raise argparse.ArgumentTypeError("must be between 1 and 5000")
    return value


def _demo(args: argparse.Namespace) -> int:
    try:
        from consumer.demo.run import run_demo  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        # The demo's display and embedded servers are an extra; a product install lacks them.
        if (exc.name or "consumer").split(".")[0] == "consumer":
            raise
        raise MissingExtraError("cert-consumer demo", "embedded", exc.name or "?") from exc

    logs.configure("WARNING", "auto")
    return run_demo(keep=args.keep, learners=args.learners)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cert-consumer",
        description="Decides when a Torus student has earned a course certificate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the service's own PostgreSQL schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="create or migrate the cert_consumer schema")
    up.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    up.set_defaults(handler=_db_upgrade)

    run = sub.add_parser("run", help="run the service loops until SIGTERM")
    run.add_argument(
        "--role",
        choices=["all", "ingest", "evaluate", "relay"],
        help="loops to run (default: CERT_CONSUMER_ROLES, else all)",
    )
    run.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    run.set_defaults(handler=_run)

    evaluate = sub.add_parser("evaluate", help="evaluate one key against the database now")
    evaluate.add_argument("--section-id", type=positive_int, required=True)
    evaluate.add_argument("--user-id", type=positive_int, required=True)
    evaluate.add_argument("--dry-run", action="store_true", help="decide but write nothing")
    evaluate.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    evaluate.set_defaults(handler=_evaluate)

    schemas.add_commands(sub)
    ops.add_commands(sub)

    demo = sub.add_parser("demo", help="run the whole pipeline embedded, no services needed")
    demo.add_argument("--keep", action="store_true", help="keep the database folder")
    demo.add_argument(
        "--learners", type=_learners, default=40, help="learners in the course (default 40)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ConfigError, MissingExtraError) as exc:
        print(f"cert-consumer: {exc}", file=sys.stderr)
        return 2
    except RefusedError as exc:
        log.error("dependency_refused", error=str(exc))
        print(f"cert-consumer: {exc}", file=sys.stderr)
        return 2
    except StartupTimeoutError as exc:
        log.error("startup_timed_out", error=str(exc))
        print(f"cert-consumer: {exc}", file=sys.stderr)
        return 3
    except FatalError as exc:
        log.error("fatal_error", error=str(exc))
        print(f"cert-consumer: {exc}", file=sys.stderr)
        return 1
    except CertConsumerError as exc:
        print(f"cert-consumer: {exc}", file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        refused = refusal(exc)
        if refused is None:
            raise
        print(f"cert-consumer: {refused}", file=sys.stderr)
        return 2
