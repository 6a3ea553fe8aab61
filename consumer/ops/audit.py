"""``cert-consumer audit``: the rules over today's facts beside today's grants, read-only.

Set-based: the keys of the sections are read once, then their facts in chunks of
``CHUNK_KEYS`` (the evaluator's loader, 7 queries a chunk), all in one read-only repeatable-read
transaction, so the report describes one moment of the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from consumer.domain.audit import Finding, Verdict, audit
from consumer.store.facts import load_facts
from consumer.store.torus import audit_keys

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
    snapshot = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with snapshot.connect() as conn:
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


def _reason(found: Finding) -> str:
    decision = found.decision
    return decision.reason.value if decision.reason else decision.kind.value
