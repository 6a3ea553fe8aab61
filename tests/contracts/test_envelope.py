"""CloudEvents headers, record keys, and the message-level read/build functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import PoisonError
from consumer.events.catalogue import Catalogue, EventType
from consumer.events.codec import Codec
from consumer.events.envelope import (
    InvalidKeyError,
    KeyMismatchError,
    build_headers,
    build_output,
    format_key,
    format_time,
    full_header_problems,
    header_problems,
    parse_headers,
    parse_key,
    read_trigger,
)
from consumer.events.errors import InvalidPayloadError, WrongEventTypeError
from tests.contracts.strategies import datum

NOW = datetime(2026, 8, 1, 12, 0, 0, 123000, tzinfo=UTC)
SCORE = {
    "section_id": 7,
    "user_id": 42,
    "resource_id": 9,
    "score": None,
    "out_of": None,
    "cause": "SCORE_AS_YOU_GO",
    "occurred_at": NOW,
}
SCORE_TYPE = "org.oli.torus.page_score_updated.v1"


def headers(ce_type: str = SCORE_TYPE) -> list[tuple[str, bytes]]:
    return build_headers(event_id="e-1", ce_type=ce_type, source="/torus/test", time=NOW)


def test_build_then_parse_headers() -> None:
    built = headers()
    assert [name for name, _ in built] == [
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "ce_specversion",
        "content-type",
    ]
    assert dict(built)["ce_time"] == b"2026-08-01T12:00:00.123Z"
    envelope = parse_headers(built)
    assert (
        envelope.id,
        envelope.type,
        envelope.source,
        envelope.time,
        envelope.specversion,
        envelope.content_type,
    ) == ("e-1", SCORE_TYPE, "/torus/test", NOW, "1.0", "application/avro")
    assert envelope.problems == ()


def test_format_time_converts_to_utc_and_refuses_naive() -> None:
    assert format_time(NOW.astimezone(timezone(timedelta(hours=-5)))) == "2026-08-01T12:00:00.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 8, 1))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([("ce_type", b"\xff\xfe")], "ce_type: not UTF-8"),
        ([("ce_time", b"yesterday")], "ce_time: 'yesterday' is not RFC 3339"),
        ([("ce_time", b"2026-08-01T12:00:00")], "ce_time: no UTC offset"),
        ([("ce_id", b"a"), ("ce_id", b"b")], "ce_id: repeated, the first value is used"),
    ],
)
def test_unreadable_headers_are_recorded_not_raised(
    raw: list[tuple[str, bytes]], problem: str
) -> None:
    assert problem in parse_headers(raw).problems


def test_no_headers_at_all() -> None:
    envelope = parse_headers(None)
    assert envelope.type is None and envelope.problems == ()
    assert parse_headers([("ce_id", None), ("other", b"x")]).id is None


def test_read_trigger_with_good_headers(catalogue: Catalogue) -> None:
    codec = Codec(catalogue)
    value = codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    trigger = read_trigger(
        codec, value, headers(), key=b"7:42", accepted={EventType.PAGE_SCORE_UPDATED}
    )
    assert (trigger.event_type, trigger.section_id, trigger.user_id, trigger.occurred_at) == (
        EventType.PAGE_SCORE_UPDATED,
        7,
        42,
        NOW,
    )
    assert (trigger.writer_version, trigger.header_problems) == (1, ())


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "ce_type: missing; the payload's schema decides"),
        (headers("org.oli.torus.post_created.v1"), "disagrees with the payload"),
        (headers("something.else"), "disagrees with the payload"),
    ],
)
def test_read_trigger_lets_the_payload_decide(
    catalogue: Catalogue, raw: list[tuple[str, bytes]] | None, problem: str
) -> None:
    codec = Codec(catalogue)
    value = codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    trigger = read_trigger(codec, value, raw, key=b"7:42")
    assert trigger.event_type is EventType.PAGE_SCORE_UPDATED
    assert any(problem in p for p in trigger.header_problems), trigger.header_problems


def test_a_section_wide_trigger_has_no_user(catalogue: Catalogue) -> None:
    codec = Codec(catalogue)
    value = codec.encode(
        EventType.CERTIFICATE_SETTINGS_CHANGED, {"section_id": 3, "occurred_at": NOW}
    )
    trigger = read_trigger(codec, value, None, key=b"3")
    assert (trigger.section_id, trigger.user_id) == (3, None)


def test_the_topic_decides_what_belongs_on_it(catalogue: Catalogue) -> None:
    codec = Codec(catalogue)
    value = codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    with pytest.raises(WrongEventTypeError):
        read_trigger(codec, value, headers(), key=b"7:42", accepted={EventType.POST_CREATED})


@pytest.mark.parametrize(
    "event_type", [EventType.CERTIFICATE_GRANTED, EventType.APPROVAL_REQUESTED]
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_an_output_event_is_never_a_trigger(
    catalogue: Catalogue, event_type: EventType, data: st.DataObject
) -> None:
    codec = Codec(catalogue)
    value = codec.encode(event_type, data.draw(datum(catalogue.latest(event_type).schema)))
    with pytest.raises(WrongEventTypeError, match=f"got {event_type.value}"):
        read_trigger(codec, value, None, key=b"7:42")


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (b"7:43", KeyMismatchError),
        (b"8:42", KeyMismatchError),
        (b"7", KeyMismatchError),
        (None, InvalidKeyError),
        (b"", InvalidKeyError),
        (b"07:42", InvalidKeyError),
        (b"7:42:1", InvalidKeyError),
        (b"7:" + b"9" * 30, InvalidKeyError),
    ],
)
def test_the_key_must_name_the_body(
    catalogue: Catalogue, key: bytes | None, error: type[Exception]
) -> None:
    codec = Codec(catalogue)
    value = codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    with pytest.raises(error):
        read_trigger(codec, value, None, key=key)


def test_a_section_wide_key_names_the_section_only(catalogue: Catalogue) -> None:
    codec = Codec(catalogue)
    value = codec.encode(
        EventType.CERTIFICATE_SETTINGS_CHANGED, {"section_id": 3, "occurred_at": NOW}
    )
    with pytest.raises(KeyMismatchError):
        read_trigger(codec, value, None, key=b"3:1")


def test_an_over_long_varint_is_refused(catalogue: Catalogue) -> None:
    codec = Codec(catalogue)
    value = codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE)
    header = 10  # C3 01 and the 8-byte fingerprint
    assert value[header] == 0x0E  # section_id 7, zig-zag encoded
    # The same 7 as a twelve-byte varint: fastavro alone would read it as a plain 7.
    padded = value[:header] + b"\x8e" + b"\x80" * 10 + b"\x00" + value[header + 1 :]
    with pytest.raises(InvalidPayloadError, match="canonical"):
        read_trigger(codec, padded, None, key=b"7:42")


@pytest.mark.parametrize("field", ["section_id", "user_id"])
@pytest.mark.parametrize("bad", [0, -5])
def test_ids_must_be_positive(catalogue: Catalogue, field: str, bad: int) -> None:
    codec = Codec(catalogue)
    value = codec.encode(EventType.PAGE_SCORE_UPDATED, SCORE | {field: bad})
    with pytest.raises(InvalidPayloadError, match=f"{field} must be a positive id"):
        read_trigger(codec, value, headers(), key=b"7:42")


def test_build_output(catalogue: Catalogue) -> None:
    codec = Codec(catalogue)
    event_id = uuid.uuid4()
    record = {
        "event_id": event_id,
        "granted_certificate_id": 11,
        "guid": uuid.uuid4(),
        "state": "EARNED",
        "with_distinction": False,
        "certificate_label": "Certificate of Completion",
        "certificate_type": "COMPLETION",
        "student": {"user_id": 42, "name": "Doe, Jane", "email": None},
        "course_title": "Chemistry",
        "section_id": 7,
        "section_slug": "chem-101",
        "issued_at": NOW,
    }
    message = build_output(
        codec, EventType.CERTIFICATE_GRANTED, record, source="/cert-consumer", time=NOW
    )
    assert (message.topic, message.key) == ("torus.certificate-granted", b"7:42")
    envelope = parse_headers(message.headers)
    assert (envelope.id, envelope.type) == (str(event_id), "org.oli.torus.certificate_granted.v2")
    # A record without the v2 field reads back with its default.
    assert codec.decode(message.value).record == record | {"cause": "RULES"}


@pytest.mark.parametrize(
    ("section_id", "user_id", "key"),
    [
        (7, 42, b"7:42"),
        (1, None, b"1"),
        (2**63 - 1, 2**63 - 1, b"9223372036854775807:9223372036854775807"),
    ],
)
def test_keys(section_id: int, user_id: int | None, key: bytes) -> None:
    assert format_key(section_id, user_id) == key
    assert parse_key(key) == (section_id, user_id)


@pytest.mark.parametrize(
    "key",
    [
        None,
        b"",
        b":",
        b"7:",
        b":42",
        b"0:1",
        b"1:0",
        b"-1:2",
        b"07:1",
        b"1:2:3",
        b"a:b",
        b" 1:2",
        b"1:2\n",
        b"9223372036854775808:1",
        b"1" * 40,
        "٣:٤".encode(),
        b"1:2\x00",
    ],
)
def test_garbage_keys_are_typed_errors(key: bytes | None) -> None:
    with pytest.raises(InvalidKeyError) as caught:
        parse_key(key)
    assert caught.value.key == key
    assert isinstance(caught.value, PoisonError)


@pytest.mark.parametrize(("section_id", "user_id"), [(0, 1), (1, 0), (-1, None), (2**63, 1)])
def test_format_key_refuses_impossible_ids(section_id: int, user_id: int | None) -> None:
    with pytest.raises(ValueError, match="positive 64-bit"):
        format_key(section_id, user_id)


@given(
    section_id=st.integers(min_value=1, max_value=2**63 - 1),
    user_id=st.none() | st.integers(min_value=1, max_value=2**63 - 1),
)
def test_key_round_trip(section_id: int, user_id: int | None) -> None:
    assert parse_key(format_key(section_id, user_id)) == (section_id, user_id)


@given(key=st.binary(max_size=50))
def test_parse_key_never_raises_anything_else(key: bytes) -> None:
    try:
        section_id, user_id = parse_key(key)
    except InvalidKeyError:
        return
    assert format_key(section_id, user_id) == key


HEADER_VALUES = st.sampled_from(
    [
        b"org.oli.torus.page_score_updated.v1",
        b"org.oli.torus.post_created.v1",
        b"2026-08-01T12:00:00.123Z",
        b"2026-08-01T12:00:00",
        b"yesterday",
        b"\xff\xfe",
        "caf\u00e9".encode(),
        b"e-1",
        b"",
    ]
)
HEADER_NAMES = st.sampled_from(["ce_id", "ce_type", "ce_time", "ce_source", "content-type"])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(HEADER_NAMES, st.one_of(HEADER_VALUES, st.none())), max_size=7),
    st.sampled_from([EventType.PAGE_SCORE_UPDATED, EventType.POST_CREATED]),
)
def test_the_quick_header_check_says_what_the_full_reading_says(
    raw: list[tuple[str, bytes | None]], event_type: EventType
) -> None:
    assert header_problems(raw, event_type) == full_header_problems(raw, event_type)


def test_well_formed_headers_have_no_problem() -> None:
    assert header_problems(headers(), EventType.PAGE_SCORE_UPDATED) == ()
