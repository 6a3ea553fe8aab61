"""The values of the certification domain: the facts of one (section, learner) and the decision.

Frozen dataclasses and enums, checked on construction where a wrong combination would be a bug
(a Decision with a state but no transition). "Not eligible" is a ``Decision`` with a ``Reason``,
never an exception. Like ``consumer.rules``, imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import NamedTuple

Key = tuple[int, int]  # (section_id, user_id): what is evaluated, and the debounce's row
PAGE_RESOURCE_TYPE = 1  # Torus's resource_types.id of a page: only pages carry scores


class GrantState(Enum):
    """The ``granted_certificates.state`` enum."""

    PENDING = "pending"
    EARNED = "earned"
    DENIED = "denied"


class AppliesTo(Enum):
    """The ``certificates.assessments_apply_to`` enum."""

    ALL = "all"
    CUSTOM = "custom"


class GrantCause(Enum):
    """Why a certificate is announced as earned (the certificate_granted ``cause``)."""

    RULES = "rules"  # this service decided it
    INSTRUCTOR_APPROVAL = "instructor_approval"  # earned by a write of Torus's, not ours


class DecisionKind(Enum):
    """What the evaluator must do with the granted certificate row."""

    NO_CHANGE = "no_change"
    CREATE = "create"
    UPGRADE = "upgrade"


class Reason(Enum):
    """Why a decision is NO_CHANGE; the values are stable, machine-readable metric labels."""

    CERTIFICATES_DISABLED = "certificates_disabled"
    NOT_ENROLLED = "not_enrolled"
    NO_CERTIFICATE = "no_certificate"
    DUPLICATE_CERTIFICATES = "duplicate_certificates"
    DENIED = "denied"
    ALREADY_WITH_DISTINCTION = "already_with_distinction"
    PARTICIPATION_NOT_MET = "participation_not_met"
    SETTINGS_INCOMPLETE = "settings_incomplete"
    REQUIRED_PAGE_OUTSIDE_SECTION = "required_page_outside_section"
    NO_REQUIRED_PAGES = "no_required_pages"
    COMPLETION_NOT_MET = "completion_not_met"
    DISTINCTION_NOT_MET = "distinction_not_met"


@dataclass(frozen=True)
class CertificateSettings:
    """One ``certificates`` row; thresholds are exact decimals of the stored float8 (0..100)."""

    certificate_id: int
    required_discussion_posts: int | None
    required_class_notes: int | None
    min_percentage_for_completion: Decimal | None
    min_percentage_for_distinction: Decimal | None
    assessments_apply_to: AppliesTo
    custom_assessments: tuple[int, ...]
    requires_instructor_approval: bool


@dataclass(frozen=True)
class ExistingGrant:
    """The learner's ``granted_certificates`` row, if any."""

    granted_certificate_id: int
    certificate_id: int
    state: GrantState
    with_distinction: bool


@dataclass(frozen=True)
class SectionPage:
    """A ``section_resources`` row with resource_type_id = 1 (page)."""

    resource_id: int
    graded: bool | None
    hidden: bool


class PageScore(NamedTuple):
    """The learner's ``resource_accesses`` score and out_of for one page; None stands for NULL.

    A named tuple, not a dataclass: an evaluation makes one per learner and page, and this is
    several times cheaper to build.
    """

    score: Decimal | None
    out_of: Decimal | None


@dataclass(frozen=True)
class Facts:
    """Everything the decision for one (section_id, user_id) needs, read in one snapshot."""

    section_id: int
    user_id: int
    certificate_enabled: bool
    learner_enrolled: bool
    certificates: tuple[CertificateSettings, ...]
    grant: ExistingGrant | None
    public_discussion_posts: int
    public_class_notes: int
    section_pages: tuple[SectionPage, ...]
    scores: Mapping[int, PageScore]


@dataclass(frozen=True)
class Decision:
    """The outcome for one learner. Build it with ``no_change``, ``create`` or ``upgrade``.

    ``reason`` is set iff NO_CHANGE; ``state`` and ``with_distinction`` iff CREATE/UPGRADE.
    ``certificate_id`` is the section's certificate whenever there is exactly one, so even a
    NO_CHANGE can be attributed; it is None only when there is no single certificate.
    """

    kind: DecisionKind
    reason: Reason | None
    state: GrantState | None
    with_distinction: bool | None
    certificate_id: int | None

    def __post_init__(self) -> None:
        # A malformed Decision is a programming error in this module, so it fails loudly here
        # rather than as a wrong write in ``transitions``.
        changes = self.kind is not DecisionKind.NO_CHANGE
        if (self.reason is None) != changes:
            raise ValueError(f"reason must be set iff NO_CHANGE: {self!r}")
        if changes and (
            self.state not in (GrantState.PENDING, GrantState.EARNED)
            or self.with_distinction is None
            or self.certificate_id is None
        ):
            raise ValueError(f"a transition needs state, with_distinction, certificate: {self!r}")
        if not changes and (self.state is not None or self.with_distinction is not None):
            raise ValueError(f"NO_CHANGE carries no state or with_distinction: {self!r}")
        if self.kind is DecisionKind.UPGRADE and self.with_distinction is not True:
            raise ValueError(f"an UPGRADE is always to distinction: {self!r}")

    @classmethod
    def no_change(cls, reason: Reason, certificate_id: int | None = None) -> Decision:
        """Nothing to write; ``reason`` says why."""
        return cls(DecisionKind.NO_CHANGE, reason, None, None, certificate_id)

    @classmethod
    def create(cls, certificate_id: int, state: GrantState, with_distinction: bool) -> Decision:
        """Insert the learner's first granted certificate."""
        return cls(DecisionKind.CREATE, None, state, with_distinction, certificate_id)

    @classmethod
    def upgrade(cls, certificate_id: int, state: GrantState) -> Decision:
        """Turn the existing grant into one with distinction."""
        return cls(DecisionKind.UPGRADE, None, state, True, certificate_id)

    @property
    def changes(self) -> bool:
        """True when the evaluator has a row to write."""
        return self.kind is not DecisionKind.NO_CHANGE
