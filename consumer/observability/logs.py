"""structlog set-up, done once by the CLI: JSON lines in production, console on a terminal.

Event names are fixed snake_case strings; data goes in key/values. Never log names or emails.

librdkafka's own log lines come through stdlib logging (each client gets ``kafka_logger``),
are rendered by the same structlog renderer (``event: librdkafka``, ``client``, ``facility``,
``detail``), and are rate-limited: while a broker is down every client would otherwise log each
reconnect attempt. At most one line per client and facility per ``window`` seconds passes; the
next one says how many were suppressed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
KAFKA_LOG_WINDOW_SECONDS = 60.0


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Route structlog (and stdlib logging, librdkafka's included) to stderr in one format."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Resolve sys.stderr when a logger is made, not at configure time, so a redirected
        # stream (tests, daemons) is honoured.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.ExtraAdder(allow=["client", "facility", "detail", "suppressed"]),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


class RateLimit:
    """At most one event per key per ``window`` seconds; counts what it held back."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: object) -> int | None:
        """None to drop this event; else how many of its kind were dropped before it."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._window:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._held.pop(key, 0)


class Throttled:
    """A logger's warnings at most once per ``window`` seconds per key, with the count held
    back: a loop retrying through an outage says so once a minute, not at every attempt."""

    def __init__(self, logger: Any, window: float = KAFKA_LOG_WINDOW_SECONDS) -> None:
        self._logger = logger
        self._limit = RateLimit(window)

    def warning(self, event: str, key: object, **values: object) -> None:
        suppressed = self._limit.admit((event, key))
        if suppressed is not None:
            self._logger.warning(event, suppressed=suppressed, **values)


class _KafkaRecord(logging.Filter):
    """Turns librdkafka's ``(facility, client, text)`` record into key/values, rate-limited."""

    def __init__(self, limit: RateLimit) -> None:
        super().__init__()
        self._limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        facility, client, detail = (
            [str(a) for a in args] if len(args) == 3 else ["", record.name, record.getMessage()]
        )
        suppressed = self._limit.admit((client, facility))
        if suppressed is None:
            return False
        record.msg, record.args = "librdkafka", ()
        record.client, record.facility, record.detail = client, facility, detail[:500]
        record.suppressed = suppressed
        return True


_KAFKA_LIMIT = RateLimit(KAFKA_LOG_WINDOW_SECONDS)


def kafka_logger(name: str) -> logging.Logger:
    """The stdlib logger to pass as a librdkafka client's ``logger``."""
    logger = logging.getLogger(f"librdkafka.{name}")
    if not any(isinstance(f, _KafkaRecord) for f in logger.filters):
        logger.addFilter(_KafkaRecord(_KAFKA_LIMIT))
    return logger
