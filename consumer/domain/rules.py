"""The certification rules: given the facts of one (section, learner), decide the transition.

Owns DESIGN A2 (the decision) and the rule-level parts of A3 (certificates must be enabled and
the learner enrolled; exact arithmetic; two certificate rows give a clear result, never a crash).
"Not eligible" is a ``Decision`` with a ``Reason``, never an exception, so the evaluator can count
and log every outcome the same way. The values it decides on and returns are in ``consumer.model``.

Pure on purpose: no I/O, no clock, no randomness, no mutable globals. It must not import anything
outside the standard library (no sqlalchemy, confluent_kafka, fastavro, structlog,
prometheus_client), which keeps it trivially fast to test with tables and hypothesis. Loading the
facts and writing the transition (issued_at, guid, outbox) belong to ``facts`` and ``transitions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    Underflow,
)

from consumer.domain.model import (
    AppliesTo,
    CertificateSettings,
    Decision,
    ExistingGrant,
    Facts,
    GrantState,
    PageScore,
    Reason,
    SectionPage,
)

# A missing score counts as 0 and a NULL out_of as 100, as in Torus.
_MISSING_SCORE = Decimal(0)
_DEFAULT_OUT_OF = Decimal(100)
_PERCENT = Decimal(100)


def decide(facts: Facts) -> Decision:
    """Apply DESIGN A2/A3 in the agreed order; every early exit names its reason.

    Order: certificate rows, certificate_enabled, enrollment, the state gate, then (no grant)
    settings and participation before pages, or (grant) distinction only.
    """
    if not facts.certificates:
        return Decision.no_change(Reason.NO_CERTIFICATE)
    if len(facts.certificates) > 1:
        # Torus crashes here; we refuse to guess which row is meant (A3).
        return Decision.no_change(Reason.DUPLICATE_CERTIFICATES)
    certificate = facts.certificates[0]
    grant = _grant_for(facts.grant, certificate)
    blocked = _gate(facts, grant)
    if blocked is not None:
        return Decision.no_change(blocked, certificate.certificate_id)
    if grant is None:
        return _decide_first_grant(facts, certificate)
    return _decide_upgrade(facts, certificate)


def page_percentage_passes(score: PageScore | None, threshold: Decimal) -> bool:
    """Whether one page reaches ``threshold`` percent, compared exactly (A3).

    ``score * 100 >= threshold * out_of`` with no division and no rounding, so 57/100 passes 57
    where Torus's float8 arithmetic gives 56.99999999999999. ``None`` means no resource_accesses
    row. A score NULL counts as 0, an out_of NULL as 100. Anything that cannot be a meaningful
    percentage (out_of <= 0, NaN or infinite values, a non-finite threshold) fails: bad data
    must never grant.
    """
    points = _MISSING_SCORE if score is None or score.score is None else score.score
    out_of = _DEFAULT_OUT_OF if score is None or score.out_of is None else score.out_of
    if not (points.is_finite() and out_of.is_finite() and threshold.is_finite()):
        return False
    if out_of <= 0:
        return False
    return _exact_product(points, _PERCENT) >= _exact_product(threshold, out_of)


def _exact_product(left: Decimal, right: Decimal) -> Decimal:
    """Multiply without rounding.

    The default context (28 digits) could round; this one allows the largest precision
    libmpdec has, which costs nothing for short numbers (the result is sized by its digits,
    not by the limit), and traps every rounding signal so an inexact result cannot pass.
    """
    return _EXACT.multiply(left, right)


_EXACT = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, Inexact, Rounded, Overflow, Underflow],
)


def _grant_for(
    grant: ExistingGrant | None, certificate: CertificateSettings
) -> ExistingGrant | None:
    """The learner's grant for this certificate; a grant of another certificate is not ours.

    Grants are unique per (user, certificate), so a row for a different certificate id says
    nothing about this one (Torus looks the grant up by certificate id too).
    """
    if grant is None or grant.certificate_id != certificate.certificate_id:
        return None
    return grant


def _gate(facts: Facts, grant: ExistingGrant | None) -> Reason | None:
    """The checks that end the evaluation before any setting or score is looked at."""
    if not facts.certificate_enabled:
        return Reason.CERTIFICATES_DISABLED
    if not facts.learner_enrolled:
        return Reason.NOT_ENROLLED
    if grant is None:
        return None
    if grant.state is GrantState.DENIED:
        return Reason.DENIED
    if grant.with_distinction:
        return Reason.ALREADY_WITH_DISTINCTION
    return None


def _decide_first_grant(facts: Facts, certificate: CertificateSettings) -> Decision:
    """No grant yet: participation, then completion, then (optionally) distinction (A2.3, A2.6).

    Incomplete settings are reported before the learner's own counts, so a misconfigured
    section shows one reason for all its learners. A NULL distinction threshold only means the
    certificate cannot be earned with distinction; it does not hold back completion.
    """
    certificate_id = certificate.certificate_id
    completion = usable_threshold(certificate.min_percentage_for_completion)
    if (
        completion is None
        or certificate.required_class_notes is None
        or certificate.required_discussion_posts is None
    ):
        return Decision.no_change(Reason.SETTINGS_INCOMPLETE, certificate_id)
    if (
        facts.public_class_notes < certificate.required_class_notes
        or facts.public_discussion_posts < certificate.required_discussion_posts
    ):
        return Decision.no_change(Reason.PARTICIPATION_NOT_MET, certificate_id)
    required = required_pages(certificate, facts.section_pages)
    if isinstance(required, Reason):
        return Decision.no_change(required, certificate_id)
    if not _every_page_passes(required, facts.scores, completion):
        return Decision.no_change(Reason.COMPLETION_NOT_MET, certificate_id)
    distinction = usable_threshold(certificate.min_percentage_for_distinction)
    with_distinction = distinction is not None and _every_page_passes(
        required, facts.scores, distinction
    )
    return Decision.create(certificate_id, _state_for(certificate), with_distinction)


def _decide_upgrade(facts: Facts, certificate: CertificateSettings) -> Decision:
    """A pending or earned grant without distinction: only distinction is evaluated (A2.6)."""
    certificate_id = certificate.certificate_id
    distinction = usable_threshold(certificate.min_percentage_for_distinction)
    if distinction is None:
        return Decision.no_change(Reason.SETTINGS_INCOMPLETE, certificate_id)
    required = required_pages(certificate, facts.section_pages)
    if isinstance(required, Reason):
        return Decision.no_change(required, certificate_id)
    if not _every_page_passes(required, facts.scores, distinction):
        return Decision.no_change(Reason.DISTINCTION_NOT_MET, certificate_id)
    return Decision.upgrade(certificate_id, _state_for(certificate))


def required_pages(
    certificate: CertificateSettings, pages: tuple[SectionPage, ...]
) -> frozenset[int] | Reason:
    """The page ids every one of which must pass, or the reason there is no usable set (A2.4).

    'custom' ids are taken as stored, hidden or ungraded pages included, but each must be a page
    of this section: an id from another section or a deleted page would otherwise silently count
    as a score of 0 and block the certificate for reasons nobody can see.
    """
    if certificate.assessments_apply_to is AppliesTo.ALL:
        required = frozenset(p.resource_id for p in pages if p.graded is True and not p.hidden)
    else:
        required = frozenset(certificate.custom_assessments)
        if not required <= {p.resource_id for p in pages}:
            return Reason.REQUIRED_PAGE_OUTSIDE_SECTION
    if not required:
        return Reason.NO_REQUIRED_PAGES
    return required


def _every_page_passes(
    required: frozenset[int], scores: Mapping[int, PageScore], threshold: Decimal
) -> bool:
    """Every required page reaches the threshold (ties pass; not an average). None: fails."""
    return bool(required) and all(
        page_percentage_passes(scores.get(page_id), threshold) for page_id in required
    )


def usable_threshold(threshold: Decimal | None) -> Decimal | None:
    """A threshold the decision can use; NULL, NaN and Infinity (float8 allows them) are not."""
    if threshold is None or not threshold.is_finite():
        return None
    return threshold


def _state_for(certificate: CertificateSettings) -> GrantState:
    """The state a new or upgraded grant gets under the certificate's current settings."""
    return GrantState.PENDING if certificate.requires_instructor_approval else GrantState.EARNED
