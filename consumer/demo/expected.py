"""The demo's expected outcome, computed from the course plan alone with the pure rules.

No database, no Kafka, no service: the demo checks the service against a model that shares none
of its I/O. The phases are replayed on in-memory facts, and after each phase every triggered key
is decided, exactly as the service sees them (the demo waits for it to be idle between phases).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from consumer.demo.course import CoursePlan
from consumer.domain import model, rules
from consumer.domain.model import Key
from consumer.domain.stored import certificate_settings, exact


@dataclass(frozen=True)
class Expected:
    """What the service must end with: each learner's (state, with_distinction) and the
    transitions that got there, as (kind, state) in decision order."""

    grants: dict[Key, tuple[str, bool]]
    transitions: tuple[tuple[str, str], ...]

    def totals(self) -> dict[str, int]:
        states = [state for state, _ in self.grants.values()]
        kinds = [kind for kind, _ in self.transitions]
        announced = [state for _, state in self.transitions]
        return {
            "earned": states.count("earned"),
            "pending": states.count("pending"),
            "with_distinction": sum(d for _, d in self.grants.values()),
            "creates": kinds.count("create"),
            "upgrades": kinds.count("upgrade"),
            "granted_events": announced.count("earned"),
            "approval_events": announced.count("pending"),
        }


def expected_outcome(plan: CoursePlan) -> Expected:
    """Replay the phases on in-memory facts; after each phase decide every triggered key."""
    sections = {s.id: s for s in plan.sections}
    certs = {s.id: s.certificate for s in plan.sections}
    scores: dict[Key, dict[int, model.PageScore]] = defaultdict(dict)
    posts: dict[Key, tuple[int, int]] = defaultdict(lambda: (0, 0))
    grants: dict[Key, model.ExistingGrant] = {}
    transitions: list[tuple[str, str]] = []
    for phase in plan.phases:
        triggered = {step.key for step in phase.steps}
        for step in phase.steps:
            for rid, score, out_of in step.scores:
                scores[step.key][rid] = model.PageScore(exact(score), exact(out_of))
            discussion, notes = posts[step.key]
            posts[step.key] = (discussion + step.discussion_posts, notes + step.class_notes)
        for section_id, threshold in phase.lowered:
            certs[section_id] = replace(certs[section_id], min_percentage_for_completion=threshold)
            triggered.update(plan.learner_keys(section_id))
        for key in sorted(triggered):
            pages = sections[key[0]].pages
            decision = rules.decide(
                model.Facts(
                    *key,
                    certificate_enabled=True,
                    learner_enrolled=True,
                    certificates=(certificate_settings(certs[key[0]]),),
                    grant=grants.get(key),
                    public_discussion_posts=posts[key][0],
                    public_class_notes=posts[key][1],
                    section_pages=tuple(model.SectionPage(r, g, h) for r, g, h, _ in pages),
                    scores=scores[key],
                )
            )
            if decision.state is not None:
                decision_cert = certs[key[0]].id
                distinction = bool(decision.with_distinction)
                grants[key] = model.ExistingGrant(0, decision_cert, decision.state, distinction)
                transitions.append((decision.kind.value, decision.state.value))
    return Expected(
        {k: (g.state.value, g.with_distinction) for k, g in grants.items()}, tuple(transitions)
    )
