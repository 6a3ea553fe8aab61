"""The one way an engine is made, for the service and every command: the same connect timeout
and liveness check wherever a connection comes from.

A connection attempt to an unreachable host would otherwise wait for the operating system's
TCP timeout (minutes), and a pooled connection that a database restart closed would fail the
first statement given to it; ``pool_pre_ping`` replaces it before use instead.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa

CONNECT_TIMEOUT_SECONDS = 5
DEFAULT_POOL_SIZE = 5


def create_engine(url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> sa.Engine:
    """An engine on ``url`` (postgresql+psycopg://...), ``pool_size`` connections kept open."""
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        # An error's text must not carry a statement's values: the outbox rows hold learners'
        # names and emails, and error texts reach logs, readiness reasons and the outbox.
        hide_parameters=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def discard(conn: sa.Connection) -> None:
    """Close a loop's own connection for good, never back into the pool: the session state it
    carries (a relay's advisory lock, a LISTEN) must end with it. Closing a connection that is
    already broken can fail; that changes nothing, so it is swallowed."""
    with contextlib.suppress(Exception):
        conn.invalidate()
        conn.close()


def autocommit(engine: sa.Engine) -> sa.Engine:
    """The same pool, each statement its own transaction: for work that is one statement (the
    debounce upsert, a claim, the relay's queue), where BEGIN and COMMIT would be two round
    trips more than the statement itself. A connection from it holds no transaction open, which
    a LISTENing connection needs (notifications arrive between transactions)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
