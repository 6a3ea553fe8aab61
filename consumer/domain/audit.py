"""Today's facts beside today's grants: what the rules owe, and what they would not grant.

For one (section, learner): ``owed`` when the rules make a transition now (a first grant, or
an upgrade to distinction) that ``granted_certificates`` does not hold yet; ``unsupported``
when a grant row exists that the rules, deciding from scratch on today's facts, would not make
(a float artefact of Torus's arithmetic, deleted posts counted, a learner no longer enrolled);
``agrees`` otherwise. Denied rows are an instructor's decision and always agree.

Pure, as ``rules`` is, and decided by ``rules.decide`` itself, never by a second reading.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from consumer.domain import rules
from consumer.domain.model import Decision, DecisionKind, Facts, GrantState, Key


class Verdict(enum.Enum):
    AGREES = "agrees"
    OWED = "owed"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Finding:
    key: Key
    verdict: Verdict
    decision: Decision  # what the rules decide today, the existing grant considered
    why: str  # the reason code or transition behind the verdict


def audit(facts: Facts) -> Finding:
    """A grant the rules would not make is reported first, even when they would now also
    upgrade it: a row without grounds is the finding, not its next step."""
    key = (facts.section_id, facts.user_id)
    decision = rules.decide(facts)
    grant = facts.grant
    if grant is not None and grant.state is not GrantState.DENIED:
        fresh = rules.decide(replace(facts, grant=None))
        if fresh.kind is DecisionKind.NO_CHANGE:
            return Finding(key, Verdict.UNSUPPORTED, decision, _why(fresh))
        if grant.with_distinction and not fresh.with_distinction:
            return Finding(key, Verdict.UNSUPPORTED, decision, "distinction_not_met")
    if decision.kind is not DecisionKind.NO_CHANGE:
        return Finding(key, Verdict.OWED, decision, decision.kind.value)
    return Finding(key, Verdict.AGREES, decision, _why(decision))


def _why(decision: Decision) -> str:
    return decision.reason.value if decision.reason else decision.kind.value
