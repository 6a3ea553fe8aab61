"""``cert-consumer replay|lag|backfill|outbox retry|dlq replay|topics``: the operator's commands.

``add_commands`` adds them to the main parser; each stores its handler as ``args.handler``, a
function of the parsed arguments returning the exit code: 0 ok, 1 failed (broker or database
error, or ``backfill --wait`` timed out), 2 bad usage or refused (``replay --execute`` while the
group has live members). The work itself is in ``consumer.offsets`` and ``consumer.backfill``;
this module parses, loads settings, builds the clients and prints. It must not import the
runtime loops; `consumer.cli` wires it in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, astuple
from datetime import UTC, datetime, timedelta
from typing import TextIO, TypeAlias

import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.cli.common import command_engine, command_settings, positive_int, positive_seconds
from consumer.config import Settings
from consumer.errors import CheckFailedError, ConfigError, RefusedError
from consumer.kafka import clients
from consumer.kafka.delivery import deliver
from consumer.kafka.refusals import Refusals
from consumer.kafka.watermarks import Partition
from consumer.ops import backfill, offsets, redrive, topics
from consumer.store.outbox import retry_set_aside

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def add_commands(subparsers: Subparsers) -> None:
    """Add ``replay``, ``lag``, ``backfill`` and ``outbox retry`` to the CLI's sub-commands."""
    _add_replay(subparsers)
    _add_lag(subparsers)
    _add_backfill(subparsers)
    _add_outbox(subparsers)
    _add_dlq(subparsers)
    _add_topics(subparsers)


def _add_topics(subparsers: Subparsers) -> None:
    found = subparsers.add_parser(
        "topics", help="the six topics the service needs: plan, create or check them"
    )
    commands = found.add_subparsers(dest="topics_command", required=True)
    for name, what in (
        ("plan", "print the recommended topics, partitions, retention and cleanup policy"),
        ("create", "create those that do not exist (existing ones are left as they are)"),
        ("check", "compare the broker's topics with the plan; exit 3 if one is missing"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument(
            "--input-partitions",
            type=positive_int,
            default=6,
            help="partitions of each input topic: the most ingest processes (default 6)",
        )
        command.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name == "create":
            command.add_argument(
                "--replication-factor",
                type=positive_int,
                default=None,
                help="default: the broker's default.replication.factor",
            )
        if name != "plan":
            _bootstrap_flag(command)
        command.set_defaults(handler=run_topics)


def operator_admin(settings: Settings) -> AdminClient:
    """The admin client of one operator command, once the cluster has answered it.

    A refused connection (a wrong SASL password, a CA or host name the broker's certificate
    does not match, plaintext spoken to TLS) ends the command in one line and exit 2 within
    seconds, as it ends ``run`` (ADR 0014); without this first request it would read as
    "unreachable" once the command's own requests timed out. A cluster that does not answer
    within the commands' timeout is unreachable (exit 3).
    """
    refusals = Refusals.of(settings)
    seen: list[str] = []

    def on_error(err: KafkaError) -> None:
        said = refusals.refusal(err)
        if said is not None:
            seen.append(said)

    admin = AdminClient(clients.admin_config(settings) | {"error_cb": on_error})
    deadline = time.monotonic() + offsets.TIMEOUT_SECONDS
    while True:
        try:
            admin.list_topics(timeout=1.0)  # no topic named: nothing is auto-created
            return admin
        except KafkaException:
            admin.poll(0)  # serve the error callbacks the failed request left
            if seen:
                raise RefusedError(seen[0]) from None
            if time.monotonic() >= deadline:
                raise


def run_topics(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``topics plan`` prints; ``create`` makes the missing ones; ``check`` exits 3 when one
    is missing (a difference in partitions or retention is reported, exit 0)."""
    out = out or sys.stdout  # resolved per call: tests and callers redirect it
    settings = command_settings(args, require_database=False)
    specs = topics.plan(settings, args.input_partitions)
    if args.topics_command == "plan":
        if args.json:
            print(json.dumps([asdict(s) for s in specs]), file=out)
        else:
            print(_topics_table(specs), file=out)
        return 0
    admin = operator_admin(settings)
    if args.topics_command == "create":
        factor = args.replication_factor or topics.BROKER_DEFAULT
        created, existing = topics.create(admin, specs, factor)
        summary = {"created": created, "already_there": existing}
        print(json.dumps(summary) if args.json else _created_text(created, existing), file=out)
        return 0
    findings = topics.check(admin, specs)
    if args.json:
        print(json.dumps([asdict(f) for f in findings]), file=out)
    for finding in findings:
        print(f"cert-consumer: topic {finding.topic!r}: {finding.problem}", file=sys.stderr)
    if not args.json and not findings:
        print(f"all {len(specs)} topics are there as planned", file=out)
    return 3 if any(f.missing for f in findings) else 0


def _topics_table(specs: Sequence[topics.TopicSpec]) -> str:
    rows = [
        [s.name, s.role, s.partitions, s.retention_ms // topics.DAY_MS, s.cleanup_policy, s.why]
        for s in specs
    ]
    headers = ["TOPIC", "ROLE", "PARTITIONS", "RETENTION-DAYS", "CLEANUP", "WHY"]
    return _table(headers, rows)


def _created_text(created: Sequence[str], existing: Sequence[str]) -> str:
    lines = [f"created {name}" for name in created]
    lines += [f"already there, left as it is: {name}" for name in existing]
    return "\n".join(lines)


def _add_dlq(subparsers: Subparsers) -> None:
    dlq = subparsers.add_parser("dlq", help="the dead-letter topic")
    commands = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = commands.add_parser(
        "replay",
        help="send dead-lettered records back to their source topic once the cause is fixed",
    )
    start = replay.add_mutually_exclusive_group()
    start.add_argument(
        "--since",
        type=_timestamp_ms,
        metavar="TIME",
        help="from the first dead letter at or after this ISO 8601 time (default: where the "
        "last redrive stopped, else the beginning)",
    )
    start.add_argument("--offset", metavar="P:O,...", help="from these dead-letter offsets")
    replay.add_argument("--dry-run", action="store_true", help="print what would go back")
    _bootstrap_flag(replay)
    replay.set_defaults(handler=run_dlq_replay)


def run_dlq_replay(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Send dead letters back (see ``consumer.redrive``); prints a JSON summary. Exit 1 when a
    record was not acknowledged (nothing is marked done then; running again is safe)."""
    settings = command_settings(args, require_database=False)
    topic = settings.dlq_topic
    consumer = Consumer(clients.reader_config(settings, f"{settings.group_id}.dlq-redrive"))
    try:
        starts, ends = _dlq_range(consumer, topic, args)
        messages = redrive.read_range(consumer, topic, starts, ends, timeout=120)
        plan = redrive.plan_redrive(messages, settings.input_topics)
        summary = plan.summary() | {"dry_run": bool(args.dry_run)}
        if not args.dry_run and plan.outgoing:
            producer = Producer(clients.producer_config(settings))
            outcome = deliver(
                producer,
                plan.outgoing,
                report_timeout=clients.report_timeout_seconds(settings),
            )
            failed = [str(err) for err in outcome if err is not None]
            if failed:
                print(json.dumps(summary | {"failed": failed[:5]}), file=out or sys.stdout)
                return 1
        if not args.dry_run:
            done = [TopicPartition(topic, p, e) for p, e in ends.items()]
            if done:
                consumer.commit(offsets=done, asynchronous=False)
    finally:
        consumer.close()
    print(json.dumps(summary), file=out or sys.stdout)
    return 0


def _dlq_range(
    consumer: Consumer, topic: str, args: argparse.Namespace
) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition of the dead-letter topic: where to start, and its end now."""
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise ConfigError([f"dead-letter topic {topic!r} does not exist"])
    partitions = sorted(metadata.partitions)
    bounds = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions
    }
    ends = {p: high for p, (_, high) in bounds.items()}
    if args.offset:
        given = dict(_partition_offset(pair) for pair in args.offset.split(","))
        return {p: given.get(p, ends[p]) for p in partitions}, ends
    if args.since is not None:
        asked = [TopicPartition(topic, p, args.since) for p in partitions]
        found = consumer.offsets_for_times(asked, timeout=10)
        return {
            tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found
        }, ends
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return {tp.partition: max(tp.offset, bounds[tp.partition][0]) for tp in committed}, ends


def _partition_offset(pair: str) -> tuple[int, int]:
    partition, _, offset = pair.partition(":")
    try:
        return int(partition), int(offset)
    except ValueError as exc:
        raise ConfigError([f"--offset {pair!r}: expected P:O"]) from exc


def _add_outbox(subparsers: Subparsers) -> None:
    outbox = subparsers.add_parser("outbox", help="the service's outbox of output events")
    commands = outbox.add_subparsers(dest="outbox_command", required=True)
    retry = commands.add_parser(
        "retry", help="put set-aside events (failed_at) back in the queue once fixed"
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=positive_int, action="append", help="an outbox id (repeatable)")
    which.add_argument("--all", action="store_true", help="every set-aside event")
    retry.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    retry.set_defaults(handler=run_outbox_retry)


def run_outbox_retry(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Clear ``failed_at``/``error`` of the chosen set-aside rows; prints their ids. Exit 1 when
    ``--id`` named no set-aside row (a typo, or already retried)."""
    with command_engine(command_settings(args)) as engine, engine.begin() as conn:
        ids = retry_set_aside(conn, None if args.all else list(args.id))
    print(json.dumps({"retried": ids}), file=out or sys.stdout)
    return 0 if ids or args.all else 1


def _add_replay(subparsers: Subparsers) -> None:
    replay = subparsers.add_parser(
        "replay", help="move a consumer group back (plan by default, --execute to commit)"
    )
    replay.add_argument("--group", required=True, help="the consumer group to move")
    to = replay.add_mutually_exclusive_group(required=True)
    to.add_argument(
        "--to-datetime",
        type=_timestamp_ms,
        metavar="TIME",
        help="ISO 8601 time (UTC unless it has an offset): first record at or after it",
    )
    to.add_argument(
        "--to-offset",
        metavar="TOPIC:P:O,...",
        help="explicit offsets (P:O,... with a single --topic); only these partitions move",
    )
    to.add_argument("--to-earliest", action="store_true", help="everything still retained")
    replay.add_argument(
        "--topic",
        action="append",
        default=[],
        help="topic to move (repeatable; default: the input topics)",
    )
    replay.add_argument("--execute", action="store_true", help="commit the plan's offsets")
    replay.add_argument("--json", action="store_true", help="print the plan as JSON")
    _bootstrap_flag(replay)
    replay.set_defaults(handler=run_replay)


def _add_lag(subparsers: Subparsers) -> None:
    lag = subparsers.add_parser("lag", help="committed offset, log-end offset and lag")
    lag.add_argument("--group", default=None, help="default: CERT_CONSUMER_GROUP_ID")
    lag.add_argument(
        "--topic",
        action="append",
        default=[],
        help="only these topics, including partitions never committed (repeatable)",
    )
    lag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _bootstrap_flag(lag)
    lag.set_defaults(handler=run_lag)


def _add_backfill(subparsers: Subparsers) -> None:
    fill = subparsers.add_parser("backfill", help="queue every enrolled learner for evaluation")
    which = fill.add_mutually_exclusive_group(required=True)
    which.add_argument("--section-id", type=positive_int, help="one section")
    which.add_argument("--all", action="store_true", help="every certificate-enabled section")
    fill.add_argument("--dry-run", action="store_true", help="count the keys, write nothing")
    fill.add_argument("--wait", action="store_true", help="wait until the keys are evaluated")
    fill.add_argument("--wait-timeout", type=positive_seconds, default=3600.0, metavar="SECONDS")
    fill.add_argument("--poll-seconds", type=positive_seconds, default=2.0, metavar="SECONDS")
    fill.add_argument(
        "--chunk-sections", type=positive_int, default=backfill.DEFAULT_CHUNK_SECTIONS
    )
    fill.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    fill.set_defaults(handler=run_backfill)


def run_replay(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the plan; with --execute commit it, unless the group has members (exit 2)."""
    out = out or sys.stdout  # resolved per call: tests and callers redirect it
    settings = command_settings(args, require_database=False)
    target = _target(args)
    admin = operator_admin(settings)
    plan = offsets.build_replay_plan(
        admin, args.group, target, args.topic or list(settings.input_topics)
    )
    if args.execute and plan.moves:
        try:
            offsets.execute_replay(admin, plan)
        except offsets.GroupActiveError as exc:
            print(f"cert-consumer: refusing to replay: {exc}", file=sys.stderr)
            return 2
    executed = bool(args.execute and plan.moves)
    if args.json:
        print(json.dumps(_plan_json(plan, executed)), file=out)
        return 0
    rows = [
        [plan.group, m.topic, m.partition, _dash(m.committed), m.target, m.log_end, m.rereads]
        for m in plan.moves
    ]
    headers = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "LOG-END-OFFSET"]
    print(_table([*headers, "RE-READ"], rows), file=out)
    totals = f"{len(plan.moves)} partition(s), {plan.rereads} record(s) to re-read"
    if plan.skips:
        totals += f", {plan.skips} record(s) skipped"
    verdict = "committed" if executed else "dry run, nothing changed (add --execute)"
    print(f"{totals}; {verdict}", file=out)
    return 0


def run_lag(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """As ``kafka-consumer-groups --describe``: per partition the committed offset, log-end
    offset, lag and owning member; then the totals. An unknown group exits 3."""
    out = out or sys.stdout  # resolved per call: tests and callers redirect it
    settings = command_settings(args, require_database=False)
    group = args.group or settings.group_id
    report = offsets.measure_lag(operator_admin(settings), group, args.topic)
    if args.json:
        print(json.dumps(_lag_json(report)), file=out)
        return 0
    rows = [
        [
            group,
            p.topic,
            p.partition,
            _dash(p.committed),
            p.log_end,
            _dash(p.lag),
            *(astuple(p.member) if p.member else ("-", "-", "-")),
        ]
        for p in report.partitions
    ]
    headers = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    print(_table([*headers, "CONSUMER-ID", "HOST", "CLIENT-ID"], rows), file=out)
    totals = f"total lag {report.total_lag} over {len(report.partitions)} partition(s)"
    if report.uncommitted:
        totals += f" ({report.uncommitted} never committed, lag unknown)"
    print(totals, file=out)
    return 0


def run_backfill(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Queue the learners of one or all sections; optionally wait for their evaluation."""
    out = out or sys.stdout  # resolved per call: tests and callers redirect it
    with command_engine(command_settings(args)) as engine:
        return _backfill(engine, args, out)


def _backfill(engine: sa.Engine, args: argparse.Namespace, out: TextIO) -> int:
    with engine.connect() as conn:
        section_ids = backfill.select_sections(conn, args.section_id)
    if args.section_id is not None and not section_ids:
        raise CheckFailedError(f"no section {args.section_id}")
    with _bar("sections", len(section_ids)) as advance:
        summary = backfill.run_backfill(
            engine,
            section_ids,
            dry_run=args.dry_run,
            chunk_sections=args.chunk_sections,
            progress=lambda sections, _keys: advance(sections),
        )
    verb = "would enqueue" if summary.dry_run else "enqueued"
    print(f"backfill: {summary.sections} section(s), {verb} {summary.keys} key(s)", file=out)
    if not args.wait or summary.dry_run:
        return 0
    return _wait(engine, section_ids, summary, args, out)


def _wait(
    engine: sa.Engine,
    section_ids: Sequence[int],
    summary: backfill.BackfillSummary,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    with _bar("evaluated", summary.keys, absolute=True) as show:
        outcome = backfill.wait_evaluated(
            engine,
            section_ids,
            summary,
            timeout=args.wait_timeout,
            interval=args.poll_seconds,
            report=lambda o: show(max(0, summary.keys - o.remaining)),
        )
    state = "all evaluated" if outcome.done else f"timed out, {outcome.remaining} still pending"
    print(f"evaluation: {state}; transitions made: {outcome.transitions}", file=out)
    return 0 if outcome.done else 1


def _target(args: argparse.Namespace) -> offsets.ReplayTarget:
    if args.to_earliest:
        return offsets.ToEarliest()
    if args.to_datetime is not None:
        return offsets.ToTimestamp(args.to_datetime)
    default_topic = args.topic[0] if len(args.topic) == 1 else None
    try:
        return offsets.ToOffsets(parse_offsets(args.to_offset, default_topic))
    except ValueError as exc:
        raise ConfigError([f"--to-offset {exc}"]) from exc


def parse_offsets(text: str, default_topic: str | None = None) -> dict[Partition, int]:
    """``topic:P:O,...``, or ``P:O,...`` when one topic is implied (topic names have no ':')."""
    found: dict[Partition, int] = {}
    for item in (part.strip() for part in text.split(",")):
        fields = item.rsplit(":", 2)
        if len(fields) == 2 and default_topic:
            fields.insert(0, default_topic)
        try:
            topic, partition, offset = fields[0], int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise ValueError(f"{item!r}: expected topic:partition:offset") from None
        if not topic or partition < 0 or offset < 0:
            raise ValueError(f"{item!r}: expected topic:partition:offset, all >= 0")
        found[(topic, partition)] = offset
    return found


def _timestamp_ms(raw: str) -> int:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("expected ISO 8601, e.g. 2026-05-01T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _bootstrap_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers", default=None, help="overrides CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS"
    )


@contextmanager
def _bar(label: str, total: int, *, absolute: bool = False) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal, else nothing (Job logs get structlog lines).
    Yields ``update(n)``: advance by n, or set to n when ``absolute``."""
    try:
        from rich.progress import Progress  # noqa: PLC0415  # optional: the embedded extra
    except ImportError:
        yield lambda n: None
        return
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    with Progress(transient=False) as progress:
        task = progress.add_task(label, total=total)

        def update(n: int) -> None:
            if absolute:
                progress.update(task, completed=n)
            else:
                progress.advance(task, n)

        yield update


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, as kafka-consumer-groups prints them."""
    cells = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _dash(value: int | None) -> object:
    return "-" if value is None else value


def _plan_json(plan: offsets.ReplayPlan, executed: bool) -> dict[str, object]:
    moves = [asdict(m) | {"rereads": m.rereads, "skips": m.skips} for m in plan.moves]
    totals = {"rereads": plan.rereads, "skips": plan.skips}
    return {"group": plan.group, "executed": executed, "partitions": moves} | totals


def _lag_json(report: offsets.LagReport) -> dict[str, object]:
    return {
        "group": report.group,
        "partitions": [asdict(p) | {"lag": p.lag} for p in report.partitions],
        "total_lag": report.total_lag,
        "uncommitted_partitions": report.uncommitted,
    }
