"""Creates and migrates the service's own schema (``cert_consumer``); never Torus's tables.

Each migration is a numbered list of SQL statements applied once, in order, in one transaction
under an advisory lock, so several pods starting at once cannot race. Published migrations are
never edited: a change is a new number.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from consumer.store.notifications import OUTBOX, PENDING
from consumer.store.service_tables import SCHEMA

# Any 64-bit constant unique to this service: serialises concurrent `db upgrade` runs.
_MIGRATION_LOCK = 0x43455254_4D494752


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "pending evaluations and outbox",
        (
            f"""CREATE TABLE {SCHEMA}.pending_evaluations (
                section_id bigint NOT NULL,
                user_id bigint NOT NULL,
                first_seen_at timestamptz NOT NULL,
                last_seen_at timestamptz NOT NULL,
                due_at timestamptz NOT NULL,
                version bigint NOT NULL DEFAULT 1,
                triggers bigint NOT NULL DEFAULT 1,
                claimed_version bigint,
                lease_until timestamptz,
                PRIMARY KEY (section_id, user_id))""",
            f"CREATE INDEX pending_evaluations_due_at ON {SCHEMA}.pending_evaluations (due_at)",
            f"""CREATE TABLE {SCHEMA}.outbox (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id uuid NOT NULL UNIQUE,
                event_type text NOT NULL,
                message_key text NOT NULL,
                payload jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                published_at timestamptz)""",
            f"""CREATE INDEX outbox_unpublished ON {SCHEMA}.outbox (id)
                WHERE published_at IS NULL""",
        ),
    ),
    Migration(
        2,
        "outbox events set aside",
        (
            f"ALTER TABLE {SCHEMA}.outbox ADD COLUMN failed_at timestamptz",
            f"ALTER TABLE {SCHEMA}.outbox ADD COLUMN error text",
        ),
    ),
    Migration(
        3,
        "wake-up notifications",
        (
            # The channel is the trigger's argument: one function for both tables.
            f"""CREATE FUNCTION {SCHEMA}.notify_channel() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify(TG_ARGV[0], '');
                    RETURN NULL;
                END $$""",
            f"""CREATE TRIGGER pending_evaluations_notify
                AFTER INSERT ON {SCHEMA}.pending_evaluations
                FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_channel('{PENDING}')""",
            f"""CREATE TRIGGER outbox_notify
                AFTER INSERT ON {SCHEMA}.outbox
                FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.notify_channel('{OUTBOX}')""",
        ),
    ),
    Migration(
        4,
        "shadow decisions",
        (
            # One row per key: the latest decision, and the latest transition it would have
            # made (kept when later decisions see Torus's own row and say no_change).
            f"""CREATE TABLE {SCHEMA}.shadow_decisions (
                section_id bigint NOT NULL,
                user_id bigint NOT NULL,
                decided_at timestamptz NOT NULL,
                kind text NOT NULL,
                reason text,
                transition_at timestamptz,
                transition_kind text,
                transition_state text,
                transition_with_distinction boolean,
                PRIMARY KEY (section_id, user_id))""",
            f"CREATE INDEX shadow_decisions_decided_at ON {SCHEMA}.shadow_decisions (decided_at)",
        ),
    ),
)


def applied_versions(connection: sa.Connection) -> set[int]:
    exists = connection.execute(
        sa.text("SELECT to_regclass(:name) IS NOT NULL"),
        {"name": f"{SCHEMA}.schema_migrations"},
    ).scalar_one()
    if not exists:
        return set()
    rows = connection.execute(sa.text(f"SELECT version FROM {SCHEMA}.schema_migrations"))
    return {int(v) for v in rows.scalars()}


def upgrade(engine: sa.Engine) -> list[int]:
    """Apply every migration not applied yet; return the versions applied by this call."""
    applied_now: list[int] = []
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        # Only when missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database,
        # which a least-privileged role (deploy/postgresql/role.sql) does not have; there the
        # schema is made for it, and owned by it.
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA}
        ).first()
        if exists is None:
            conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        conn.execute(
            sa.text(
                f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        )
        done = applied_versions(conn)
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements:
                conn.execute(sa.text(statement))
            conn.execute(
                sa.text(f"INSERT INTO {SCHEMA}.schema_migrations (version, name) VALUES (:v, :n)"),
                {"v": migration.version, "n": migration.name},
            )
            applied_now.append(migration.version)
    return applied_now


def pending_versions(engine: sa.Engine) -> list[int]:
    """Migrations not applied yet: the service refuses to run until they are."""
    with engine.connect() as conn:
        done = applied_versions(conn)
    return [m.version for m in MIGRATIONS if m.version not in done]
