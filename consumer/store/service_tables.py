"""The service's own tables, in their own PostgreSQL schema (never Torus's ``public``).

- ``pending_evaluations``: the durable debounce, one row per (section_id, user_id) to evaluate.
- ``outbox``: output events written in the same transaction as the transition they announce.
- ``schema_migrations``: which migrations of ``consumer.migrations`` have been applied.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

SCHEMA = "cert_consumer"

metadata = sa.MetaData(schema=SCHEMA)
_tstz = sa.DateTime(timezone=True)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", _tstz, nullable=False, server_default=sa.func.now()),
)

pending_evaluations = sa.Table(
    "pending_evaluations",
    metadata,
    sa.Column("section_id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("first_seen_at", _tstz, nullable=False),
    sa.Column("last_seen_at", _tstz, nullable=False),
    sa.Column("due_at", _tstz, nullable=False),
    # Bumped by every upsert: a release only deletes the row if no trigger came in meanwhile.
    sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("triggers", sa.BigInteger, nullable=False, server_default="1"),
    sa.Column("claimed_version", sa.BigInteger),
    sa.Column("lease_until", _tstz),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("message_key", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("created_at", _tstz, nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", _tstz),
    # Set by the relay for an event that can never be encoded; it is then skipped.
    sa.Column("failed_at", _tstz),
    sa.Column("error", sa.Text),
)

shadow_decisions = sa.Table(
    "shadow_decisions",
    metadata,
    sa.Column("section_id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, primary_key=True),
    sa.Column("decided_at", _tstz, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("transition_at", _tstz),
    sa.Column("transition_kind", sa.Text),
    sa.Column("transition_state", sa.Text),
    sa.Column("transition_with_distinction", sa.Boolean),
)
