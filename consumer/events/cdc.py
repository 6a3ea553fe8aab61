"""Debezium change events of the Torus tables as triggers: an unchanged Torus feeds the service.

A Debezium PostgreSQL connector with the JSON converter (``schemas.enable`` true or false) writes
one topic per table, ``<prefix>.<schema>.<table>``; the topic says the table, never the bytes.
Each record becomes exactly one of:

- a :class:`Change`: (section, learner), or the whole section when ``user_id`` is None. The
  database is the truth, so a change only says "look again"; the debounce coalesces a burst;
- an :class:`Approved` granted certificate: an ``earned`` row the announcement of which the
  store checks against the outbox (the approval flow, ADR 0012);
- a :class:`Skip` with its :class:`SkipReason`: counted, the offset moves on. Deletes, tombstones,
  snapshot reads and truncates are never triggers: nothing is earned by a delete (and under
  REPLICA IDENTITY DEFAULT a delete's before image is not trustworthy), and a snapshot is what
  ``cert-consumer backfill`` is for;
- a :class:`MalformedChangeError` (poison, dead-lettered) only when the envelope itself is
  broken: not JSON, no ``op``, an ``after`` missing where the op needs one, an id that is not a
  positive 64-bit integer, a key naming another row than the value.

Where a before image is present (REPLICA IDENTITY FULL), a change that cannot matter (a score
rewritten with the same value, a certificate edit that touches no rule column) is skipped
before the debounce; without one (DEFAULT), every insert and update of a relevant row is a
trigger and the debounce absorbs the extra work.

Pure: JSON text in, a value out; no Kafka messages, no database.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from consumer.domain.model import PAGE_RESOURCE_TYPE
from consumer.errors import PoisonError

_BIGINT_MAX = 2**63 - 1


class CdcTable(enum.StrEnum):
    """The Torus tables whose changes the service reads, and what a change of each means."""

    RESOURCE_ACCESSES = "resource_accesses"  # a score: (section, learner)
    POSTS = "posts"  # a post or note that can count: (section, learner)
    ENROLLMENTS = "enrollments"  # (re)enrolled: (section, learner)
    CERTIFICATES = "certificates"  # a rule changed: the section
    SECTIONS = "sections"  # certificates turned on: the section
    SECTION_RESOURCES = "section_resources"  # a page graded or hidden: the section
    GRANTED_CERTIFICATES = "granted_certificates"  # earned by someone else: announce it


class SkipReason(enum.StrEnum):
    """Why a change is not a trigger; the values are stable metric labels."""

    TOMBSTONE = "tombstone"
    SNAPSHOT = "snapshot"
    DELETE = "delete"
    TRUNCATE = "truncate"
    MESSAGE = "message"
    NO_SCORE = "no_score"
    SCORE_UNCHANGED = "score_unchanged"
    POST_NOT_COUNTED = "post_not_counted"
    NOT_ENROLLED = "not_enrolled"
    NO_RULE_CHANGE = "no_rule_change"
    CERTIFICATES_NOT_ENABLED = "certificates_not_enabled"
    NOT_A_PAGE = "not_a_page"
    NO_CURRICULUM_CHANGE = "no_curriculum_change"
    NOT_EARNED = "not_earned"


@dataclass(frozen=True)
class Change:
    section_id: int
    user_id: int | None  # None: every enrolled learner of the section


@dataclass(frozen=True)
class Approved:
    granted_certificate_id: int


@dataclass(frozen=True)
class Skip:
    reason: SkipReason


class MalformedChangeError(PoisonError):
    """A record on a change topic that is not a Debezium change envelope we can read."""

    def __init__(self, table: CdcTable, reason: str) -> None:
        super().__init__(f"malformed {table.value} change: {reason}")
        self.table = table
        self.reason = reason


# The certificates columns the rules read (consumer.domain.stored.certificate_settings).
RULE_COLUMNS = (
    "required_discussion_posts",
    "required_class_notes",
    "min_percentage_for_completion",
    "min_percentage_for_distinction",
    "assessments_apply_to",
    "custom_assessments",
    "requires_instructor_approval",
)
_SKIPPED_OPS = {
    "r": SkipReason.SNAPSHOT,
    "d": SkipReason.DELETE,
    "t": SkipReason.TRUNCATE,
    "m": SkipReason.MESSAGE,
}


@dataclass(frozen=True)
class _Envelope:
    table: CdcTable
    op: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any]

    def id(self, name: str) -> int:
        """A positive 64-bit id of the after image (JSON true is not 1)."""
        value = self.after.get(name)
        if type(value) is not int or not 0 < value <= _BIGINT_MAX:
            raise MalformedChangeError(self.table, f"after.{name} is {_shown(value)}")
        return value

    def unchanged(self, *columns: str) -> bool:
        """True only when a before image shows every one of ``columns`` as it is now."""
        return self.before is not None and all(
            self.before.get(c) == self.after.get(c) for c in columns
        )


def read_change(
    table: CdcTable, value: bytes | None, *, key: bytes | None = None
) -> Change | Approved | Skip:
    """One change record as a trigger, an approval to announce, or a skip; raises only
    MalformedChangeError."""
    if value is None:
        return Skip(SkipReason.TOMBSTONE)
    envelope = _parse(table, value)
    if isinstance(envelope, Skip):
        return envelope
    _check_key(envelope, key)
    return _READERS[table](envelope)


def _parse(table: CdcTable, value: bytes) -> _Envelope | Skip:
    try:
        document = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise MalformedChangeError(table, f"not JSON ({type(exc).__name__})") from None
    if isinstance(document, dict) and "schema" in document and "payload" in document:
        document = document["payload"]  # the converter's schemas.enable=true wrapper
    if not isinstance(document, dict):
        raise MalformedChangeError(table, f"a JSON {type(document).__name__}, not an envelope")
    op = document.get("op")
    if op in _SKIPPED_OPS:
        return Skip(_SKIPPED_OPS[op])
    if op not in {"c", "u"}:
        raise MalformedChangeError(table, f"op is {_shown(op)}")
    before, after = document.get("before"), document.get("after")
    if not isinstance(after, dict):
        raise MalformedChangeError(table, f"op {op} without an after image")
    if before is not None and not isinstance(before, dict):
        raise MalformedChangeError(table, "before is not an object")
    return _Envelope(table, op, before, after)


def _check_key(envelope: _Envelope, key: bytes | None) -> None:
    """Debezium keys a row by its primary key, ``{"id": N}``: it must name the row changed."""
    if key is None:
        return
    try:
        document = json.loads(key)
    except (ValueError, RecursionError):
        raise MalformedChangeError(envelope.table, "the key is not JSON") from None
    if isinstance(document, dict) and "payload" in document and "schema" in document:
        document = document["payload"]
    if isinstance(document, dict) and "id" in document and document["id"] != envelope.id("id"):
        raise MalformedChangeError(envelope.table, "the key names another row than the value")


def _resource_access(e: _Envelope) -> Change | Skip:
    key = Change(e.id("section_id"), e.id("user_id"))
    if e.after.get("score") is None:
        return Skip(SkipReason.NO_SCORE)
    if e.op == "u" and e.unchanged("score", "out_of", "section_id", "user_id", "resource_id"):
        return Skip(SkipReason.SCORE_UNCHANGED)
    return key


def _post(e: _Envelope) -> Change | Skip:
    """Counted as the facts count: public and not deleted (discussion posts and notes)."""
    key = Change(e.id("section_id"), e.id("user_id"))
    if e.after.get("status") == "deleted" or e.after.get("visibility") != "public":
        return Skip(SkipReason.POST_NOT_COUNTED)
    return key


def _enrollment(e: _Envelope) -> Change | Skip:
    """Enrolled (or reinstated after a suspension): a learner who qualified meanwhile earns."""
    key = Change(e.id("section_id"), e.id("user_id"))
    if e.after.get("status") != "enrolled":
        return Skip(SkipReason.NOT_ENROLLED)
    return key


def _certificate(e: _Envelope) -> Change | Skip:
    section = Change(e.id("section_id"), None)
    if e.op == "u" and e.unchanged(*RULE_COLUMNS, "section_id"):
        return Skip(SkipReason.NO_RULE_CHANGE)
    return section


def _section(e: _Envelope) -> Change | Skip:
    section = Change(e.id("id"), None)
    if e.after.get("certificate_enabled") is not True:
        return Skip(SkipReason.CERTIFICATES_NOT_ENABLED)
    if e.before is not None and e.before.get("certificate_enabled") is True:
        return Skip(SkipReason.CERTIFICATES_NOT_ENABLED)  # already on: nothing new to earn
    return section


def _section_resource(e: _Envelope) -> Change | Skip:
    section = Change(e.id("section_id"), None)
    if e.after.get("resource_type_id") != PAGE_RESOURCE_TYPE:
        return Skip(SkipReason.NOT_A_PAGE)
    if e.op == "u" and e.unchanged("graded", "hidden", "resource_id", "section_id"):
        return Skip(SkipReason.NO_CURRICULUM_CHANGE)
    return section


def _granted_certificate(e: _Envelope) -> Approved | Skip:
    granted = Approved(e.id("id"))
    if e.after.get("state") != "earned":
        return Skip(SkipReason.NOT_EARNED)
    return granted


_READERS: Mapping[CdcTable, Callable[[_Envelope], Change | Approved | Skip]] = {
    CdcTable.RESOURCE_ACCESSES: _resource_access,
    CdcTable.POSTS: _post,
    CdcTable.ENROLLMENTS: _enrollment,
    CdcTable.CERTIFICATES: _certificate,
    CdcTable.SECTIONS: _section,
    CdcTable.SECTION_RESOURCES: _section_resource,
    CdcTable.GRANTED_CERTIFICATES: _granted_certificate,
}


def _shown(value: object) -> str:
    return repr(value)[:40]
