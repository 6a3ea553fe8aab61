"""Property-based fuzzing of the whole record-to-trigger path (``consumer.batches.classify``):
arbitrary and mutated values, keys and headers on every input topic. The path returns a trigger
or a poison classification and never raises; no input reaches an unforeseen exception (which
would be dead-lettered as ``UnexpectedRecordError``: safe, but a gap in our own checks); and a
trigger is only ever what its topic carries, for the ids its key names.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import UnexpectedRecordError
from consumer.events.catalogue import Catalogue, EventType, load_catalogue, locate_schemas_dir
from consumer.events.codec import Codec
from consumer.events.envelope import Trigger, format_key, parse_key
from consumer.pipeline.batches import Poison, Routes, classify
from tests.contracts.strategies import datum

CATALOGUE: Catalogue = load_catalogue(locate_schemas_dir())
CODEC = Codec(CATALOGUE)
ACCEPTED = {
    "scores": frozenset({EventType.PAGE_SCORE_UPDATED}),
    "posts": frozenset({EventType.POST_CREATED}),
    "settings": frozenset({EventType.CERTIFICATE_SETTINGS_CHANGED}),
    "activity": frozenset({EventType.PAGE_SCORE_UPDATED, EventType.POST_CREATED}),
}
ROUTES = Routes(ACCEPTED)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_BIG = 2**63

ids = st.one_of(
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=-_BIG * 4, max_value=_BIG * 4),
)
keys = st.one_of(
    st.none(),
    st.binary(max_size=48),
    st.builds(format_key, st.integers(1, 50), st.integers(1, 50)),
    st.builds(lambda s: format_key(s, None), st.integers(1, 50)),
    st.builds(lambda s, u: f"{s}:{u}".encode(), ids, ids),
)
header_values = st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=40))
header_lists = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(["ce_type", "ce_id", "ce_time", "ce_specversion"]), st.text()),
        header_values,
    ),
    max_size=6,
)


@st.composite
def values(draw: st.DrawFn) -> bytes:
    """Random bytes, valid records of any type (ids included), and mutations of those."""
    kind = draw(st.sampled_from(["random", "valid", "mutated", "framed"]))
    if kind == "random":
        return draw(st.binary(max_size=96))
    event_type = draw(st.sampled_from(list(EventType)))
    latest = CATALOGUE.latest(event_type)
    if kind == "framed":
        return b"\xc3\x01" + latest.fingerprint + draw(st.binary(max_size=96))
    record: dict[str, Any] = draw(datum(latest.schema))
    for field in ("section_id", "user_id"):
        if field in record and draw(st.booleans()):
            record[field] = draw(st.integers(1, 50))
    value = CODEC.encode(event_type, record)
    if kind == "valid":
        return value
    cut = draw(st.integers(0, len(value)))
    flip = draw(st.integers(0, 255))
    at = draw(st.integers(0, max(0, len(value) - 1)))
    mutated = bytearray(value[:cut] if draw(st.booleans()) else value)
    if mutated:
        mutated[at % len(mutated)] ^= flip
    return bytes(mutated)


def _check(outcome: Trigger | Poison, topic: str, key: bytes | None) -> None:
    if isinstance(outcome, Poison):
        assert not isinstance(outcome.error, UnexpectedRecordError), outcome.error
        return
    assert outcome.event_type in ACCEPTED[topic]
    assert parse_key(key) == (outcome.section_id, outcome.user_id)
    assert 0 < outcome.section_id < _BIG
    assert outcome.user_id is None or 0 < outcome.user_id < _BIG


@FUZZ
@given(
    topic=st.sampled_from(sorted(ACCEPTED)),
    value=st.one_of(st.none(), values()),
    key=keys,
    headers=st.one_of(st.none(), header_lists),
)
def test_any_record_is_a_trigger_or_classified_poison(
    topic: str, value: bytes | None, key: bytes | None, headers: list[Any] | None
) -> None:
    msg = Message(topic=topic, partition=0, offset=0, key=key, value=value, headers=headers)
    _check(classify(CODEC, msg, ROUTES), topic, key)


@FUZZ
@given(
    topic=st.sampled_from(sorted(ACCEPTED)),
    event_type=st.sampled_from(list(EventType)),
    data=st.data(),
)
def test_a_valid_record_with_its_own_key_is_a_trigger_only_on_its_own_topic(
    topic: str, event_type: EventType, data: st.DataObject
) -> None:
    record: dict[str, Any] = data.draw(datum(CATALOGUE.latest(event_type).schema))
    section_id = record["section_id"] = data.draw(st.integers(1, 2**63 - 1))
    user_id = None
    if "user_id" in record:
        user_id = record["user_id"] = data.draw(st.integers(1, 2**63 - 1))
    if event_type.direction.value == "output":
        user_id = record["student"]["user_id"]
    key = format_key(section_id, user_id) if user_id is None or user_id > 0 else b"x"
    msg = Message(topic=topic, key=key, value=CODEC.encode(event_type, record))
    outcome = classify(CODEC, msg, ROUTES)
    _check(outcome, topic, key)
    assert isinstance(outcome, Trigger) == (event_type in ACCEPTED[topic])
