"""Debezium change records as triggers, approvals, skips or poison: the table the topic names
decides, then the op, then the after image (and the before image when the table has one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import PoisonError
from consumer.events.cdc import (
    Approved,
    CdcTable,
    Change,
    MalformedChangeError,
    Skip,
    SkipReason,
    read_change,
)

T = CdcTable


def envelope(
    op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None, *, wrap=False
) -> bytes:
    body = {"before": before, "after": after, "op": op, "source": {"table": "x"}, "ts_ms": 1}
    if wrap:  # the JsonConverter with schemas.enable=true
        body = {"schema": {"type": "struct"}, "payload": body}
    return json.dumps(body).encode()


SCORE = {"id": 1, "section_id": 7, "user_id": 42, "resource_id": 3, "score": 8.0, "out_of": 10.0}
POST = {"id": 5, "section_id": 7, "user_id": 42, "status": "approved", "visibility": "public"}
CERT = {
    "id": 2,
    "section_id": 7,
    "required_discussion_posts": 1,
    "required_class_notes": 0,
    "min_percentage_for_completion": 50.0,
    "min_percentage_for_distinction": 90.0,
    "assessments_apply_to": "all",
    "custom_assessments": [],
    "requires_instructor_approval": False,
    "title": "Chem",
}


@pytest.mark.parametrize("wrap", [False, True], ids=["plain", "with-schema"])
@pytest.mark.parametrize(
    ("table", "op", "after", "before", "expected"),
    [
        (T.RESOURCE_ACCESSES, "c", SCORE, None, Change(7, 42)),
        (T.RESOURCE_ACCESSES, "u", SCORE, None, Change(7, 42)),  # DEFAULT identity: no before
        (T.RESOURCE_ACCESSES, "u", SCORE, SCORE | {"score": 2.0}, Change(7, 42)),
        (T.RESOURCE_ACCESSES, "u", SCORE, SCORE, Skip(SkipReason.SCORE_UNCHANGED)),  # FULL
        (T.RESOURCE_ACCESSES, "u", SCORE | {"score": "NaN"}, None, Change(7, 42)),
        (T.RESOURCE_ACCESSES, "c", SCORE | {"score": None}, None, Skip(SkipReason.NO_SCORE)),
        (T.POSTS, "c", POST, None, Change(7, 42)),
        (T.POSTS, "u", POST | {"status": "deleted"}, None, Skip(SkipReason.POST_NOT_COUNTED)),
        (T.POSTS, "c", POST | {"visibility": "private"}, None, Skip(SkipReason.POST_NOT_COUNTED)),
        (T.ENROLLMENTS, "u", {"id": 9, "section_id": 7, "user_id": 42, "status": "enrolled"},
         None, Change(7, 42)),
        (T.ENROLLMENTS, "u", {"id": 9, "section_id": 7, "user_id": 42, "status": "suspended"},
         None, Skip(SkipReason.NOT_ENROLLED)),
        (T.CERTIFICATES, "u", CERT, None, Change(7, None)),
        (T.CERTIFICATES, "u", CERT, CERT | {"title": "old"}, Skip(SkipReason.NO_RULE_CHANGE)),
        (T.CERTIFICATES, "u", CERT, CERT | {"required_class_notes": 2}, Change(7, None)),
        (T.CERTIFICATES, "c", CERT, None, Change(7, None)),
        (T.SECTIONS, "u", {"id": 7, "certificate_enabled": True}, None, Change(7, None)),
        (T.SECTIONS, "u", {"id": 7, "certificate_enabled": True}, {"id": 7,
         "certificate_enabled": True}, Skip(SkipReason.CERTIFICATES_NOT_ENABLED)),
        (T.SECTIONS, "u", {"id": 7, "certificate_enabled": False}, None,
         Skip(SkipReason.CERTIFICATES_NOT_ENABLED)),
        (T.SECTION_RESOURCES, "u", {"id": 4, "section_id": 7, "resource_id": 3,
         "resource_type_id": 1, "graded": True, "hidden": False}, None, Change(7, None)),
        (T.SECTION_RESOURCES, "u", {"id": 4, "section_id": 7, "resource_id": 3,
         "resource_type_id": 2, "graded": True, "hidden": False}, None,
         Skip(SkipReason.NOT_A_PAGE)),
        (T.GRANTED_CERTIFICATES, "u", {"id": 11, "state": "earned"}, None, Approved(11)),
        (T.GRANTED_CERTIFICATES, "u", {"id": 11, "state": "denied"}, None,
         Skip(SkipReason.NOT_EARNED)),
    ],
)  # fmt: skip
def test_each_table_maps_its_changes(
    table: CdcTable, op: str, after: dict, before: dict | None, expected: object, wrap: bool
) -> None:
    assert read_change(table, envelope(op, after, before, wrap=wrap)) == expected


@pytest.mark.parametrize("table", list(CdcTable))
@pytest.mark.parametrize(
    ("op", "reason"),
    [
        ("r", SkipReason.SNAPSHOT),
        ("d", SkipReason.DELETE),
        ("t", SkipReason.TRUNCATE),
        ("m", SkipReason.MESSAGE),
    ],
)
def test_snapshots_deletes_and_truncates_are_skipped_on_every_table(
    table: CdcTable, op: str, reason: SkipReason
) -> None:
    assert read_change(table, envelope(op, None, {"id": 1})) == Skip(reason)


def test_a_tombstone_is_skipped() -> None:
    assert read_change(T.POSTS, None, key=b'{"id": 5}') == Skip(SkipReason.TOMBSTONE)


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xc3\x01not json", None, "not JSON"),
        (b"[1, 2]", None, "a JSON list"),
        (b'{"op": "x", "after": {}}', None, "op is 'x'"),
        (b'{"op": "u", "after": null}', None, "without an after image"),
        (envelope("c", SCORE | {"section_id": 0}), None, "after.section_id is 0"),
        (envelope("c", SCORE | {"user_id": True}), None, "after.user_id is True"),
        (envelope("c", SCORE | {"user_id": 2**63}), None, "after.user_id is 9223372036854775808"),
        (envelope("c", SCORE | {"user_id": "42"}), None, "after.user_id is '42'"),
        (envelope("c", SCORE), b'{"id": 2}', "the key names another row"),
        (envelope("c", SCORE), b"{", "the key is not JSON"),
        (b"[" * 100_000, None, "not JSON"),
    ],
)
def test_a_broken_envelope_is_poison_with_its_reason(
    value: bytes, key: bytes | None, reason: str
) -> None:
    with pytest.raises(MalformedChangeError, match="malformed") as caught:
        read_change(T.RESOURCE_ACCESSES, value, key=key)
    assert reason in caught.value.reason
    assert isinstance(caught.value, PoisonError)


def test_the_key_may_name_the_row() -> None:
    assert read_change(T.RESOURCE_ACCESSES, envelope("c", SCORE), key=b'{"id": 1}') == Change(7, 42)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    table=st.sampled_from(list(CdcTable)),
    op=st.sampled_from(["c", "u", "r", "d", "x", None]),
    after=st.one_of(st.none(), st.dictionaries(st.sampled_from(sorted(CERT | SCORE)), json_values)),
    before=st.one_of(st.none(), st.dictionaries(st.sampled_from(sorted(SCORE)), json_values)),
)
def test_any_envelope_is_an_outcome_or_classified_poison(
    table: CdcTable, op: str | None, after: dict | None, before: dict | None
) -> None:
    value = json.dumps({"op": op, "after": after, "before": before}).encode()
    try:
        outcome = read_change(table, value)
    except MalformedChangeError:
        return
    assert isinstance(outcome, Change | Approved | Skip)
    if isinstance(outcome, Change):
        assert 0 < outcome.section_id < 2**63
        assert outcome.user_id is None or 0 < outcome.user_id < 2**63
