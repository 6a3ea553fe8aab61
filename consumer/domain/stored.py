"""How stored values become domain values: a float8 as the exact decimal it was written as, a
``certificates`` row as ``CertificateSettings``.

Standard library only, so the store's facts and the demo's independent model read a row the
same way without the demo importing the database layer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from consumer.domain import model


@functools.lru_cache(maxsize=65536)
def exact(value: float | None) -> Decimal | None:
    """A float8 as the decimal it was written as (57.3 -> Decimal('57.3')), keeping NaN and
    infinities visible so the rules can refuse them rather than compare them."""
    if value is None:
        return None
    if not math.isfinite(value):
        return Decimal(value)
    return Decimal(repr(value))


class CertificateRow(Protocol):
    """A certificates row, or anything shaped like one (the demo's seeding plan)."""

    @property
    def id(self) -> int: ...

    @property
    def required_discussion_posts(self) -> int | None: ...

    @property
    def required_class_notes(self) -> int | None: ...

    @property
    def min_percentage_for_completion(self) -> float | None: ...

    @property
    def min_percentage_for_distinction(self) -> float | None: ...

    @property
    def assessments_apply_to(self) -> str | None: ...

    @property
    def custom_assessments(self) -> Sequence[int] | None: ...

    @property
    def requires_instructor_approval(self) -> bool | None: ...


def certificate_settings(row: CertificateRow) -> model.CertificateSettings:
    """The rules' view of a certificate row (thresholds as exact decimals)."""
    return model.CertificateSettings(
        certificate_id=row.id,
        required_discussion_posts=row.required_discussion_posts,
        required_class_notes=row.required_class_notes,
        min_percentage_for_completion=exact(row.min_percentage_for_completion),
        min_percentage_for_distinction=exact(row.min_percentage_for_distinction),
        assessments_apply_to=model.AppliesTo(row.assessments_apply_to or "all"),
        custom_assessments=tuple(row.custom_assessments or ()),
        requires_instructor_approval=bool(row.requires_instructor_approval),
    )
