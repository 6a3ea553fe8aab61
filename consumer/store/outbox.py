"""Operator statements on ``cert_consumer.outbox``: putting set-aside events back.

Kept out of ``consumer.relay`` so the CLI need not import a loop; the relay's own statements
join this module when the layout issue gives every table family one owner.
"""

from __future__ import annotations

import sqlalchemy as sa

_RETRY = sa.text(
    """
    UPDATE cert_consumer.outbox SET failed_at = NULL, error = NULL
    WHERE failed_at IS NOT NULL AND published_at IS NULL
      AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))
    RETURNING id
    """
)


def retry_set_aside(conn: sa.Connection, ids: list[int] | None) -> list[int]:
    """Put set-aside outbox events (all, or those of ``ids``) back in the relay's queue; the
    ids that were. Each keeps its event id, so a consumer that saw it before dedupes it."""
    return sorted(conn.execute(_RETRY, {"ids": ids}).scalars())
