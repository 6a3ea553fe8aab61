"""Why a learner has (or has not) a certificate: every requirement with the learner's figures.

Built from the same facts and by the same functions as the decision (``rules.decide``,
``rules.required_pages``, ``rules.page_percentage_passes``), never by a second reading of the
rules: the decision it shows is ``decide``'s own, and each page's pass or fail is the exact
comparison the decision made. The percentages and margins are for reading only (rounded to
four places); nothing is decided on them.

Pure, as ``rules`` is: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from consumer.domain import rules
from consumer.domain.model import (
    AppliesTo,
    CertificateSettings,
    Decision,
    ExistingGrant,
    Facts,
    PageScore,
    Reason,
)

_SHOWN = Decimal("0.0001")


@dataclass(frozen=True)
class Count:
    """A participation requirement: what the learner has against what is required."""

    have: int
    need: int | None  # None: the certificate leaves it unset (settings_incomplete)

    @property
    def met(self) -> bool | None:
        return None if self.need is None else self.have >= self.need


@dataclass(frozen=True)
class Page:
    """One required page: the stored score, what the rules count, and both thresholds."""

    resource_id: int
    score: Decimal | None  # as stored; None: no resource_accesses row, or NULL
    out_of: Decimal | None
    percentage: Decimal | None  # score * 100 / out_of, shown rounded; None when meaningless
    passes_completion: bool | None  # None: no usable threshold
    passes_distinction: bool | None
    completion_margin: Decimal | None  # percentage - threshold, shown rounded
    distinction_margin: Decimal | None


@dataclass(frozen=True)
class Explanation:
    section_id: int
    user_id: int
    certificate_enabled: bool
    learner_enrolled: bool
    certificate: CertificateSettings | None  # None with no row, or with two (see decision)
    grant: ExistingGrant | None
    discussion_posts: Count
    class_notes: Count
    pages: tuple[Page, ...]
    pages_outside_section: tuple[int, ...]  # 'custom' ids that are not pages of the section
    decision: Decision
    notes: tuple[str, ...]  # where Torus's worker or progress display counts differently


def explain(facts: Facts, deleted: tuple[int, int] = (0, 0)) -> Explanation:
    """The figures behind ``rules.decide(facts)``, and the decision itself. ``deleted``: the
    learner's deleted public (discussion posts, class notes), which the facts leave out."""
    certificate = facts.certificates[0] if len(facts.certificates) == 1 else None
    posts_needed = certificate.required_discussion_posts if certificate else None
    notes_needed = certificate.required_class_notes if certificate else None
    pages = _pages(facts, certificate)
    outside = _outside(facts, certificate)
    return Explanation(
        section_id=facts.section_id,
        user_id=facts.user_id,
        certificate_enabled=facts.certificate_enabled,
        learner_enrolled=facts.learner_enrolled,
        certificate=certificate,
        grant=facts.grant,
        discussion_posts=Count(facts.public_discussion_posts, posts_needed),
        class_notes=Count(facts.public_class_notes, notes_needed),
        pages=pages,
        pages_outside_section=outside,
        decision=rules.decide(facts),
        notes=_notes(facts, certificate, outside, deleted),
    )


def _notes(
    facts: Facts,
    certificate: CertificateSettings | None,
    outside: tuple[int, ...],
    deleted: tuple[int, int],
) -> tuple[str, ...]:
    """Where Torus would see this learner otherwise (README, "How it decides")."""
    notes = []
    if not facts.certificate_enabled:
        notes.append(
            "certificates are disabled for the section; Torus checked that only when a job "
            "was enqueued"
        )
    if not facts.learner_enrolled:
        notes.append(
            "the learner's enrollment is not 'enrolled'; Torus checked that only when a job "
            "was enqueued"
        )
    if any(deleted):
        notes.append(
            f"{deleted[0]} deleted discussion post(s) and {deleted[1]} deleted class note(s) are "
            "not counted; Torus counts them"
        )
    if outside:
        notes.append(
            f"custom page(s) {', '.join(map(str, outside))} are not pages of this section; "
            "Torus counts them as 0, so it never grants"
        )
    if certificate is not None:
        notes.extend(_float_artefacts(facts, certificate))
    return tuple(notes)


def _float_artefacts(facts: Facts, certificate: CertificateSettings) -> list[str]:
    """Pages whose verdict Torus's float8 arithmetic, (score / out_of) * 100 >= T, gets
    otherwise than the exact comparison (57/100 against 57: 56.99999999999999)."""
    required = rules.required_pages(certificate, facts.section_pages)
    if isinstance(required, Reason):
        return []
    found = []
    for name, raw in (
        ("completion", certificate.min_percentage_for_completion),
        ("distinction", certificate.min_percentage_for_distinction),
    ):
        threshold = rules.usable_threshold(raw)
        if threshold is None:
            continue
        for page_id in sorted(required):
            stored = facts.scores.get(page_id)
            exact = rules.page_percentage_passes(stored, threshold)
            torus, shown = _torus_float(stored, threshold)
            if torus is not exact:
                found.append(
                    f"page {page_id}: Torus's float arithmetic gives {shown}% and "
                    f"{'passes' if torus else 'fails'} the {threshold} {name} threshold; the exact "
                    f"comparison {'passes' if exact else 'fails'} it"
                )
    return found


def _torus_float(stored: PageScore | None, threshold: Decimal) -> tuple[bool, str]:
    points = 0.0 if stored is None or stored.score is None else float(stored.score)
    out_of = 100.0 if stored is None or stored.out_of is None else float(stored.out_of)
    if out_of == 0:
        return False, "nan"
    pct = points / out_of * 100
    return pct >= float(threshold), repr(pct)


def _pages(facts: Facts, certificate: CertificateSettings | None) -> tuple[Page, ...]:
    if certificate is None:
        return ()
    required = rules.required_pages(certificate, facts.section_pages)
    if isinstance(required, Reason):
        return ()
    completion = rules.usable_threshold(certificate.min_percentage_for_completion)
    distinction = rules.usable_threshold(certificate.min_percentage_for_distinction)
    return tuple(
        _page(page_id, facts.scores.get(page_id), completion, distinction)
        for page_id in sorted(required)
    )


def _page(
    page_id: int, stored: PageScore | None, completion: Decimal | None, distinction: Decimal | None
) -> Page:
    percentage = _percentage(stored)
    return Page(
        resource_id=page_id,
        score=None if stored is None else stored.score,
        out_of=None if stored is None else stored.out_of,
        percentage=_shown(percentage),
        passes_completion=_passes(stored, completion),
        passes_distinction=_passes(stored, distinction),
        completion_margin=_margin(percentage, completion),
        distinction_margin=_margin(percentage, distinction),
    )


def _passes(stored: PageScore | None, threshold: Decimal | None) -> bool | None:
    return None if threshold is None else rules.page_percentage_passes(stored, threshold)


def _percentage(stored: PageScore | None) -> Decimal | None:
    """As the rules count it: a missing score is 0, a missing out_of 100."""
    points = Decimal(0) if stored is None or stored.score is None else stored.score
    out_of = Decimal(100) if stored is None or stored.out_of is None else stored.out_of
    if not (points.is_finite() and out_of.is_finite()) or out_of <= 0:
        return None
    with localcontext() as context:
        context.prec = 60
        return points * 100 / out_of


def _margin(percentage: Decimal | None, threshold: Decimal | None) -> Decimal | None:
    if percentage is None or threshold is None:
        return None
    with localcontext() as context:
        context.prec = 60
        return _shown(percentage - threshold)


def _shown(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(_SHOWN, rounding=ROUND_HALF_EVEN)


def _outside(facts: Facts, certificate: CertificateSettings | None) -> tuple[int, ...]:
    if certificate is None or certificate.assessments_apply_to is not AppliesTo.CUSTOM:
        return ()
    pages = {p.resource_id for p in facts.section_pages}
    return tuple(sorted(set(certificate.custom_assessments) - pages))
