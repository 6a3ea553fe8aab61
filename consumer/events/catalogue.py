"""The schema catalogue: every event type, every published version, and their compatibility.

Owns the mapping between the ``schemas/`` folder (``<name>.v<N>.avsc``, one file per event type
and version, every published version kept) and what the rest of the service needs: the latest
(reader) schema of each event type, the schema behind a CRC-64-AVRO fingerprint, the CloudEvents
``ce_type`` of each version and the default topic of each event type. Compatibility between
versions is ``consumer.events.compatibility``'s job.

Where the schemas live: ``schemas/`` at the repository root is the single source. The package
reaches it through the link ``consumer/schemas`` (no copy that could drift), and a built wheel
carries the files as package data; :func:`locate_schemas_dir` uses that folder unless
CERT_CONSUMER_SCHEMAS_DIR names another (read by ``consumer.config``).

Imports fastavro, never confluent_kafka: the registry is the codec's and the CLI's business.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import SchemaParseException, fingerprint, parse_schema
from fastavro.schema import to_parsing_canonical_form as canonical_form

from consumer.errors import ConfigError

CE_TYPE_PREFIX = "org.oli.torus."
_FILE_NAME = re.compile(r"(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc")
_CE_TYPE = re.compile(r"org\.oli\.torus\.(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)")

Schema = dict[str, Any]


class Direction(enum.Enum):
    """Whether the service consumes (a trigger) or produces (an effect) an event type."""

    INPUT = "input"
    OUTPUT = "output"


class EventType(enum.StrEnum):
    """The event types this service knows; the value is the file-name stem in ``schemas/``."""

    PAGE_SCORE_UPDATED = "page_score_updated"
    POST_CREATED = "post_created"
    CERTIFICATE_SETTINGS_CHANGED = "certificate_settings_changed"
    CERTIFICATE_GRANTED = "certificate_granted"
    APPROVAL_REQUESTED = "approval_requested"

    @property
    def direction(self) -> Direction:
        """Inputs are triggers from Torus; outputs are published by the relay."""
        if self in (EventType.CERTIFICATE_GRANTED, EventType.APPROVAL_REQUESTED):
            return Direction.OUTPUT
        return Direction.INPUT

    @property
    def default_topic(self) -> str:
        """Topic name when configuration does not override it; one topic per event type."""
        return "torus." + self.value.replace("_", "-")

    def ce_type(self, version: int) -> str:
        """The CloudEvents type of one version, e.g. ``org.oli.torus.post_created.v1``."""
        return f"{CE_TYPE_PREFIX}{self.value}.v{version}"


_EVENT_NAMES = frozenset(e.value for e in EventType)


@functools.lru_cache(maxsize=256)
def parse_ce_type(ce_type: str) -> tuple[EventType, int] | None:
    """Split a ``ce_type`` into event type and version; None when it is not one of ours.

    Cached: it runs once per consumed message, and the distinct values are few.
    """
    match = _CE_TYPE.fullmatch(ce_type)
    if match is None or match["name"] not in _EVENT_NAMES:
        return None
    return EventType(match["name"]), int(match["version"])


@dataclass(frozen=True)
class SchemaVersion:
    """One published schema: the parsed form for fastavro plus its identities."""

    event_type: EventType
    version: int
    path: Path
    schema: Schema
    canonical_form: str
    fingerprint: bytes

    @property
    def ce_type(self) -> str:
        """The CloudEvents type naming exactly this version."""
        return self.event_type.ce_type(self.version)

    @property
    def full_name(self) -> str:
        """The record's fully qualified Avro name, stable across versions of one event type."""
        return str(self.schema["name"])


@dataclass(frozen=True)
class Catalogue:
    """All published schema versions, in (event type, version) order."""

    versions: tuple[SchemaVersion, ...]

    def __iter__(self) -> Iterator[SchemaVersion]:
        return iter(self.versions)

    def history(self, event_type: EventType) -> tuple[SchemaVersion, ...]:
        """Every version of one event type, oldest first."""
        return tuple(v for v in self.versions if v.event_type is event_type)

    def latest(self, event_type: EventType) -> SchemaVersion:
        """The reader schema: every older version decodes into this shape."""
        return self.history(event_type)[-1]

    @functools.cached_property
    def _by_fingerprint(self) -> Mapping[bytes, SchemaVersion]:
        return {v.fingerprint: v for v in self.versions}

    def by_fingerprint(self, value: bytes) -> SchemaVersion | None:
        """The version whose canonical form has this CRC-64-AVRO fingerprint (little-endian)."""
        return self._by_fingerprint.get(value)

    def by_full_name(self, full_name: str) -> EventType | None:
        """The event type whose record has this Avro name (for registry schemas we lack)."""
        return next((v.event_type for v in self.versions if v.full_name == full_name), None)


def crc64_avro(schema: Schema) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of the Parsing Canonical Form."""
    return bytes.fromhex(fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def locate_schemas_dir(configured: str | Path = "") -> Path:
    """The schemas folder: ``configured`` if given (CERT_CONSUMER_SCHEMAS_DIR), else the one
    shipped in the package (``consumer/schemas``, which links to the checkout's ``schemas/``)."""
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "schemas"


def load_catalogue(directory: Path) -> Catalogue:
    """Load and validate every schema in ``directory``; parsed once per folder and cached.

    Raises ConfigError listing every problem: a bad folder is a deployment error, found at start.
    """
    return _load_catalogue(directory.resolve())


@functools.cache
def _load_catalogue(directory: Path) -> Catalogue:
    if not directory.is_dir():
        problem = f"schemas folder {directory} is not a directory (CERT_CONSUMER_SCHEMAS_DIR)"
        raise ConfigError([problem])
    problems: list[str] = []
    versions: list[SchemaVersion] = []
    for path in sorted(directory.glob("*.avsc")):
        try:
            versions.append(_load_version(path))
        except (OSError, ValueError, SchemaParseException) as exc:
            problems.append(f"{path.name}: {exc}")
    versions.sort(key=lambda v: (v.event_type.value, v.version))
    problems.extend(_catalogue_problems(versions))
    if problems:
        raise ConfigError(problems)
    return Catalogue(tuple(versions))


def _load_version(path: Path) -> SchemaVersion:
    match = _FILE_NAME.fullmatch(path.name)
    if match is None or match["name"] not in _EVENT_NAMES:
        raise ValueError("file name is not <event_type>.v<N>.avsc of a known event type")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ValueError("top-level schema must be a record")
    parsed = parse_schema(raw)
    assert isinstance(parsed, dict)  # a record in, a record out
    form = canonical_form(parsed)
    return SchemaVersion(
        event_type=EventType(match["name"]),
        version=int(match["version"]),
        path=path,
        schema=parsed,
        canonical_form=form,
        fingerprint=bytes.fromhex(fingerprint(form, "CRC-64-AVRO")),
    )


def _catalogue_problems(versions: list[SchemaVersion]) -> Iterator[str]:
    """Versions must run 1..N per type, keep one record name, and fingerprints must be unique."""
    for event_type in EventType:
        numbers = [v.version for v in versions if v.event_type is event_type]
        if numbers != list(range(1, len(numbers) + 1)):
            yield f"{event_type.value}: versions {numbers} are not 1..N without gaps"
        names = {v.full_name for v in versions if v.event_type is event_type}
        if len(names) > 1:
            yield f"{event_type.value}: record name changed across versions: {sorted(names)}"
    seen: dict[bytes, str] = {}
    for v in versions:
        if v.fingerprint in seen:
            yield f"{v.path.name}: same canonical form as {seen[v.fingerprint]}"
        seen[v.fingerprint] = v.path.name
