"""The CLI's one error path: each expected failure as one line on stderr and an exit code.

Every command ends here, so an operator reads the same kind of line whatever failed, and
scripts can tell a usage mistake from a dependency that is down. ``--debug`` adds the
traceback. Anything not listed here is a bug: Python's own traceback, exit 1.
"""

from __future__ import annotations

import enum
import errno

import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException

from consumer.errors import (
    CertConsumerError,
    CheckFailedError,
    ConfigError,
    FatalError,
    MissingExtraError,
    RefusedError,
    StartupTimeoutError,
)
from consumer.events.errors import RegistryUnavailableError
from consumer.ops.offsets import OffsetsError
from consumer.ops.topics import TopicsError
from consumer.store.refusals import refusal


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # the work failed: a loop died, a fatal Kafka error, an event that cannot encode
    USAGE = 2  # bad usage or configuration, or a refused credential, certificate or permission
    UNAVAILABLE = 3  # a dependency unreachable, or a check failed (schemas, migrations, tables)
    INTERRUPTED = 130  # Ctrl-C, or a second SIGTERM during a graceful stop


EXIT_CODES = """exit codes:
  0    done
  1    the work failed (a loop died, a fatal Kafka error)
  2    bad usage or configuration; a password, certificate or permission refused
  3    a dependency unreachable, or a check failed (schemas, migrations, Torus tables)
  130  interrupted (Ctrl-C; a second SIGTERM during a graceful stop)"""

_DATABASE = "PostgreSQL"
_KAFKA_FIX = "check CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS and that the brokers are up"
_DATABASE_FIX = "check CERT_CONSUMER_DATABASE_URL and that the server is up"


def explain(exc: BaseException) -> tuple[ExitCode, list[str]] | None:
    """The exit code and the line(s) for an expected failure; None for a bug."""
    if _interrupted(exc):
        return ExitCode.INTERRUPTED, ["interrupted"]
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE, [f"invalid configuration: {p}" for p in exc.problems]
    if isinstance(exc, MissingExtraError | RefusedError):
        return ExitCode.USAGE, [str(exc)]
    if isinstance(exc, StartupTimeoutError | CheckFailedError | RegistryUnavailableError):
        return ExitCode.UNAVAILABLE, [str(exc)]
    if isinstance(exc, FatalError):
        return ExitCode.FAILED, [str(exc)]
    if isinstance(exc, CertConsumerError):
        return _library(exc)
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        refused = refusal(exc)
        if refused is not None:
            return ExitCode.USAGE, [refused]
        return ExitCode.UNAVAILABLE, [f"{_DATABASE} unreachable ({_first(exc)}): {_DATABASE_FIX}"]
    if isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        said = err.str() if err is not None else str(exc)
        if err is not None and err.code() == KafkaError._INVALID_ARG:
            return ExitCode.USAGE, [
                f"librdkafka rejected the configuration ({said}): check the "
                "CERT_CONSUMER_KAFKA_* variables"
            ]
        return ExitCode.UNAVAILABLE, [f"Kafka unreachable ({said}): {_KAFKA_FIX}"]
    if isinstance(exc, TimeoutError):
        return ExitCode.UNAVAILABLE, [f"no answer in time ({_first(exc) or 'timed out'})"]
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return ExitCode.USAGE, [
            "the metrics port is already in use: choose another CERT_CONSUMER_METRICS_PORT "
            "(0 turns the endpoint off)"
        ]
    return None


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, or an error raised while a Ctrl-C unwound: a library's clean-up can fail on
    the connection the interrupt left mid-statement (SQLAlchemy's pre-ping, interrupted, then
    raises "can't change 'autocommit' now"), and that error must not hide the interrupt.
    Both links of every exception are followed: ``raise X from Y`` inside an ``except
    KeyboardInterrupt`` keeps the interrupt in the context, not the cause."""
    seen: set[int] = set()
    waiting: list[BaseException | None] = [exc]
    while waiting:
        link = waiting.pop()
        if link is None or id(link) in seen:
            continue
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        waiting += (link.__cause__, link.__context__)
    return False


def _library(exc: CertConsumerError) -> tuple[ExitCode, list[str]]:
    """Errors of the operator commands' libraries: a broker or group that cannot be read is
    a dependency's failure; the rest is the work's."""
    code = ExitCode.UNAVAILABLE if isinstance(exc, OffsetsError | TopicsError) else ExitCode.FAILED
    return code, [str(exc)]


def _first(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else ""
