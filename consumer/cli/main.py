"""The ``cert-consumer`` command: parse, load settings, set up logging, wire, run.

Stays thin: each subcommand hands over to the module that owns the work; every failure leaves
through ``consumer.cli.failures`` (one line, a documented exit code).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

import structlog

from consumer.cli import explain, failures, ops, schemas
from consumer.cli.common import command_engine, command_settings, positive_int
from consumer.cli.failures import EXIT_CODES
from consumer.config import describe
from consumer.errors import MissingExtraError
from consumer.observability import logs
from consumer.observability.metrics import build

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
    return run_service(command_settings(args, roles=roles, shadow=args.shadow or None))


def _learners(raw: str) -> int:
    value = positive_int(raw)
    if value > 5000:
        raise argparse.ArgumentTypeError(f"{raw!r} is more than 5000")
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


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as the other failures are said: one line, exit 2 (subcommands' parsers
    are of this class too: argparse makes them of their parent's)."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("cert-consumer").strip()
        said = f"{where}: {message}" if where else message
        self.exit(2, f"cert-consumer: {said} (see {self.prog} --help)\n")


def _version() -> str:
    release, commit = build()
    return release if commit == "unknown" else f"{release} ({commit})"


def _epilog() -> str:
    variables = "\n".join(f"  {name} (default {default or '-'})" for name, default, _ in describe())
    return (
        "environment (every setting; <NAME>_FILE reads it from a file; README, Configuration):\n"
        f"{variables}\n  CERT_CONSUMER_KAFKA_<PROPERTY>  any librdkafka property\n\n{EXIT_CODES}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="cert-consumer",
        description="Decides when a Torus student has earned a course certificate.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a failure (and say it)"
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
    run.add_argument(
        "--shadow",
        action="store_true",
        help="record decisions instead of granting or publishing (CERT_CONSUMER_SHADOW)",
    )
    run.set_defaults(handler=_run)

    evaluate = sub.add_parser("evaluate", help="evaluate one key against the database now")
    evaluate.add_argument("--section-id", type=positive_int, required=True)
    evaluate.add_argument("--user-id", type=positive_int, required=True)
    evaluate.add_argument("--dry-run", action="store_true", help="decide but write nothing")
    evaluate.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    evaluate.set_defaults(handler=_evaluate)

    explain.add_command(sub)
    explain.add_audit_command(sub)
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
    except BaseException as exc:  # the CLI's boundary: one line and an exit code, or a bug
        explained = failures.explain(exc)
        if explained is None:
            raise
        if args.debug:
            traceback.print_exc()
        code, lines = explained
        for line in lines:
            print(f"cert-consumer: {line}", file=sys.stderr)
        return int(code)
