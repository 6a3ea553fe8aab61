"""Table-driven tests of consumer.rules: every rule of DESIGN A2/A3 and every bad-data case."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from consumer.domain.model import (
    AppliesTo,
    CertificateSettings,
    Decision,
    DecisionKind,
    ExistingGrant,
    Facts,
    GrantState,
    PageScore,
    Reason,
    SectionPage,
)
from consumer.domain.rules import decide, page_percentage_passes

CERT_ID = 7
PENDING, EARNED, DENIED = GrantState.PENDING, GrantState.EARNED, GrantState.DENIED

# 101 and 102 are the only graded, visible pages; 103-105 are excluded from 'all' for one reason
# each (ungraded, graded NULL, hidden) and get failing scores where that matters.
PAGES = (
    SectionPage(101, graded=True, hidden=False),
    SectionPage(102, graded=True, hidden=False),
    SectionPage(103, graded=False, hidden=False),
    SectionPage(104, graded=None, hidden=False),
    SectionPage(105, graded=True, hidden=True),
)


def score(points: str | int | None, out_of: str | int | None = 100) -> PageScore:
    return PageScore(
        None if points is None else Decimal(points),
        None if out_of is None else Decimal(out_of),
    )


# Completion threshold 50, distinction 90.
COMPLETES = {101: score(80), 102: score(95)}
DISTINGUISHES = {101: score(95), 102: score(90)}
EXCLUDED_FAIL = {103: score(0), 104: score(0), 105: score(0)}


def certificate(**changes: Any) -> CertificateSettings:
    base = CertificateSettings(
        certificate_id=CERT_ID,
        required_discussion_posts=2,
        required_class_notes=2,
        min_percentage_for_completion=Decimal(50),
        min_percentage_for_distinction=Decimal(90),
        assessments_apply_to=AppliesTo.ALL,
        custom_assessments=(),
        requires_instructor_approval=False,
    )
    return replace(base, **changes)


def grant(
    state: GrantState = EARNED, with_distinction: bool = False, certificate_id: int = CERT_ID
) -> ExistingGrant:
    return ExistingGrant(
        granted_certificate_id=900,
        certificate_id=certificate_id,
        state=state,
        with_distinction=with_distinction,
    )


def facts(
    *,
    certificates: tuple[CertificateSettings, ...] | None = None,
    existing: ExistingGrant | None = None,
    scores: dict[int, PageScore] | None = None,
    pages: tuple[SectionPage, ...] = PAGES,
    posts: int = 2,
    notes: int = 2,
    enabled: bool = True,
    enrolled: bool = True,
    **certificate_changes: Any,
) -> Facts:
    return Facts(
        section_id=10,
        user_id=20,
        certificate_enabled=enabled,
        learner_enrolled=enrolled,
        certificates=(certificate(**certificate_changes),)
        if certificates is None
        else certificates,
        grant=existing,
        public_discussion_posts=posts,
        public_class_notes=notes,
        section_pages=pages,
        scores=COMPLETES if scores is None else scores,
    )


def no(reason: Reason) -> Decision:
    return Decision.no_change(reason, CERT_ID)


def create(with_distinction: bool, state: GrantState = EARNED) -> Decision:
    return Decision.create(CERT_ID, state, with_distinction)


def upgrade(state: GrantState = EARNED) -> Decision:
    return Decision.upgrade(CERT_ID, state)


NAN, INF = Decimal("NaN"), Decimal("Infinity")

DECIDE_CASES = [
    # --- certificate rows, enabled, enrolled, in that order ---
    pytest.param(
        facts(certificates=()), Decision.no_change(Reason.NO_CERTIFICATE), id="no-certificate"
    ),
    pytest.param(
        facts(certificates=(certificate(), certificate(certificate_id=8))),
        Decision.no_change(Reason.DUPLICATE_CERTIFICATES),
        id="two-certificate-rows",
    ),
    pytest.param(
        facts(certificates=(certificate(), certificate()), enabled=False, enrolled=False),
        Decision.no_change(Reason.DUPLICATE_CERTIFICATES),
        id="two-rows-checked-before-enabled",
    ),
    pytest.param(facts(enabled=False), no(Reason.CERTIFICATES_DISABLED), id="disabled"),
    pytest.param(
        facts(enabled=False, enrolled=False, existing=grant(DENIED)),
        no(Reason.CERTIFICATES_DISABLED),
        id="disabled-checked-before-enrolled-and-grant",
    ),
    pytest.param(facts(enrolled=False), no(Reason.NOT_ENROLLED), id="not-enrolled"),
    pytest.param(
        facts(enrolled=False, existing=grant(DENIED)),
        no(Reason.NOT_ENROLLED),
        id="not-enrolled-checked-before-grant",
    ),
    # --- state gate (A2.2): terminal for automation even when everything passes ---
    pytest.param(
        facts(existing=grant(DENIED), scores=DISTINGUISHES), no(Reason.DENIED), id="denied"
    ),
    pytest.param(
        facts(existing=grant(DENIED, with_distinction=True), scores=DISTINGUISHES),
        no(Reason.DENIED),
        id="denied-with-distinction",
    ),
    pytest.param(
        facts(existing=grant(PENDING, with_distinction=True), scores=DISTINGUISHES),
        no(Reason.ALREADY_WITH_DISTINCTION),
        id="pending-with-distinction",
    ),
    pytest.param(
        facts(existing=grant(EARNED, with_distinction=True), scores=DISTINGUISHES),
        no(Reason.ALREADY_WITH_DISTINCTION),
        id="earned-with-distinction",
    ),
    pytest.param(
        facts(existing=grant(DENIED, certificate_id=99)),
        create(with_distinction=False),
        id="grant-of-another-certificate-is-ignored",
    ),
    # --- participation (A2.3), only without a grant; ties pass ---
    pytest.param(facts(notes=1), no(Reason.PARTICIPATION_NOT_MET), id="notes-below"),
    pytest.param(facts(posts=1), no(Reason.PARTICIPATION_NOT_MET), id="posts-below"),
    pytest.param(facts(notes=2, posts=2), create(False), id="participation-tie-passes"),
    pytest.param(
        facts(notes=0, posts=0, required_class_notes=0, required_discussion_posts=0),
        create(False),
        id="participation-zero-required",
    ),
    pytest.param(
        facts(notes=0, posts=0, existing=grant(EARNED), scores=DISTINGUISHES),
        upgrade(),
        id="participation-not-checked-with-grant",
    ),
    # --- settings NULL / non-finite ---
    pytest.param(
        facts(required_discussion_posts=None),
        no(Reason.SETTINGS_INCOMPLETE),
        id="posts-requirement-null",
    ),
    pytest.param(
        facts(required_class_notes=None),
        no(Reason.SETTINGS_INCOMPLETE),
        id="notes-requirement-null",
    ),
    pytest.param(
        facts(required_class_notes=None, notes=0),
        no(Reason.SETTINGS_INCOMPLETE),
        id="incomplete-settings-reported-before-participation",
    ),
    pytest.param(
        facts(min_percentage_for_completion=None),
        no(Reason.SETTINGS_INCOMPLETE),
        id="completion-null",
    ),
    pytest.param(
        facts(min_percentage_for_completion=NAN),
        no(Reason.SETTINGS_INCOMPLETE),
        id="completion-nan",
    ),
    pytest.param(
        facts(min_percentage_for_completion=-INF),
        no(Reason.SETTINGS_INCOMPLETE),
        id="completion-minus-infinity",
    ),
    pytest.param(
        facts(min_percentage_for_distinction=None, scores=DISTINGUISHES),
        create(False),
        id="no-grant-distinction-null-creates-without",
    ),
    pytest.param(
        facts(min_percentage_for_distinction=INF, scores=DISTINGUISHES),
        create(False),
        id="no-grant-distinction-infinity-creates-without",
    ),
    pytest.param(
        facts(existing=grant(EARNED), min_percentage_for_distinction=None, scores=DISTINGUISHES),
        no(Reason.SETTINGS_INCOMPLETE),
        id="grant-distinction-null",
    ),
    pytest.param(
        facts(existing=grant(EARNED), min_percentage_for_distinction=NAN, scores=DISTINGUISHES),
        no(Reason.SETTINGS_INCOMPLETE),
        id="grant-distinction-nan",
    ),
    pytest.param(
        facts(
            existing=grant(EARNED),
            min_percentage_for_completion=None,
            required_class_notes=None,
            required_discussion_posts=None,
            scores=DISTINGUISHES,
        ),
        upgrade(),
        id="grant-ignores-completion-and-participation-settings",
    ),
    # --- required pages (A2.4) ---
    pytest.param(
        facts(scores={**COMPLETES, **EXCLUDED_FAIL}),
        create(False),
        id="all-excludes-ungraded-graded-null-hidden",
    ),
    pytest.param(
        facts(pages=PAGES[2:]), no(Reason.NO_REQUIRED_PAGES), id="all-without-graded-visible-pages"
    ),
    pytest.param(facts(pages=()), no(Reason.NO_REQUIRED_PAGES), id="all-section-without-pages"),
    pytest.param(
        facts(pages=PAGES[2:], existing=grant(PENDING), scores=DISTINGUISHES),
        no(Reason.NO_REQUIRED_PAGES),
        id="grant-no-required-pages",
    ),
    pytest.param(
        facts(custom_assessments=(103,), scores={**COMPLETES, **EXCLUDED_FAIL}),
        create(False),
        id="all-ignores-custom-list",
    ),
    pytest.param(
        facts(assessments_apply_to=AppliesTo.CUSTOM, custom_assessments=()),
        no(Reason.NO_REQUIRED_PAGES),
        id="custom-empty",
    ),
    pytest.param(
        facts(assessments_apply_to=AppliesTo.CUSTOM, custom_assessments=(101, 999)),
        no(Reason.REQUIRED_PAGE_OUTSIDE_SECTION),
        id="custom-outside-section",
    ),
    pytest.param(
        facts(
            assessments_apply_to=AppliesTo.CUSTOM,
            custom_assessments=(999,),
            existing=grant(EARNED),
            scores=DISTINGUISHES,
        ),
        no(Reason.REQUIRED_PAGE_OUTSIDE_SECTION),
        id="grant-custom-outside-section",
    ),
    pytest.param(
        facts(
            assessments_apply_to=AppliesTo.CUSTOM,
            custom_assessments=(101, 101, 102, 101),
            scores=DISTINGUISHES,
        ),
        create(True),
        id="custom-duplicates-harmless",
    ),
    pytest.param(
        facts(
            assessments_apply_to=AppliesTo.CUSTOM,
            custom_assessments=(103, 104, 105),
            scores={103: score(60), 104: score(60), 105: score(60)},
        ),
        create(False),
        id="custom-counts-ungraded-and-hidden-pages",
    ),
    pytest.param(
        facts(
            assessments_apply_to=AppliesTo.CUSTOM,
            custom_assessments=(101, 105),
            scores={101: score(95), 105: score(10)},
        ),
        no(Reason.COMPLETION_NOT_MET),
        id="custom-hidden-page-can-fail",
    ),
    # --- thresholds (A2.5, A2.6): every page, ties pass, exact ---
    pytest.param(
        facts(scores={101: score(100), 102: score(40)}),
        no(Reason.COMPLETION_NOT_MET),
        id="not-an-average",
    ),
    pytest.param(
        facts(scores={101: score(80)}), no(Reason.COMPLETION_NOT_MET), id="missing-row-counts-zero"
    ),
    pytest.param(
        facts(scores={101: score(80), 102: score(None)}),
        no(Reason.COMPLETION_NOT_MET),
        id="score-null-counts-zero",
    ),
    pytest.param(
        facts(scores={101: score(50), 102: score(50)}), create(False), id="completion-tie-passes"
    ),
    pytest.param(
        facts(
            scores={101: score(57), 102: score("0.57", 1)},
            min_percentage_for_completion=Decimal(57),
            min_percentage_for_distinction=Decimal(58),
        ),
        create(False),
        id="57-of-100-passes-57",
    ),
    pytest.param(
        facts(scores={101: score(80, None), 102: score(95, None)}),
        create(False),
        id="out-of-null-is-100",
    ),
    pytest.param(
        facts(scores={101: score(80, 0), 102: score(95)}, min_percentage_for_completion=Decimal(0)),
        no(Reason.COMPLETION_NOT_MET),
        id="out-of-zero-fails-even-zero-threshold",
    ),
    pytest.param(
        facts(scores={101: score(-80, -100), 102: score(95)}),
        no(Reason.COMPLETION_NOT_MET),
        id="out-of-negative-fails",
    ),
    pytest.param(
        facts(scores={101: score("NaN"), 102: score(95)}),
        no(Reason.COMPLETION_NOT_MET),
        id="score-nan-fails",
    ),
    pytest.param(
        facts(scores={101: score("Infinity"), 102: score(95)}),
        no(Reason.COMPLETION_NOT_MET),
        id="score-infinity-fails",
    ),
    pytest.param(
        facts(scores={101: score(80, "Infinity"), 102: score(95)}),
        no(Reason.COMPLETION_NOT_MET),
        id="out-of-infinity-fails",
    ),
    pytest.param(
        facts(scores={101: score(-5), 102: score(95)}),
        no(Reason.COMPLETION_NOT_MET),
        id="negative-score-fails",
    ),
    pytest.param(
        facts(scores={101: score(-5), 102: score(95)}, min_percentage_for_completion=Decimal(-10)),
        create(False),
        id="negative-score-computes-against-negative-threshold",
    ),
    pytest.param(
        facts(scores={101: score(150), 102: score(95)}),
        create(True),
        id="score-above-out-of-passes",
    ),
    pytest.param(
        facts(scores={101: score(95), 102: score(95)}, min_percentage_for_completion=Decimal(96)),
        no(Reason.COMPLETION_NOT_MET),
        id="completion-above-distinction-can-fail-while-distinction-would-pass",
    ),
    # --- CREATE ---
    pytest.param(facts(), create(False), id="create-without-distinction"),
    pytest.param(facts(scores=DISTINGUISHES), create(True), id="create-with-distinction"),
    pytest.param(
        facts(requires_instructor_approval=True),
        create(False, PENDING),
        id="create-pending-when-approval-required",
    ),
    pytest.param(
        facts(requires_instructor_approval=True, scores=DISTINGUISHES),
        create(True, PENDING),
        id="create-distinction-pending-when-approval-required",
    ),
    # --- UPGRADE (A2.6, A2.7) ---
    pytest.param(
        facts(existing=grant(EARNED), scores=DISTINGUISHES), upgrade(), id="upgrade-earned"
    ),
    pytest.param(
        facts(existing=grant(PENDING), scores=DISTINGUISHES),
        upgrade(EARNED),
        id="upgrade-pending-to-earned-when-approval-no-longer-required",
    ),
    pytest.param(
        facts(existing=grant(EARNED), scores=DISTINGUISHES, requires_instructor_approval=True),
        upgrade(PENDING),
        id="upgrade-earned-to-pending-when-approval-now-required",
    ),
    pytest.param(
        facts(existing=grant(PENDING), scores=DISTINGUISHES, requires_instructor_approval=True),
        upgrade(PENDING),
        id="upgrade-pending-stays-pending",
    ),
    pytest.param(
        facts(existing=grant(EARNED)), no(Reason.DISTINCTION_NOT_MET), id="distinction-not-met"
    ),
    pytest.param(
        facts(existing=grant(EARNED), scores={101: score(95), 102: score("89.99")}),
        no(Reason.DISTINCTION_NOT_MET),
        id="distinction-just-below",
    ),
]


@pytest.mark.parametrize(("given", "expected"), DECIDE_CASES)
def test_decide(given: Facts, expected: Decision) -> None:
    assert decide(given) == expected


def test_every_reason_is_covered_by_the_table() -> None:
    decisions = [case.values[1] for case in DECIDE_CASES]
    reasons = {decision.reason for decision in decisions if isinstance(decision, Decision)}
    assert reasons >= set(Reason)


def test_reason_values_are_snake_case_names() -> None:
    assert all(reason.value == reason.name.lower() for reason in Reason)


PASSES_CASES = [
    pytest.param(score(57), 57, True, id="57-of-100-passes-57"),
    pytest.param(score("0.57", 1), 57, True, id="0.57-of-1-passes-57"),
    pytest.param(score(50), 50, True, id="tie-passes"),
    pytest.param(score("49.999"), 50, False, id="just-below-fails"),
    pytest.param(score(1, 3), "33.33333333333333333333333333", True, id="third-above-rounded"),
    pytest.param(score(1, 3), "33.33333333333333333333333334", False, id="third-below-rounded"),
    pytest.param(
        score("1.000000000000000000000000000000001", 1),
        "100.0000000000000000000000000000002",
        False,
        id="exact-beyond-default-28-digit-precision",
    ),
    # The float8 0.57 is exactly 0.56999999999999995115018691649311222136020660400390625:
    # 53 significant digits, compared without rounding to the default 28.
    pytest.param(
        PageScore(Decimal.from_float(0.57), Decimal(1)),
        "56.999999999999995115018691649311222136020660400390625",
        True,
        id="exact-float8-decimal-tie-passes",
    ),
    pytest.param(
        PageScore(Decimal.from_float(0.57), Decimal(1)),
        "56.999999999999995115018691649311222136020660400390626",
        False,
        id="exact-float8-decimal-one-ulp-above-fails",
    ),
    pytest.param(score("1E-400", "1E-400"), 100, True, id="tiny-exponents-exact"),
    pytest.param(score("1E+400", "1E+400"), 100, True, id="huge-exponents-exact"),
    pytest.param(None, 0, True, id="missing-row-is-zero-passes-zero"),
    pytest.param(None, 1, False, id="missing-row-is-zero-fails-one"),
    pytest.param(score(None), 0, True, id="score-null-passes-zero"),
    pytest.param(score(None), "0.01", False, id="score-null-fails-positive"),
    pytest.param(score(57, None), 57, True, id="out-of-null-is-100"),
    pytest.param(score(58, None), "58.01", False, id="out-of-null-is-100-fails-above"),
    pytest.param(score(5, 0), 0, False, id="out-of-zero-fails-zero"),
    pytest.param(score(5, 0), -100, False, id="out-of-zero-fails-negative"),
    pytest.param(score(5, "-0"), -100, False, id="out-of-negative-zero-fails"),
    pytest.param(score(-5, -10), 0, False, id="out-of-negative-fails"),
    pytest.param(score(-5), 0, False, id="negative-score-fails-zero"),
    pytest.param(score(-5), -5, True, id="negative-score-computes-tie"),
    pytest.param(score(150), 100, True, id="score-above-out-of-passes-100"),
    pytest.param(score(150), 150, True, id="score-above-out-of-tie-150"),
    pytest.param(score(150), 151, False, id="score-above-out-of-fails-151"),
    pytest.param(score("NaN"), 0, False, id="score-nan"),
    pytest.param(score("sNaN"), 0, False, id="score-signalling-nan"),
    pytest.param(score("Infinity"), 0, False, id="score-infinity"),
    pytest.param(score("-Infinity"), -100, False, id="score-minus-infinity"),
    pytest.param(score(50, "NaN"), 0, False, id="out-of-nan"),
    pytest.param(score(50, "Infinity"), 0, False, id="out-of-infinity"),
    pytest.param(score(50), "NaN", False, id="threshold-nan"),
    pytest.param(score(50), "-Infinity", False, id="threshold-minus-infinity"),
    pytest.param(score(50), "Infinity", False, id="threshold-infinity"),
]


@pytest.mark.parametrize(("page", "threshold", "expected"), PASSES_CASES)
def test_page_percentage_passes(
    page: PageScore | None, threshold: str | int, expected: bool
) -> None:
    assert page_percentage_passes(page, Decimal(threshold)) is expected


INVALID_DECISIONS = [
    pytest.param(DecisionKind.NO_CHANGE, None, None, None, 1, id="no-change-without-reason"),
    pytest.param(DecisionKind.NO_CHANGE, Reason.DENIED, EARNED, None, 1, id="no-change-with-state"),
    pytest.param(
        DecisionKind.NO_CHANGE, Reason.DENIED, None, False, 1, id="no-change-with-distinction"
    ),
    pytest.param(DecisionKind.CREATE, Reason.DENIED, EARNED, False, 1, id="create-with-reason"),
    pytest.param(DecisionKind.CREATE, None, None, False, 1, id="create-without-state"),
    pytest.param(DecisionKind.CREATE, None, DENIED, False, 1, id="create-denied"),
    pytest.param(DecisionKind.CREATE, None, EARNED, None, 1, id="create-without-distinction-flag"),
    pytest.param(DecisionKind.CREATE, None, EARNED, False, None, id="create-without-certificate"),
    pytest.param(DecisionKind.UPGRADE, None, EARNED, False, 1, id="upgrade-without-distinction"),
]


@pytest.mark.parametrize(
    ("kind", "reason", "state", "with_distinction", "certificate_id"), INVALID_DECISIONS
)
def test_malformed_decision_is_refused(
    kind: DecisionKind,
    reason: Reason | None,
    state: GrantState | None,
    with_distinction: bool | None,
    certificate_id: int | None,
) -> None:
    with pytest.raises(ValueError):
        Decision(kind, reason, state, with_distinction, certificate_id)


@pytest.mark.parametrize(
    ("decision", "changes"),
    [
        pytest.param(Decision.no_change(Reason.DENIED), False, id="no-change"),
        pytest.param(Decision.create(1, EARNED, False), True, id="create"),
        pytest.param(Decision.upgrade(1, PENDING), True, id="upgrade"),
    ],
)
def test_decision_changes(decision: Decision, changes: bool) -> None:
    assert decision.changes is changes
