"""What every `cert-consumer` subcommand shares: settings from the environment, overridden by
its flags, then logging set up from them; its engine; the argument types of ids and counts."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
import structlog

from consumer.config import Settings, load_settings
from consumer.kafka import clients
from consumer.observability import logs
from consumer.store import database

log = structlog.get_logger("consumer.cli")


def command_settings(
    args: argparse.Namespace, *, require_database: bool = True, **overrides: Any
) -> Settings:
    """Settings for one command; ``--database-url`` / ``--bootstrap-servers`` flags win. An
    operator command's Kafka clients keep librdkafka quiet (its retry lines would bury the
    command's own one-line failure) unless ``--debug`` or CERT_CONSUMER_KAFKA_LOG__LEVEL."""
    settings = load_settings(
        require_database=require_database,
        database_url=getattr(args, "database_url", None),
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        **overrides,
    )
    quiet_kafka = getattr(args, "command", None) != "run" and not getattr(args, "debug", False)
    if quiet_kafka and "log_level" not in settings.kafka_properties:
        quiet = {**settings.kafka_properties, "log_level": "0"}
        settings = dataclasses.replace(settings, kafka_properties=quiet)
    logs.configure(settings.log_level, settings.log_format)  # type: ignore[arg-type]
    for notice in (*settings.notices, *clients.ignored_overrides(settings)):
        log.warning("configuration_notice", notice=notice)
    return settings


@contextmanager
def command_engine(settings: Settings) -> Iterator[sa.Engine]:
    """The command's engine (``store.database``: the service's connect timeout), disposed after."""
    engine = database.create_engine(settings.database_url, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


def positive_int(raw: str) -> int:
    """An argparse type: an id or a count, > 0."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number > 0")
    return value


def positive_seconds(raw: str) -> float:
    """An argparse type: a duration in seconds, > 0."""
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds > 0")
    return value
