"""What can go wrong turning bytes into one of our records, or a record into bytes.

    PoisonError
    └── CodecError
        ├── UnknownFramingError      first bytes are neither framing
        ├── TruncatedRecordError     shorter than its framing header
        ├── UnknownSchemaError       fingerprint or schema id that resolves to no known schema
        ├── IncompatibleSchemaError  writer schema that cannot resolve into the reader schema
        ├── WrongEventTypeError      a valid record of another event type than expected
        └── InvalidPayloadError      the Avro body does not decode (or leaves bytes over)
    TransientError
    ├── RegistryUnavailableError     the registry did not answer
    └── UnregisteredSchemaError      an output schema is not registered under its subject (a
                                     deployment step missed: the event waits, it is not lost)
    FatalError
    └── EncodeError                  an output record does not fit its schema, or is unregistered

Each error carries what went wrong as attributes (framing, prefix, fingerprint, schema id,
event type, reason), so a dead-letter header or a log line can say exactly why.
"""

from __future__ import annotations

import enum

from consumer.errors import FatalError, PoisonError, TransientError
from consumer.events.catalogue import EventType


class Framing(enum.Enum):
    """How the writer schema of a value is named."""

    CONFLUENT = "confluent"
    SINGLE_OBJECT = "single_object"


class CodecError(PoisonError):
    """A value that can never be decoded; ``framing`` is None when it could not be told."""

    def __init__(self, message: str, *, framing: Framing | None = None) -> None:
        super().__init__(message)
        self.framing = framing


class UnknownFramingError(CodecError):
    """The first bytes are neither 0x00 nor 0xC3 0x01; ``prefix`` holds up to two of them."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__(f"unknown framing, value starts with {prefix.hex() or 'nothing'}")
        self.prefix = prefix


class TruncatedRecordError(CodecError):
    """The value is shorter than its framing's header (``length`` < ``needed`` bytes)."""

    def __init__(self, framing: Framing | None, length: int, needed: int) -> None:
        super().__init__(f"value of {length} bytes, header needs {needed}", framing=framing)
        self.length = length
        self.needed = needed


class UnknownSchemaError(CodecError):
    """The fingerprint or registry id names no schema of ours; ``reason`` says which part."""

    def __init__(
        self,
        framing: Framing,
        reason: str,
        *,
        fingerprint: bytes | None = None,
        schema_id: int | None = None,
    ) -> None:
        named = f"fingerprint {fingerprint.hex()}" if fingerprint is not None else f"id {schema_id}"
        super().__init__(f"unknown writer schema {named}: {reason}", framing=framing)
        self.fingerprint = fingerprint
        self.schema_id = schema_id
        self.reason = reason


class IncompatibleSchemaError(CodecError):
    """The writer schema (registry ``schema_id``) cannot resolve into our reader schema."""

    def __init__(self, schema_id: int, event_type: EventType, problems: tuple[str, ...]) -> None:
        super().__init__(
            f"writer schema id {schema_id} cannot be read as the latest {event_type.value}: "
            + "; ".join(problems),
            framing=Framing.CONFLUENT,
        )
        self.schema_id = schema_id
        self.event_type = event_type
        self.problems = problems


class WrongEventTypeError(CodecError):
    """A well-formed ``actual`` record where only the ``expected`` types belong (its topic's)."""

    def __init__(
        self, framing: Framing, expected: tuple[EventType, ...], actual: EventType
    ) -> None:
        names = " or ".join(sorted(e.value for e in expected)) or "nothing"
        super().__init__(f"expected {names}, got {actual.value}", framing=framing)
        self.expected = expected
        self.actual = actual


class InvalidPayloadError(CodecError):
    """The Avro body does not decode with its writer schema; ``reason`` is fastavro's words."""

    def __init__(self, framing: Framing, event_type: EventType, reason: str) -> None:
        super().__init__(f"invalid {event_type.value} payload: {reason}", framing=framing)
        self.event_type = event_type
        self.reason = reason


class RegistryUnavailableError(TransientError):
    """The schema registry failed to answer (``operation`` says what was asked); retry later."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"schema registry unavailable during {operation}: {reason}")
        self.operation = operation
        self.reason = reason


class UnregisteredSchemaError(TransientError):
    """``schema_file`` is not registered under ``subject``: outputs wait until it is."""

    def __init__(self, subject: str, schema_file: str, reason: str) -> None:
        super().__init__(
            f"{schema_file} is not registered under {subject}; run `cert-consumer schemas "
            f"register`: {reason[:200]}"
        )
        self.subject = subject
        self.schema_file = schema_file


class EncodeError(FatalError):
    """An output record cannot be encoded: a bug or an unregistered schema, not bad input."""

    def __init__(self, event_type: EventType, reason: str) -> None:
        super().__init__(f"cannot encode {event_type.value}: {reason}")
        self.event_type = event_type
        self.reason = reason
