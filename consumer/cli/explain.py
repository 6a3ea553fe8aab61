"""``cert-consumer explain`` and ``audit``: why a learner has, or has not, a certificate, and
where today's grants and today's rules part.

``explain`` loads one key's facts as the evaluator does (``store.facts``) and hands them to the
pure ``domain.explain``: the decision the rules make and every figure behind it. ``audit``
runs ``ops.audit`` over one or all sections. Both print a table on a terminal and JSON
otherwise (or with ``--json``), and only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO

from consumer.cli.common import command_engine, command_settings, positive_int
from consumer.domain.audit import Verdict
from consumer.domain.explain import Explanation, explain
from consumer.domain.model import DecisionKind, GrantState
from consumer.errors import CheckFailedError, ConfigError
from consumer.events.catalogue import EventType
from consumer.ops.audit import AuditReport, run_audit, run_shadow_audit
from consumer.store.facts import deleted_post_counts, load_facts
from consumer.store.torus import certificate_sections


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser(
        "explain", help="why a learner has or has not a certificate, with every figure"
    )
    command.add_argument("--section-id", type=positive_int, required=True)
    command.add_argument("--user-id", type=positive_int, required=True)
    command.add_argument("--json", action="store_true", help="JSON even on a terminal")
    command.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    command.set_defaults(handler=run_explain)


def add_audit_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser(
        "audit", help="today's rules beside today's grants: owed and unsupported, read-only"
    )
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--section-id", type=positive_int, help="one section")
    which.add_argument("--all", action="store_true", help="every certificate-enabled section")
    which.add_argument(
        "--shadow",
        action="store_true",
        help="what a shadow run would have done beside what Torus's worker did (needs --since)",
    )
    command.add_argument(
        "--since", type=_moment, help="with --shadow: the period's start (ISO 8601, UTC if bare)"
    )
    command.add_argument("--json", action="store_true", help="JSON even on a terminal")
    command.add_argument("--database-url", help="overrides CERT_CONSUMER_DATABASE_URL")
    command.set_defaults(handler=run_audit_command)


def _moment(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("expected ISO 8601, e.g. 2026-05-01T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_audit_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # resolved per call: tests and callers redirect it
    if args.shadow:
        return _shadow_audit(args, out)
    with command_engine(command_settings(args)) as engine:
        with engine.connect() as conn:
            section_ids = certificate_sections(conn, only=args.section_id)
        if args.section_id is not None and not section_ids:
            raise CheckFailedError(f"no section {args.section_id}")
        terminal = out.isatty() and not args.json
        report = run_audit(engine, section_ids, progress=_progress if terminal else None)
    if not terminal:
        print(json.dumps(audit_json(report)), file=out)
        return 0
    print(file=sys.stderr)  # end the progress line
    print(audit_table(report), file=out)
    return 0


def _shadow_audit(args: argparse.Namespace, out: TextIO) -> int:
    if args.since is None:
        raise ConfigError(["audit --shadow needs --since: the start of the shadow period"])
    with command_engine(command_settings(args)) as engine:
        report = run_shadow_audit(engine, args.since)
    disagreements = [
        {"section_id": d.key[0], "user_id": d.key[1], "service": d.service, "torus": d.torus}
        | {"reason": d.reason, "notes": list(d.notes)}
        for d in report.disagreements
    ]
    body = {
        "since": report.since.isoformat(),
        "compared": report.compared,
        "agreements": report.agreements,
        "agreement_rate": round(report.agreement_rate, 4),
        "disagreements": disagreements,
    }
    if args.json or not out.isatty():
        print(json.dumps(body), file=out)
        return 0
    print(
        f"{report.compared} learner(s) since {report.since.isoformat()}: {report.agreements} "
        f"agree ({report.agreement_rate:.1%})",
        file=out,
    )
    for d in report.disagreements:
        print(
            f"  section {d.key[0]}, learner {d.key[1]}: service would {d.service}; Torus did "
            f"{d.torus} ({d.reason})",
            file=out,
        )
        for note in d.notes:
            print(f"    note: {note}", file=out)
    return 0


def _progress(done: int, total: int) -> None:
    print(f"\raudited {done}/{total} learner(s)", end="", file=sys.stderr, flush=True)


def audit_json(report: AuditReport) -> dict[str, Any]:
    return {
        "sections": report.sections,
        "learners": report.learners,
        "verdicts": report.verdicts,
        "reasons": report.reasons,
        "findings": [
            {
                "section_id": f.key[0],
                "user_id": f.key[1],
                "verdict": f.verdict.value,
                "why": f.why,
            }
            for f in report.findings
        ],
    }


def audit_table(report: AuditReport) -> str:
    lines = [
        f"{report.learners} learner(s) in {report.sections} section(s): "
        + ", ".join(f"{report.verdicts.get(v.value, 0)} {v.value}" for v in Verdict),
        "today's decisions: "
        + ", ".join(f"{n} {reason}" for reason, n in sorted(report.reasons.items())),
    ]
    lines += [
        f"  {f.verdict.value.upper():<12} section {f.key[0]}, learner {f.key[1]}: {f.why}"
        for f in report.findings
    ]
    return "\n".join(lines)


def run_explain(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # resolved per call: tests and callers redirect it
    settings = command_settings(args)
    key = (args.section_id, args.user_id)
    with command_engine(settings) as engine, engine.connect() as conn:
        facts = load_facts(conn, [key])[key]
        shown = explain(facts, deleted_post_counts(conn, key))
    event = _event(shown)
    if args.json or not out.isatty():
        print(json.dumps(as_json(shown) | {"would_publish": event}), file=out)
    else:
        print(as_table(shown, event), file=out)
    return 0


def _event(shown: Explanation) -> str | None:
    """The event the decision's transition would publish, if it would make one."""
    decision = shown.decision
    if decision.kind is DecisionKind.NO_CHANGE:
        return None
    granted = decision.state is GrantState.EARNED
    return (EventType.CERTIFICATE_GRANTED if granted else EventType.APPROVAL_REQUESTED).value


def as_json(shown: Explanation) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    body: dict[str, Any] = plain(asdict(shown))
    body["discussion_posts"]["met"] = shown.discussion_posts.met
    body["class_notes"]["met"] = shown.class_notes.met
    return body


def as_table(shown: Explanation, event: str | None) -> str:
    lines = [*_summary(shown, event), *_participation(shown), *_pages(shown)]
    lines += [f"  note: {note}" for note in shown.notes]
    return "\n".join(lines)


def _summary(shown: Explanation, event: str | None) -> list[str]:
    d = shown.decision
    decided = d.kind.value + (f" ({d.reason.value})" if d.reason else "")
    decided += (f", state {d.state.value}" if d.state else "") + (
        ", with distinction" if d.with_distinction else ""
    )
    grant = "none"
    if shown.grant is not None:
        grant = shown.grant.state.value + (
            " with distinction" if shown.grant.with_distinction else ""
        )
    lines = [
        f"section {shown.section_id}, learner {shown.user_id}",
        f"  decision: {decided}",
        f"  would publish: {event or 'nothing'}",
        f"  certificates enabled: {_yes(shown.certificate_enabled)}; "
        f"enrolled: {_yes(shown.learner_enrolled)}; existing grant: {grant}",
    ]
    c = shown.certificate
    if c is not None:
        lines.append(
            f"  thresholds: completion {c.min_percentage_for_completion}, distinction "
            f"{c.min_percentage_for_distinction}; pages: {c.assessments_apply_to.value}"
        )
    return lines


def _participation(shown: Explanation) -> list[str]:
    counts = (("discussion posts", shown.discussion_posts), ("class notes", shown.class_notes))
    # Participation decides only a first grant; with a grant, only distinction is evaluated.
    scope = "" if shown.grant is None else ", for a first grant only"
    return [
        f"  {name}: {count.have} of {_dash(count.need)} required ({_met(count.met)}{scope})"
        for name, count in counts
    ]


def _pages(shown: Explanation) -> list[str]:
    if shown.pages_outside_section:
        return [f"  custom pages outside the section: {list(shown.pages_outside_section)}"]
    if not shown.pages:
        return []
    header = ("PAGE", "SCORE", "OUT-OF", "PERCENT", "COMPLETION", "BY", "DISTINCTION", "BY")
    rows = [header] + [
        (
            str(p.resource_id),
            _dash(p.score),
            _dash(p.out_of),
            _dash(p.percentage),
            _met(p.passes_completion),
            _dash(p.completion_margin),
            _met(p.passes_distinction),
            _dash(p.distinction_margin),
        )
        for p in shown.pages
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _met(flag: bool | None) -> str:
    return "-" if flag is None else ("met" if flag else "NOT met")


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
