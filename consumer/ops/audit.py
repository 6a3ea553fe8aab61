"""``cert-consumer audit``: the rules over today's facts beside today's grants, read-only;
and with ``--shadow``, what a shadow run would have done beside what Torus's worker did.

Set-based: the keys are read once, then their facts in chunks of ``CHUNK_KEYS`` (the
evaluator's loader, 7 queries a chunk), all in one read-only repeatable-read transaction, so
the report describes one moment of the database.

The shadow comparison, per key that either side touched since ``since``:
- Torus created or changed its row: the service "would have" is ``rules.decide`` on today's
  facts with that change undone (no row, or no distinction). They agree when it makes the
  same transition: a grant, with the same distinction.
- Torus left it alone: they agree unless the shadow run recorded a transition for it.
Each disagreement carries ``domain.explain``'s reason and notes for the key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa

from consumer.domain import rules
from consumer.domain.audit import Finding, Verdict, audit
from consumer.domain.explain import explain
from consumer.domain.model import Decision, DecisionKind, Facts, Key
from consumer.store import shadow
from consumer.store.facts import deleted_post_counts, load_facts
from consumer.store.torus import GrantChange, audit_keys, grants_changed_since

CHUNK_KEYS = 2000


@dataclass(frozen=True)
class AuditReport:
    sections: int
    learners: int
    verdicts: dict[str, int]  # agrees / owed / unsupported
    reasons: dict[str, int]  # today's decision (reason code, or create/upgrade) per learner
    findings: tuple[Finding, ...]  # every owed and unsupported one


def run_audit(
    engine: sa.Engine,
    section_ids: Sequence[int],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    verdicts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    findings: list[Finding] = []
    with _snapshot(engine).connect() as conn:
        keys = audit_keys(conn, list(section_ids))
        for start in range(0, len(keys), CHUNK_KEYS):
            chunk = keys[start : start + CHUNK_KEYS]
            for facts in load_facts(conn, chunk).values():
                found = audit(facts)
                verdicts[found.verdict.value] += 1
                reasons[_reason(found)] += 1
                if found.verdict is not Verdict.AGREES:
                    findings.append(found)
            if progress is not None:
                progress(min(start + CHUNK_KEYS, len(keys)), len(keys))
        conn.rollback()
    return AuditReport(len(section_ids), len(keys), dict(verdicts), dict(reasons), tuple(findings))


@dataclass(frozen=True)
class Disagreement:
    key: Key
    service: str  # what the service would have done
    torus: str  # what Torus's worker did
    reason: str  # the rules' reason code for the key today
    notes: tuple[str, ...]  # explain's notes: where Torus counts otherwise


@dataclass(frozen=True)
class ShadowReport:
    since: datetime
    compared: int
    agreements: int
    disagreements: tuple[Disagreement, ...]

    @property
    def agreement_rate(self) -> float:
        return self.agreements / self.compared if self.compared else 1.0


def run_shadow_audit(engine: sa.Engine, since: datetime) -> ShadowReport:
    with _snapshot(engine).connect() as conn:
        changed = grants_changed_since(conn, since)
        keys = sorted(set(changed) | set(shadow.decided_since(conn, since)))
        found: list[Disagreement] = []
        for start in range(0, len(keys), CHUNK_KEYS):
            chunk = keys[start : start + CHUNK_KEYS]
            recorded = shadow.would_have(conn, chunk, since)
            for key, facts in load_facts(conn, chunk).items():
                parted = _compare(facts, changed.get(key), recorded.get(key))
                if parted is not None:
                    found.append(_disagreement(*parted, deleted_post_counts(conn, key)))
        conn.rollback()
    return ShadowReport(since, len(keys), len(keys) - len(found), tuple(found))


def _compare(
    facts: Facts, change: GrantChange | None, recorded: shadow.WouldHave | None
) -> tuple[Facts, str, str] | None:
    """(the facts the service would have decided on, what it would have done, what Torus
    did) when they part; None when they agree."""
    if change is None:
        if recorded is None:
            return None
        service = f"{recorded.kind} {_grant(recorded.state, recorded.with_distinction)}"
        return facts, service, "nothing"
    before = _undo(facts, change)
    would = rules.decide(before)
    if would.kind is not DecisionKind.NO_CHANGE and _distinction(would) is change.with_distinction:
        return None
    verb = "create" if change.created else "change"
    return before, _would(would), f"{verb} {_grant(change.state, change.with_distinction)}"


def _would(decision: Decision) -> str:
    if decision.kind is DecisionKind.NO_CHANGE:
        return "nothing"
    state = decision.state.value if decision.state else "?"
    return f"{decision.kind.value} {_grant(state, _distinction(decision))}"


def _undo(facts: Facts, change: GrantChange) -> Facts:
    """Today's facts as they were before Torus's change: no row, or no distinction."""
    if change.created or facts.grant is None:
        return replace(facts, grant=None)
    return replace(facts, grant=replace(facts.grant, with_distinction=False))


def _distinction(decision: Decision) -> bool:
    return decision.kind is DecisionKind.UPGRADE or bool(decision.with_distinction)


def _grant(state: str, with_distinction: bool) -> str:
    return state + (" with distinction" if with_distinction else "")


def _disagreement(facts: Facts, service: str, torus: str, deleted: tuple[int, int]) -> Disagreement:
    shown = explain(facts, deleted)
    decision = shown.decision
    reason = decision.reason.value if decision.reason else decision.kind.value
    return Disagreement((facts.section_id, facts.user_id), service, torus, reason, shown.notes)


def _snapshot(engine: sa.Engine) -> sa.Engine:
    """One read-only moment of the database for a whole report, however many chunks it reads."""
    return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


def _reason(found: Finding) -> str:
    decision = found.decision
    return decision.reason.value if decision.reason else decision.kind.value
