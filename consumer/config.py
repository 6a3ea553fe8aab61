"""Settings: read once from the environment at start-up, validated, then frozen.

Every variable has the prefix ``CERT_CONSUMER_``. Each field below documents its variable and
default. ``load_settings`` reports every bad value at once in one ``ConfigError``; secrets are
never echoed. Any librdkafka property passes through as ``CERT_CONSUMER_KAFKA_<NAME>`` with
dots written as underscores (``CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` ->
``security.protocol``) and a literal underscore doubled (``CERT_CONSUMER_KAFKA_LOG__LEVEL`` ->
``log_level``); these apply to every Kafka client the service makes.

Secrets come from the environment or from mounted files, as Kubernetes mounts a Secret: any
variable may instead be given as ``<NAME>_FILE``, the path of a file holding its value
(``CERT_CONSUMER_DATABASE_PASSWORD_FILE``, ``CERT_CONSUMER_KAFKA_SASL_PASSWORD_FILE``), never
on a command line, where ``ps`` shows it. Settings never print a password: not in their repr,
not in a problem reported here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from consumer.errors import ConfigError
from consumer.events.catalogue import EventType, locate_schemas_dir
from consumer.events.cdc import CdcTable

PREFIX = "CERT_CONSUMER_"
KAFKA_PREFIX = PREFIX + "KAFKA_"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("auto", "json", "console")
_ROLES = ("ingest", "evaluate", "relay")
_GROUP_PROTOCOLS = ("consumer", "classic")
# Variables that no longer exist, and what replaced them: set, they are an error, not ignored.
_REPLACED = {
    "INPUT_TOPICS": "CERT_CONSUMER_SCORES_TOPIC, CERT_CONSUMER_POSTS_TOPIC and "
    "CERT_CONSUMER_SETTINGS_TOPIC (one topic per event type, so a topic accepts only its own)",
}
# Variables of the same prefix that are not the service's settings: the test suite's and the
# benchmark's own (CERT_CONSUMER_TEST_KAFKA_BOOTSTRAP, ...), and the scripts' jar cache.
_NOT_SETTINGS = (PREFIX + "TEST_", PREFIX + "BENCH_", PREFIX + "FAULTS", PREFIX + "CACHE")
# Settings below that are not librdkafka properties although they start with KAFKA_.
_RESERVED_KAFKA_NAMES = {"BOOTSTRAP_SERVERS"}


FILE_SUFFIX = "_FILE"
# librdkafka properties whose values are secrets: never shown (a repr, a problem, a log line).
SECRET_KAFKA_PROPERTIES = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl.truststore.password",
    }
)


def _setting(env: str, default: Any, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, repr=not secret, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All configuration of the service; build it with ``load_settings``."""

    database_url: str = _setting(
        "DATABASE_URL",
        "",
        "SQLAlchemy URL of the Torus database (postgresql+psycopg://user@host/db?sslmode="
        "verify-full&sslrootcert=/path/ca.pem); its password is better given apart.",
        secret=True,
    )
    database_password: str = _setting(
        "DATABASE_PASSWORD",
        "",
        "Password of the URL's database role, kept out of the URL (from a Secret: "
        "CERT_CONSUMER_DATABASE_PASSWORD_FILE); empty = the URL's own, if any.",
        secret=True,
    )
    bootstrap_servers: str = _setting(
        "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka bootstrap servers."
    )
    group_id: str = _setting("GROUP_ID", "cert-consumer", "Kafka consumer group of the ingest.")
    group_protocol: str = _setting(
        "GROUP_PROTOCOL",
        "consumer",
        "Consumer group protocol: consumer (KIP-848, Kafka 4) or classic (cooperative-sticky).",
    )
    group_instance_id: str = _setting(
        "GROUP_INSTANCE_ID",
        "",
        "Static group membership id, unique per process (the pod name); empty = dynamic.",
    )
    scores_topic: str = _setting(
        "SCORES_TOPIC",
        EventType.PAGE_SCORE_UPDATED.default_topic,
        "Input topic of page_score_updated events only; empty = not consumed.",
    )
    posts_topic: str = _setting(
        "POSTS_TOPIC",
        EventType.POST_CREATED.default_topic,
        "Input topic of post_created events only; empty = not consumed.",
    )
    settings_topic: str = _setting(
        "SETTINGS_TOPIC",
        EventType.CERTIFICATE_SETTINGS_CHANGED.default_topic,
        "Input topic of certificate_settings_changed events only (the one event that fans "
        "out to a whole section); empty = not consumed.",
    )
    cdc_topic_prefix: str = _setting(
        "CDC_TOPIC_PREFIX",
        "",
        "Debezium's topic.prefix: consume the Torus tables' change topics "
        "<prefix>.<schema>.<table> beside the activity topics; empty = no CDC input.",
    )
    cdc_schema: str = _setting("CDC_SCHEMA", "public", "PostgreSQL schema of the Torus tables.")
    cdc_tables: tuple[str, ...] = _setting(
        "CDC_TABLES",
        tuple(t.value for t in CdcTable),
        "Torus tables whose changes are read (with CDC_TOPIC_PREFIX set).",
    )
    granted_topic: str = _setting(
        "GRANTED_TOPIC",
        EventType.CERTIFICATE_GRANTED.default_topic,
        "Topic of certificate-granted events.",
    )
    approval_topic: str = _setting(
        "APPROVAL_TOPIC",
        EventType.APPROVAL_REQUESTED.default_topic,
        "Topic of approval-requested events.",
    )
    dlq_topic: str = _setting(
        "DLQ_TOPIC", "cert-consumer.dlq", "Dead-letter topic for records that can never succeed."
    )
    schema_registry_url: str = _setting(
        "SCHEMA_REGISTRY_URL",
        "",
        "Confluent-compatible registry; empty = single-object Avro.",
        secret=True,  # it may carry credentials (https://user:password@host)
    )
    schemas_dir: str = _setting(
        "SCHEMAS_DIR",
        "",
        "Folder of the <event_type>.v<N>.avsc files; empty = the schemas shipped in the package.",
    )
    register_schemas: bool = _setting(
        "REGISTER_SCHEMAS",
        False,
        "With a registry: the relay registers the output schemas itself when they are missing "
        "(else it waits, not ready, for `cert-consumer schemas register`).",
    )
    shadow: bool = _setting(
        "SHADOW",
        False,
        "Shadow mode (`run --shadow`), for a cut-over: the whole pipeline on the live topics, "
        "each decision recorded in cert_consumer.shadow_decisions; nothing is written to "
        "granted_certificates and nothing is published (no relay).",
    )
    quiet_window_seconds: float = _setting(
        "QUIET_WINDOW_SECONDS", 2.0, "Debounce: evaluate this long after the last trigger."
    )
    max_wait_seconds: float = _setting(
        "MAX_WAIT_SECONDS", 30.0, "Debounce: evaluate at most this long after the first trigger."
    )
    consume_batch_size: int = _setting(
        "CONSUME_BATCH_SIZE", 2000, "Records per consume() call and per pending upsert."
    )
    ingest_linger_seconds: float = _setting(
        "INGEST_LINGER_SECONDS",
        0.25,
        "Longest ingest waits after a batch's first record for INGEST_MIN_BATCH records, so a "
        "trickle of events shares one upsert (0: take only what is already fetched).",
    )
    ingest_min_batch: int = _setting(
        "INGEST_MIN_BATCH",
        20,
        "Records that make a batch at once, without waiting out the ingest linger.",
    )
    evaluation_batch_size: int = _setting(
        "EVALUATION_BATCH_SIZE", 500, "Due keys claimed and evaluated per transaction."
    )
    lease_seconds: float = _setting(
        "LEASE_SECONDS", 60.0, "A claimed key returns to the queue if not released by then."
    )
    failed_retry_seconds: float = _setting(
        "FAILED_RETRY_SECONDS",
        600.0,
        "A key whose evaluation fails on its own data is retried after this long.",
    )
    relay_batch_size: int = _setting("RELAY_BATCH_SIZE", 500, "Outbox rows published per batch.")
    idle_sleep_seconds: float = _setting(
        "IDLE_SLEEP_SECONDS",
        5.0,
        "Longest sleep of an idle evaluator or relay: they are woken by database notifications "
        "(new triggers, new outbox rows) and the evaluator by the next due key; this bounds a "
        "lost notification and a standby relay's takeover.",
    )
    evaluation_linger_seconds: float = _setting(
        "EVALUATION_LINGER_SECONDS",
        1.0,
        "Longest a due key waits for others to fall due, so a trickle of keys is evaluated in "
        "batches; a batch starts as soon as EVALUATION_MIN_BATCH keys are due.",
    )
    evaluation_min_batch: int = _setting(
        "EVALUATION_MIN_BATCH",
        8,
        "Due keys that start an evaluation at once, without waiting out the linger.",
    )
    shutdown_timeout_seconds: float = _setting(
        "SHUTDOWN_TIMEOUT_SECONDS", 25.0, "Bound on a graceful stop after SIGTERM."
    )
    startup_timeout_seconds: float = _setting(
        "STARTUP_TIMEOUT_SECONDS",
        0.0,
        "How long `run` waits at start for an unreachable database (not ready, alive) before "
        "exiting 3; 0 waits for ever.",
    )
    max_backoff_seconds: float = _setting(
        "MAX_BACKOFF_SECONDS", 10.0, "Cap of the backoff (with jitter) while a dependency is down."
    )
    metrics_port: int = _setting(
        "METRICS_PORT", 9400, "Port of /metrics, /healthz and /readyz; 0 disables."
    )
    health_deadline_seconds: float = _setting(
        "HEALTH_DEADLINE_SECONDS",
        60.0,
        "/healthz fails when a loop has made no progress for this long.",
    )
    lag_interval_seconds: float = _setting(
        "LAG_INTERVAL_SECONDS", 5.0, "How often the lag of owned partitions is asked of the broker."
    )
    log_level: str = _setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR.")
    log_format: str = _setting("LOG_FORMAT", "auto", "json, console, or auto (console on a tty).")
    roles: tuple[str, ...] = _setting(
        "ROLES", _ROLES, "Loops this process runs: ingest, evaluate, relay (comma-separated)."
    )
    kafka_properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    # What the operator should know but that stops nothing (a variable no setting reads).
    notices: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def accepted_types(self) -> Mapping[str, frozenset[EventType]]:
        """Each input topic and the only event types it may carry (ADR 0008)."""
        accepted: dict[str, set[EventType]] = {}
        for topic, event_type in (
            (self.scores_topic, EventType.PAGE_SCORE_UPDATED),
            (self.posts_topic, EventType.POST_CREATED),
            (self.settings_topic, EventType.CERTIFICATE_SETTINGS_CHANGED),
        ):
            if topic:
                accepted.setdefault(topic, set()).add(event_type)
        return {topic: frozenset(types) for topic, types in accepted.items()}

    @property
    def cdc_topics(self) -> Mapping[str, CdcTable]:
        """Each Debezium change topic read, and the table it carries."""
        if not self.cdc_topic_prefix:
            return {}
        prefix = f"{self.cdc_topic_prefix}.{self.cdc_schema}."
        return {prefix + name: CdcTable(name) for name in self.cdc_tables}

    @property
    def input_topics(self) -> tuple[str, ...]:
        """The topics ingest subscribes to: the activity topics, then the change topics."""
        return (*self.accepted_types, *self.cdc_topics)

    @property
    def schemas_path(self) -> Path:
        return locate_schemas_dir(self.schemas_dir)


def _parse_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a finite number >= 0")
    return value


def _parse_at_least(minimum: float, *, off: bool = False) -> Callable[[str], float]:
    """Seconds no smaller than ``minimum``, where less is harmful (0 sleeps make a busy loop,
    a 0 deadline a permanent 503, a 0 lease a key claimed twice at once); with ``off``, 0 is
    allowed too and means "disabled"."""

    def parse(raw: str) -> float:
        value = _parse_float(raw)
        if value < minimum and not (off and value == 0):
            raise ValueError(f"must be >= {minimum:g}" + (" (or 0 to disable)" if off else ""))
        return value

    return parse


def _parse_http_url(raw: str) -> str:
    """A registry URL: http(s)://host[:port][/path]; empty = none. Never echoed (it may
    carry credentials)."""
    value = raw.strip()
    if not value:
        return ""
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError("has a port that is not a number") from exc
    return value


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise ValueError("must be true or false")


def _parse_int(raw: str, said: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(said) from None


def _parse_positive_int(raw: str) -> int:
    value = _parse_int(raw, "must be a whole number > 0")
    if value <= 0:
        raise ValueError("must be a whole number > 0")
    return value


def _parse_port(raw: str) -> int:
    value = _parse_int(raw, "must be a port number 0..65535")
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number 0..65535")
    return value


def _parse_list(raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ValueError("must list at least one name")
    return items


def _parse_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value.upper() in choices:
            return value.upper()
        if value.lower() in choices:
            return value.lower()
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def _parse_roles(raw: str) -> tuple[str, ...]:
    roles = _parse_list(raw.replace("all", ",".join(_ROLES)))
    unknown = [r for r in roles if r not in _ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; use {', '.join(_ROLES)} or all")
    return tuple(dict.fromkeys(roles))


def _parse_cdc_tables(raw: str) -> tuple[str, ...]:
    tables = _parse_list(raw)
    known = {t.value for t in CdcTable}
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise ValueError(f"unknown table(s) {', '.join(unknown)}; use {', '.join(sorted(known))}")
    return tuple(dict.fromkeys(tables))


def _parse_database_url(raw: str) -> str:
    if raw.strip().startswith("postgres://"):  # Heroku's and libpq's spelling, as SQLAlchemy's
        raw = "postgresql://" + raw.strip().removeprefix("postgres://")
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError as exc:
        raise ValueError("is not a database URL (postgresql+psycopg://user@host/db)") from exc
    if url.get_backend_name() != "postgresql":
        raise ValueError("must be a postgresql URL")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "database_url": _parse_database_url,
    "schema_registry_url": _parse_http_url,
    "group_protocol": _parse_choice(_GROUP_PROTOCOLS),
    "register_schemas": _parse_bool,
    "shadow": _parse_bool,
    "quiet_window_seconds": _parse_float,
    "max_wait_seconds": _parse_float,
    "consume_batch_size": _parse_positive_int,
    "evaluation_batch_size": _parse_positive_int,
    "relay_batch_size": _parse_positive_int,
    "lease_seconds": _parse_at_least(1),
    "failed_retry_seconds": _parse_at_least(1),
    "idle_sleep_seconds": _parse_at_least(0.01),
    "evaluation_linger_seconds": _parse_float,
    "evaluation_min_batch": _parse_positive_int,
    "ingest_linger_seconds": _parse_float,
    "ingest_min_batch": _parse_positive_int,
    "shutdown_timeout_seconds": _parse_at_least(1),
    "max_backoff_seconds": _parse_at_least(0.1),
    "startup_timeout_seconds": _parse_float,
    "metrics_port": _parse_port,
    "health_deadline_seconds": _parse_at_least(1),
    "lag_interval_seconds": _parse_at_least(0.5, off=True),
    "log_level": _parse_choice(_LOG_LEVELS),
    "log_format": _parse_choice(_LOG_FORMATS),
    "roles": _parse_roles,
    "cdc_tables": _parse_cdc_tables,
}


def kafka_passthrough(environ: Mapping[str, str]) -> dict[str, str]:
    """librdkafka properties given as CERT_CONSUMER_KAFKA_<NAME> variables."""
    props: dict[str, str] = {}
    for name, value in environ.items():
        if name.startswith(KAFKA_PREFIX):
            suffix = name[len(KAFKA_PREFIX) :]
            if suffix and suffix not in _RESERVED_KAFKA_NAMES:
                # "__" stands for a literal underscore (log_level), "_" for a dot.
                props[suffix.lower().replace("__", "\0").replace("_", ".").replace("\0", "_")] = (
                    value
                )
    return props


def load_settings(
    environ: Mapping[str, str] | None = None, *, require_database: bool = True, **overrides: Any
) -> Settings:
    """Build Settings from ``environ`` (the process environment by default; the one place the
    service reads it) and explicit overrides, e.g. CLI flags; report all problems together so
    an operator fixes them in one round."""
    given = os.environ if environ is None else environ
    environ, problems = _read_secret_files(given)
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        env = spec.metadata.get("env")
        if env is None or PREFIX + env not in environ:
            continue
        raw = environ[PREFIX + env]
        parse = _PARSERS.get(spec.name, str.strip)
        try:
            values[spec.name] = parse(raw)
        except ValueError as exc:
            shown = repr(raw) if spec.repr else "<hidden>"
            problems.append(f"{PREFIX}{env}={shown}: {exc}")
    problems.extend(
        f"{PREFIX}{name} is no longer read; use {instead}"
        for name, instead in _REPLACED.items()
        if PREFIX + name in environ
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    problems.extend(_parse_flags(values, overrides))
    if overrides.get("database_url"):
        problems.extend(_check_flag_url(values))
    problems.extend(_merge_password(values))
    values["kafka_properties"] = kafka_passthrough(environ)
    values["notices"] = tuple(_unknown_names(given))
    settings = Settings(**values)
    database_given = bool(settings.database_url) or any(
        PREFIX + name in given for name in ("DATABASE_URL", "DATABASE_URL" + FILE_SUFFIX)
    )
    problems.extend(
        _cross_checks(settings, database_missing=require_database and not database_given)
    )
    if problems:
        raise ConfigError(problems)
    return settings


def _read_secret_files(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment with each ``CERT_CONSUMER_<NAME>_FILE`` replaced by ``<NAME>`` holding
    the file's content (one trailing newline dropped, as ``echo`` and editors leave one)."""
    resolved = dict(environ)
    problems = []
    for name, path in environ.items():
        if not (name.startswith(PREFIX) and name.endswith(FILE_SUFFIX)):
            continue
        target = name[: -len(FILE_SUFFIX)]
        del resolved[name]
        if target in environ:
            problems.append(f"{target} and {name} are both set; give the value once")
            continue
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"{name}={path!r}: cannot read the file ({reason})")
            continue
        resolved[target] = content.removesuffix("\n").removesuffix("\r")
    return resolved, problems


def _unknown_names(environ: Mapping[str, str]) -> list[str]:
    """CERT_CONSUMER_* variables no setting reads (a typo is otherwise silently ignored), each
    with the nearest name that is read. A notice, not an error: a ConfigMap written for a
    newer release must not stop an older one during a rollout."""
    known = {PREFIX + str(f.metadata["env"]) for f in fields(Settings) if "env" in f.metadata}
    known |= {PREFIX + name for name in _REPLACED}
    notices = []
    for name in sorted(environ):
        plain = name.removesuffix(FILE_SUFFIX)
        if not name.startswith(PREFIX) or plain in known or name.startswith(KAFKA_PREFIX):
            continue
        if name.startswith(_NOT_SETTINGS):
            continue
        nearest = difflib.get_close_matches(plain, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        notices.append(f"{name} is not a setting and is ignored{hint}")
    return notices


def _parse_flags(values: dict[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Command-line flags given as text are validated as their variables are."""
    problems = []
    for name, raw in overrides.items():
        parse = _PARSERS.get(name)
        if name == "database_url" or parse is None or not isinstance(raw, str):
            continue  # the URL flag has its own check, below
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            problems.append(f"--{name.replace('_', '-')} {exc}")
    return problems


def _check_flag_url(values: dict[str, Any]) -> list[str]:
    """A ``--database-url`` flag is parsed like the variable, and may not carry a password:
    a command line is visible to every user of the machine in ``ps``."""
    try:
        values["database_url"] = _parse_database_url(values["database_url"])
    except ValueError as exc:
        return [f"--database-url {exc}"]
    if sa.make_url(values["database_url"]).password is not None:
        return [
            "--database-url carries a password, which `ps` shows to every user: give it as "
            f"{PREFIX}DATABASE_PASSWORD or {PREFIX}DATABASE_PASSWORD_FILE instead"
        ]
    return []


def _merge_password(values: dict[str, Any]) -> list[str]:
    """Put DATABASE_PASSWORD into the URL, where the driver takes it from."""
    password = values.get("database_password")
    if not password or not values.get("database_url"):
        return []
    url = sa.make_url(values["database_url"])
    if url.password is not None:
        return [
            f"{PREFIX}DATABASE_URL carries a password and {PREFIX}DATABASE_PASSWORD is set; "
            "give it once"
        ]
    values["database_url"] = url.set(password=password).render_as_string(hide_password=False)
    return []


def _cross_checks(settings: Settings, *, database_missing: bool) -> list[str]:
    problems = []
    if database_missing:
        problems.append(f"{PREFIX}DATABASE_URL is required (postgresql+psycopg://user@host/db)")
    if settings.max_wait_seconds < settings.quiet_window_seconds:
        problems.append(
            f"{PREFIX}MAX_WAIT_SECONDS ({settings.max_wait_seconds}) must be >= "
            f"{PREFIX}QUIET_WINDOW_SECONDS ({settings.quiet_window_seconds})"
        )
    if "ingest" in settings.roles and not settings.input_topics:
        problems.append(
            f"{PREFIX}SCORES_TOPIC, POSTS_TOPIC and SETTINGS_TOPIC are all empty: "
            "the ingest role has nothing to consume"
        )
    if len(set(settings.input_topics)) < len(settings.input_topics):
        problems.append(
            f"a change topic of {PREFIX}CDC_TOPIC_PREFIX is also an activity topic: a topic "
            "carries one kind of record"
        )
    outputs = {settings.granted_topic, settings.approval_topic, settings.dlq_topic}
    problems.extend(
        f"input topic {topic!r} is also an output or dead-letter topic; consuming our own "
        "output is never right"
        for topic in settings.input_topics
        if topic in outputs
    )
    return problems


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting, for the README and `--help`."""
    rows = []
    for spec in fields(Settings):
        env = spec.metadata.get("env")
        if env is None:
            continue
        default = spec.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((PREFIX + env, shown, str(spec.metadata["doc"])))
    return rows
