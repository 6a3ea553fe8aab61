"""Avro value bytes to records and back, in two framings told apart by their first bytes.

    0x00 + 4-byte big-endian schema id       Confluent wire format, writer schema from a registry
    0xC3 0x01 + 8-byte little-endian CRC-64  Avro single-object encoding, writer from the catalogue

Every decoded record is resolved from its writer schema into the latest (reader) schema of its
event type, so producers on older or newer versions all decode into one shape. Decoding raises
nothing but :class:`CodecError` (poison: dead-letter it) or :class:`RegistryUnavailableError`
(transient: the registry is down, retry); the error tree is in ``consumer.codec_errors``.
Encoding uses single-object framing, or Confluent framing with the registered id when a
registry client is passed in.

Imports fastavro and the registry client type; knows nothing of Kafka messages or headers.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, parse_schema
from fastavro.validation import ValidationError, validate

from consumer.events.canonical import Sizer, sizer
from consumer.events.catalogue import (
    Catalogue,
    EventType,
    SchemaVersion,
    crc64_avro,
)
from consumer.events.compatibility import resolution_problems
from consumer.events.errors import (
    EncodeError,
    Framing,
    IncompatibleSchemaError,
    InvalidPayloadError,
    RegistryUnavailableError,
    TruncatedRecordError,
    UnknownFramingError,
    UnknownSchemaError,
    UnregisteredSchemaError,
    WrongEventTypeError,
)

CONFLUENT_MAGIC = b"\x00"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_CONFLUENT_HEADER = struct.Struct(">bI")
_SINGLE_OBJECT_HEADER_SIZE = len(SINGLE_OBJECT_MAGIC) + 8
_HTTP_NOT_FOUND = 404
_NOT_CANONICAL = "not the canonical Avro encoding (an over-long varint or a padded value)"
T = TypeVar("T")

# What fastavro raises on bytes that do not match the writer schema: short reads, bad UTF-8,
# enum indexes and union branches out of range, lengths that overflow, unparsable uuids, dates
# out of range. Listed rather than caught as Exception so a bug in our own code still surfaces.
_AVRO_BODY_ERRORS = (
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    OverflowError,
    TypeError,
    MemoryError,
    SchemaResolutionError,
)


class Decoded(NamedTuple):
    """A record in the latest shape of its event type (one per consumed record: a named tuple).

    ``writer_version`` is the catalogue version it was written with; None for a registry schema
    that is compatible but not in our catalogue (a newer producer).
    """

    event_type: EventType
    writer_version: int | None
    framing: Framing
    record: dict[str, Any]


@dataclass(frozen=True)
class _Writer:
    """What decoding needs about a writer schema; ``reader`` None means "same as writer"."""

    event_type: EventType
    version: int | None
    schema: dict[str, Any]
    reader: dict[str, Any] | None
    size: Sizer | None  # the canonical length of a decoded record; None: re-encode to check


class Codec:
    """Encodes and decodes the service's events; holds per-schema caches, no connections.

    ``registry`` is an already-built client (the wiring module builds it from settings), or
    None to run on the catalogue alone.
    """

    def __init__(self, catalogue: Catalogue, registry: SchemaRegistryClient | None = None) -> None:
        self._catalogue = catalogue
        self._registry = registry
        self._by_fingerprint: dict[bytes, _Writer] = {}
        self._by_schema_id: dict[int, _Writer] = {}
        self._registered_ids: dict[tuple[str, int], int] = {}

    @property
    def uses_registry(self) -> bool:
        """Whether outputs are framed with registry ids (Confluent) rather than fingerprints."""
        return self._registry is not None

    @property
    def catalogue(self) -> Catalogue:
        """The schemas this codec reads into and writes with."""
        return self._catalogue

    def decode(
        self, value: bytes | None, *, accepted: Collection[EventType] | None = None
    ) -> Decoded:
        """Decode one value; ``accepted`` rejects records of any other event type, before
        their body is read."""
        data = value or b""
        framing, writer, body_start = self._writer_of(data)
        if accepted is not None and writer.event_type not in accepted:
            raise WrongEventTypeError(framing, tuple(accepted), writer.event_type)
        body = memoryview(data)[body_start:]
        record = _read_canonical(body, writer, framing)
        if writer.reader is not None:
            record = _read(body, writer, framing, resolve=True)
        return Decoded(writer.event_type, writer.version, framing, record)

    def encode(
        self, event_type: EventType, record: Mapping[str, Any], *, topic: str | None = None
    ) -> bytes:
        """Encode with the latest schema; Confluent framing under ``<topic>-value`` if a
        registry is configured (the schema must already be registered), else single-object.
        """
        latest = self._catalogue.latest(event_type)
        try:
            validate(record, latest.schema, raise_errors=True)
        except ValidationError as exc:
            raise EncodeError(event_type, _describe(exc)) from exc
        buffer = io.BytesIO()
        buffer.write(self._header_for(latest, topic or event_type.default_topic))
        schemaless_writer(buffer, latest.schema, dict(record))
        return buffer.getvalue()

    @property
    def registry(self) -> SchemaRegistryClient | None:
        """The registry client outputs are framed with, if any."""
        return self._registry

    def check_registered(self, event_type: EventType, topic: str) -> None:
        """Raise UnregisteredSchemaError (or RegistryUnavailableError) unless the latest
        schema of ``event_type`` is registered under ``<topic>-value``; no-op without a
        registry. Run at start, so a missed deployment step is found before any event waits."""
        if self._registry is not None:
            self._registered_id(self._registry, self._catalogue.latest(event_type), topic)

    def _header_for(self, latest: SchemaVersion, topic: str) -> bytes:
        if self._registry is None:
            return SINGLE_OBJECT_MAGIC + latest.fingerprint
        return _CONFLUENT_HEADER.pack(0, self._registered_id(self._registry, latest, topic))

    def _registered_id(
        self, registry: SchemaRegistryClient, latest: SchemaVersion, topic: str
    ) -> int:
        """The id of ``latest`` under ``<topic>-value``; producers never register on the fly."""
        subject = f"{topic}-value"
        key = (subject, latest.version)
        if key not in self._registered_ids:
            schema = RegistrySchema(latest.path.read_text(encoding="utf-8"), "AVRO")
            try:
                found = call_registry("lookup", lambda: registry.lookup_schema(subject, schema))
            except SchemaRegistryError as exc:
                if exc.http_status_code != _HTTP_NOT_FOUND:
                    raise RegistryUnavailableError("lookup", str(exc)) from exc
                raise UnregisteredSchemaError(subject, latest.path.name, str(exc)) from exc
            if found.schema_id is None:
                raise EncodeError(latest.event_type, f"registry returned no id for {subject}")
            self._registered_ids[key] = found.schema_id
        return self._registered_ids[key]

    def _writer_of(self, data: bytes) -> tuple[Framing, _Writer, int]:
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < _CONFLUENT_HEADER.size:
                raise TruncatedRecordError(Framing.CONFLUENT, len(data), _CONFLUENT_HEADER.size)
            _, schema_id = _CONFLUENT_HEADER.unpack_from(data)
            return Framing.CONFLUENT, self._writer_by_id(schema_id), _CONFLUENT_HEADER.size
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < _SINGLE_OBJECT_HEADER_SIZE:
                size = _SINGLE_OBJECT_HEADER_SIZE
                raise TruncatedRecordError(Framing.SINGLE_OBJECT, len(data), size)
            fingerprint = data[2:_SINGLE_OBJECT_HEADER_SIZE]
            return (
                Framing.SINGLE_OBJECT,
                self._writer_by_fingerprint(fingerprint),
                _SINGLE_OBJECT_HEADER_SIZE,
            )
        if data in (b"", SINGLE_OBJECT_MAGIC[:1]):
            raise TruncatedRecordError(None, len(data), _CONFLUENT_HEADER.size)
        raise UnknownFramingError(data[:2])

    def _writer_by_fingerprint(self, fingerprint: bytes) -> _Writer:
        writer = self._by_fingerprint.get(fingerprint)
        if writer is None:
            version = self._catalogue.by_fingerprint(fingerprint)
            if version is None:
                raise UnknownSchemaError(
                    Framing.SINGLE_OBJECT, "not in the catalogue", fingerprint=fingerprint
                )
            writer = self._writer_for(version.event_type, version.version, version.schema)
            self._by_fingerprint[fingerprint] = writer
        return writer

    def _writer_by_id(self, schema_id: int) -> _Writer:
        writer = self._by_schema_id.get(schema_id)
        if writer is None:
            writer = self._fetch_writer(schema_id)
            self._by_schema_id[schema_id] = writer
        return writer

    def _fetch_writer(self, schema_id: int) -> _Writer:
        """Fetch, parse and place a registry schema; every failure but an outage is poison."""
        registry = self._registry
        if registry is None:
            raise UnknownSchemaError(
                Framing.CONFLUENT, "no schema registry configured", schema_id=schema_id
            )
        try:
            fetched = call_registry("get_schema", lambda: registry.get_schema(schema_id))
        except SchemaRegistryError as exc:
            if exc.http_status_code != _HTTP_NOT_FOUND:
                raise RegistryUnavailableError("get_schema", str(exc)) from exc
            raise UnknownSchemaError(
                Framing.CONFLUENT, "not in the registry", schema_id=schema_id
            ) from exc
        schema = _parse_registry_schema(fetched, schema_id)
        event_type = self._catalogue.by_full_name(str(schema.get("name")))
        if event_type is None:
            reason = f"record {schema.get('name')} is not one of our event types"
            raise UnknownSchemaError(Framing.CONFLUENT, reason, schema_id=schema_id)
        known = self._catalogue.by_fingerprint(crc64_avro(schema))
        reader = self._catalogue.latest(event_type).schema
        problems = resolution_problems(schema, reader)
        if problems:
            raise IncompatibleSchemaError(schema_id, event_type, problems)
        return self._writer_for(event_type, known.version if known else None, schema)

    def _writer_for(
        self, event_type: EventType, version: int | None, schema: dict[str, Any]
    ) -> _Writer:
        latest = self._catalogue.latest(event_type)
        same = version == latest.version
        reader = None if same else latest.schema
        return _Writer(event_type, version, schema, reader, sizer(schema))


def _read(body: memoryview, writer: _Writer, framing: Framing, *, resolve: bool) -> dict[str, Any]:
    """The record in ``body``, in the writer's shape or resolved into the reader's."""
    buffer = io.BytesIO(body)
    try:
        record = schemaless_reader(buffer, writer.schema, writer.reader if resolve else None)
    except _AVRO_BODY_ERRORS as exc:
        raise InvalidPayloadError(framing, writer.event_type, _describe(exc)) from exc
    left_over = len(body) - buffer.tell()
    if left_over or not isinstance(record, dict):
        reason = f"{left_over} bytes left over after the record"
        raise InvalidPayloadError(framing, writer.event_type, reason)
    return record


def _read_canonical(body: memoryview, writer: _Writer, framing: Framing) -> dict[str, Any]:
    """The writer-shaped record, refused unless ``body`` is exactly its canonical encoding.

    fastavro accepts varints longer than ten bytes and wraps the ones that overflow, so an
    over-long id could decode as some other, valid-looking id. Where the writer schema can be
    sized (``consumer.events.canonical``), the body's length is compared with the record's
    canonical length; otherwise the record is re-encoded and the bytes compared.
    """
    record = _read(body, writer, framing, resolve=False)
    if writer.size is not None:
        try:
            canonical = writer.size(record) == len(body)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise InvalidPayloadError(framing, writer.event_type, _describe(exc)) from exc
        if not canonical:
            raise InvalidPayloadError(framing, writer.event_type, _NOT_CANONICAL)
        return record
    again = io.BytesIO()
    try:
        schemaless_writer(again, writer.schema, record)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidPayloadError(framing, writer.event_type, _describe(exc)) from exc
    if again.getbuffer() != body:
        raise InvalidPayloadError(framing, writer.event_type, _NOT_CANONICAL)
    return record


def call_registry(operation: str, request: Callable[[], T]) -> T:
    """Run one registry request; an HTTP error answer passes through, anything else is an outage.

    The client surfaces transport failures as exceptions of its HTTP library, which is not ours
    to import, so this adapter boundary is where they are classified as transient.
    """
    try:
        return request()
    except SchemaRegistryError:
        raise
    except Exception as exc:
        raise RegistryUnavailableError(operation, _describe(exc)) from exc


def _parse_registry_schema(fetched: RegistrySchema, schema_id: int) -> dict[str, Any]:
    if fetched.schema_type not in (None, "AVRO"):
        reason = f"schema type {fetched.schema_type} is not AVRO"
        raise UnknownSchemaError(Framing.CONFLUENT, reason, schema_id=schema_id)
    try:
        parsed = parse_schema(json.loads(fetched.schema_str or "null"))
    except (ValueError, TypeError, SchemaParseException) as exc:
        reason = f"unparsable schema: {_describe(exc)}"
        raise UnknownSchemaError(Framing.CONFLUENT, reason, schema_id=schema_id) from exc
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise UnknownSchemaError(Framing.CONFLUENT, "not a record schema", schema_id=schema_id)
    return parsed


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
