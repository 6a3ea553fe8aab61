"""Hypothesis properties of consumer.rules: invariants no table of examples can pin down."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

from hypothesis import assume, given
from hypothesis import strategies as st

from consumer.domain.model import (
    AppliesTo,
    CertificateSettings,
    DecisionKind,
    ExistingGrant,
    Facts,
    GrantState,
    PageScore,
    SectionPage,
)
from consumer.domain.rules import decide, page_percentage_passes

PAGE_IDS = st.integers(min_value=1, max_value=8)
# Custom lists may name ids 9-10, which are never section pages.
CUSTOM_IDS = st.integers(min_value=1, max_value=10)
FINITE = st.decimals(min_value=-20, max_value=200, places=2, allow_nan=False, allow_infinity=False)
NON_FINITE = st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
SCORE_VALUE = st.one_of(st.none(), FINITE, NON_FINITE)
THRESHOLD = st.one_of(st.none(), FINITE, NON_FINITE)


@st.composite
def certificates(draw: st.DrawFn, certificate_id: int = 7) -> CertificateSettings:
    return CertificateSettings(
        certificate_id=certificate_id,
        required_discussion_posts=draw(st.one_of(st.none(), st.integers(0, 3))),
        required_class_notes=draw(st.one_of(st.none(), st.integers(0, 3))),
        min_percentage_for_completion=draw(THRESHOLD),
        min_percentage_for_distinction=draw(THRESHOLD),
        assessments_apply_to=draw(st.sampled_from(AppliesTo)),
        custom_assessments=tuple(draw(st.lists(CUSTOM_IDS, max_size=6))),
        requires_instructor_approval=draw(st.booleans()),
    )


@st.composite
def grants(draw: st.DrawFn, certificate_id: int = 7) -> ExistingGrant:
    return ExistingGrant(
        granted_certificate_id=draw(st.integers(1, 1000)),
        certificate_id=certificate_id,
        state=draw(st.sampled_from(GrantState)),
        with_distinction=draw(st.booleans()),
    )


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    page_ids = draw(st.lists(PAGE_IDS, unique=True, max_size=6))
    pages = tuple(
        SectionPage(
            resource_id=page_id,
            graded=draw(st.sampled_from([True, True, False, None])),
            hidden=draw(st.booleans()),
        )
        for page_id in page_ids
    )
    scores = draw(
        st.dictionaries(
            CUSTOM_IDS,
            st.builds(
                PageScore,
                SCORE_VALUE,
                st.one_of(st.none(), st.sampled_from([Decimal(100), Decimal(50), Decimal(0)])),
            ),
            max_size=8,
        )
    )
    rows = draw(st.sampled_from([1, 1, 1, 1, 0, 2]))
    return Facts(
        section_id=10,
        user_id=20,
        certificate_enabled=draw(st.sampled_from([True, True, True, False])),
        learner_enrolled=draw(st.sampled_from([True, True, True, False])),
        certificates=tuple(draw(certificates(certificate_id=7 + row)) for row in range(rows)),
        grant=draw(st.one_of(st.none(), grants())),
        public_discussion_posts=draw(st.integers(0, 4)),
        public_class_notes=draw(st.integers(0, 4)),
        section_pages=pages,
        scores=scores,
    )


@st.composite
def likely_transitions(draw: st.DrawFn) -> Facts:
    """Facts that mostly lead to a CREATE or UPGRADE, so properties about them are not vacuous."""
    base = draw(facts())
    pages = base.section_pages or (SectionPage(1, graded=True, hidden=False),)
    page_ids = [page.resource_id for page in pages]
    certificate = replace(
        draw(certificates()),
        required_discussion_posts=draw(st.integers(0, 4)),
        required_class_notes=draw(st.integers(0, 4)),
        min_percentage_for_completion=draw(st.decimals(0, 60, places=2)),
        min_percentage_for_distinction=draw(st.one_of(st.none(), st.decimals(0, 100, places=2))),
        custom_assessments=tuple(draw(st.lists(st.sampled_from(page_ids), min_size=1))),
    )
    high = st.builds(
        PageScore, st.decimals(30, 120, places=2), st.sampled_from([None, Decimal(100)])
    )
    return replace(
        base,
        certificate_enabled=True,
        learner_enrolled=True,
        certificates=(certificate,),
        grant=draw(
            st.one_of(
                st.none(),
                grants().filter(
                    lambda g: g.state is not GrantState.DENIED and not g.with_distinction
                ),
            )
        ),
        public_discussion_posts=4,
        public_class_notes=4,
        section_pages=pages,
        scores={**base.scores, **{pid: draw(high) for pid in page_ids}},
    )


# Raw facts mostly stop at an early gate; the mix also reaches pages, thresholds and transitions.
ANY_FACTS = st.one_of(facts(), likely_transitions())


@given(ANY_FACTS, st.data())
def test_terminal_grants_never_change(given_facts: Facts, data: st.DataObject) -> None:
    terminal = data.draw(
        st.one_of(
            st.builds(
                ExistingGrant,
                st.integers(1, 1000),
                st.just(7),
                st.just(GrantState.DENIED),
                st.booleans(),
            ),
            st.builds(
                ExistingGrant,
                st.integers(1, 1000),
                st.just(7),
                st.sampled_from([GrantState.PENDING, GrantState.EARNED]),
                st.just(True),
            ),
        )
    )
    assert decide(replace(given_facts, grant=terminal)).kind is DecisionKind.NO_CHANGE


def _raised(page: PageScore, bump: Decimal) -> PageScore:
    """The same page with a score at least as high; non-finite scores are left alone."""
    points = Decimal(0) if page.score is None else page.score
    if not points.is_finite():
        return page
    return page._replace(score=points + bump)


@given(likely_transitions(), st.data())
def test_raising_scores_never_withdraws_a_transition(
    given_facts: Facts, data: st.DataObject
) -> None:
    before = decide(given_facts)
    assume(before.changes)
    bumps = st.decimals(min_value=0, max_value=150, places=2)
    raised = {pid: _raised(page, data.draw(bumps)) for pid, page in given_facts.scores.items()}
    # Pages without a row count as 0; giving them a non-negative score is also a raise.
    for page in given_facts.section_pages:
        if page.resource_id not in raised and data.draw(st.booleans()):
            raised[page.resource_id] = PageScore(data.draw(bumps), None)
    after = decide(replace(given_facts, scores=raised))
    assert after.kind is before.kind
    assert after.state is before.state
    assert after.with_distinction or not before.with_distinction


@given(ANY_FACTS, st.data())
def test_order_of_pages_and_custom_ids_does_not_matter(
    given_facts: Facts, data: st.DataObject
) -> None:
    shuffled_certificates = tuple(
        replace(
            certificate,
            custom_assessments=tuple(data.draw(st.permutations(certificate.custom_assessments))),
        )
        for certificate in given_facts.certificates
    )
    shuffled = replace(
        given_facts,
        section_pages=tuple(data.draw(st.permutations(given_facts.section_pages))),
        certificates=shuffled_certificates,
    )
    assert decide(shuffled) == decide(given_facts)


def _oracle_pct_passes(page: PageScore | None, threshold: Decimal) -> bool:
    """An independent reading of A2.5 in rational arithmetic (division allowed: it is exact)."""
    points = Decimal(0) if page is None or page.score is None else page.score
    out_of = Decimal(100) if page is None or page.out_of is None else page.out_of
    if not (points.is_finite() and out_of.is_finite() and threshold.is_finite()):
        return False
    if out_of <= 0:
        return False
    return Fraction(points) / Fraction(out_of) * 100 >= Fraction(threshold)


def _oracle_completion_passed(given_facts: Facts) -> bool:
    """Whether every required page reaches the completion threshold, per A2.4-5."""
    (certificate,) = given_facts.certificates
    threshold = certificate.min_percentage_for_completion
    assert threshold is not None
    if certificate.assessments_apply_to is AppliesTo.ALL:
        required = [p.resource_id for p in given_facts.section_pages if p.graded and not p.hidden]
    else:
        required = list(certificate.custom_assessments)
    return bool(required) and all(
        _oracle_pct_passes(given_facts.scores.get(page_id), threshold) for page_id in required
    )


@given(ANY_FACTS, FINITE, FINITE)
def test_distinction_never_without_completion(
    given_facts: Facts, completion: Decimal, distinction: Decimal
) -> None:
    low, high = sorted((completion, distinction))
    assume(len(given_facts.certificates) == 1)
    certificate = replace(
        given_facts.certificates[0],
        min_percentage_for_completion=low,
        min_percentage_for_distinction=high,
    )
    checked = replace(given_facts, certificates=(certificate,), grant=None)
    decision = decide(checked)
    if not _oracle_completion_passed(checked):
        assert decision.kind is DecisionKind.NO_CHANGE
    if decision.kind is DecisionKind.CREATE and decision.with_distinction:
        assert _oracle_completion_passed(checked)


@given(ANY_FACTS)
def test_decision_is_deterministic(given_facts: Facts) -> None:
    first = decide(given_facts)
    assert decide(given_facts) == first
    assert decide(copy.deepcopy(given_facts)) == first


@given(
    st.one_of(st.none(), st.builds(PageScore, SCORE_VALUE, st.one_of(st.none(), FINITE))),
    FINITE,
)
def test_page_percentage_matches_rational_oracle(
    page: PageScore | None, threshold: Decimal
) -> None:
    assert page_percentage_passes(page, threshold) is _oracle_pct_passes(page, threshold)


@given(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
)
def test_page_percentage_is_exact_for_any_finite_decimal(
    points: Decimal, out_of: Decimal, threshold: Decimal
) -> None:
    # Unbounded decimals (wide exponents, many digits): never raises, and agrees with the oracle.
    page = PageScore(points, out_of)
    assert page_percentage_passes(page, threshold) is _oracle_pct_passes(page, threshold)


@given(st.builds(PageScore, SCORE_VALUE, st.one_of(st.none(), FINITE)), FINITE, FINITE)
def test_page_percentage_is_monotone_in_threshold(
    page: PageScore, first: Decimal, second: Decimal
) -> None:
    low, high = sorted((first, second))
    assert page_percentage_passes(page, low) or not page_percentage_passes(page, high)
