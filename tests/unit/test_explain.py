"""``explain`` shows the decision's own figures: for any facts, what it says passes or fails
is what made the decision, and the notes name where Torus would decide otherwise."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings

from consumer.domain import rules
from consumer.domain.explain import explain
from consumer.domain.model import (
    AppliesTo,
    CertificateSettings,
    DecisionKind,
    Facts,
    PageScore,
    Reason,
    SectionPage,
)
from tests.unit.test_rules_properties import ANY_FACTS


@settings(max_examples=400, deadline=None)
@given(ANY_FACTS)
def test_the_figures_agree_with_the_decision_for_any_facts(facts: Facts) -> None:
    shown = explain(facts)
    decision = shown.decision
    assert decision == rules.decide(facts)
    completion = [p.passes_completion for p in shown.pages]
    distinction = [p.passes_distinction for p in shown.pages]
    if decision.kind is DecisionKind.CREATE:
        assert shown.discussion_posts.met and shown.class_notes.met
        assert completion and all(completion)
        assert all(distinction) is bool(decision.with_distinction) or None in distinction
    if decision.kind is DecisionKind.UPGRADE:
        assert distinction and all(distinction)
    if decision.reason is Reason.PARTICIPATION_NOT_MET:
        assert not (shown.discussion_posts.met and shown.class_notes.met)
    if decision.reason is Reason.COMPLETION_NOT_MET:
        assert False in completion
    if decision.reason is Reason.DISTINCTION_NOT_MET:
        assert False in distinction
    if decision.reason is Reason.REQUIRED_PAGE_OUTSIDE_SECTION:
        assert shown.pages_outside_section and not shown.pages
    for page in shown.pages:  # a margin says the same as the verdict, unless it rounds to 0
        if page.completion_margin is not None and page.completion_margin != 0:
            assert (page.completion_margin > 0) is page.passes_completion


def _one_page(score: str, out_of: str, completion: str) -> Facts:
    cert = CertificateSettings(
        certificate_id=1,
        required_discussion_posts=0,
        required_class_notes=0,
        min_percentage_for_completion=Decimal(completion),
        min_percentage_for_distinction=Decimal(100),
        assessments_apply_to=AppliesTo.ALL,
        custom_assessments=(),
        requires_instructor_approval=False,
    )
    return Facts(
        section_id=1,
        user_id=2,
        certificate_enabled=True,
        learner_enrolled=True,
        certificates=(cert,),
        grant=None,
        public_discussion_posts=0,
        public_class_notes=0,
        section_pages=(SectionPage(10, True, False),),
        scores={10: PageScore(Decimal(score), Decimal(out_of))},
    )


def test_a_float_artefact_is_named_with_torus_figure() -> None:
    shown = explain(_one_page("57", "100", "57"))
    assert shown.decision.kind is DecisionKind.CREATE
    (page,) = shown.pages
    assert (page.percentage, page.passes_completion, page.completion_margin) == (
        Decimal("57.0000"),
        True,
        Decimal("0.0000"),
    )
    assert shown.notes == (
        "page 10: Torus's float arithmetic gives 56.99999999999999% and fails the 57 completion "
        "threshold; the exact comparison passes it",
    )


def test_deleted_posts_and_enrollment_are_noted() -> None:
    facts = replace(_one_page("90", "100", "50"), learner_enrolled=False)
    shown = explain(facts, deleted=(2, 1))
    assert shown.decision.reason is Reason.NOT_ENROLLED
    assert shown.notes[:2] == (
        "the learner's enrollment is not 'enrolled'; Torus checked that only when a job was "
        "enqueued",
        "2 deleted discussion post(s) and 1 deleted class note(s) are not counted; Torus counts "
        "them",
    )
