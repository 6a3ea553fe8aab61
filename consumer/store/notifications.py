"""Wake-ups from the database: LISTEN on a channel that a table's trigger NOTIFYs.

Migration 3 gives ``pending_evaluations`` and ``outbox`` a statement-level AFTER INSERT trigger
that notifies :data:`PENDING` or :data:`OUTBOX`, so every writer (the ingest of any pod, a
backfill, an operator's redrive) wakes the evaluators and the relay without a statement of its
own, and an idle loop sleeps instead of polling. A notification carries no data: it only says
"look again". Notifications are delivered at commit and coalesced per transaction; one that is
lost (a reconnect) costs at most the loop's longest sleep, never an event.
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa

from consumer.errors import TransientError

PENDING = "cert_consumer_pending"
OUTBOX = "cert_consumer_outbox"
CHANNELS = (PENDING, OUTBOX)


class ListenerLostError(TransientError):
    """The listening connection broke (the database restarted or is unreachable): the loop
    backs off, then listens again on a new connection."""


class Listener:
    """A connection LISTENing on one channel, for a loop to sleep on.

    The connection must be left outside a transaction (committed) while waiting: PostgreSQL
    delivers notifications to a session only between transactions. Those that arrive while the
    connection runs other statements are kept by the driver and count at the next wait.
    """

    def __init__(self, conn: sa.Connection, channel: str) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        self._driver: Any = conn.connection.driver_connection
        conn.execute(sa.text(f"LISTEN {channel}"))
        conn.commit()

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a notification; True if at least one came. Every
        notification already queued is consumed, so a burst of them wakes the loop once."""
        woken = False
        if seconds > 0:
            woken = self._received(seconds, stop_after=1)
        return self.drain() or woken

    def drain(self) -> bool:
        """Consume the notifications queued so far without waiting; True if there were any."""
        return self._received(0, stop_after=None)

    def _received(self, seconds: float, *, stop_after: int | None) -> bool:
        try:
            return any(True for _ in self._driver.notifies(timeout=seconds, stop_after=stop_after))
        except psycopg.Error as exc:
            raise ListenerLostError(f"listening connection lost: {exc}") from exc
