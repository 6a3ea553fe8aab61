"""The Torus tables this service reads (and granted_certificates, which it writes).

Owns their SQLAlchemy Core definitions, as DESIGN.md A1 describes them. Torus owns these tables
in production: the service never creates or alters them there. ``create_torus_tables`` exists
for tests and the embedded demo only, and refuses a database that already has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData(schema="public")

# enrollments_context_roles.context_role_id values, and the page resource type.
CONTENT_DEVELOPER_ROLE, INSTRUCTOR_ROLE, LEARNER_ROLE = 2, 3, 4

_string = sa.String(255)
_timestamp = sa.DateTime(timezone=False)

assessments_apply_to = pg.ENUM(
    "all", "custom", name="certificates_assessments_apply_to", metadata=metadata
)
granted_state = pg.ENUM(
    "pending", "earned", "denied", name="granted_certificates_state", metadata=metadata
)
issued_by_type = pg.ENUM(
    "user", "author", name="granted_certificates_issued_by_type", metadata=metadata
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("email", _string),
    sa.Column("name", _string),
    sa.Column("given_name", _string),
    sa.Column("family_name", _string),
    sa.Column("guest", sa.Boolean, nullable=False, server_default=sa.false()),
)

sections = sa.Table(
    "sections",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("slug", _string, nullable=False),
    sa.Column("title", _string, nullable=False),
    sa.Column("certificate_enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("type", _string, server_default="enrollable"),
    sa.Column("status", _string, server_default="active"),
)

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("section_id", sa.BigInteger, sa.ForeignKey("sections.id"), nullable=False),
    sa.Column("status", _string, nullable=False, server_default="enrolled"),
    sa.Column("inserted_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index("enrollments_section_id_user_id_index", "section_id", "user_id", unique=True),
)

enrollments_context_roles = sa.Table(
    "enrollments_context_roles",
    metadata,
    sa.Column("enrollment_id", sa.BigInteger, sa.ForeignKey("enrollments.id"), nullable=False),
    sa.Column("context_role_id", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("enrollment_id", "context_role_id"),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column(
        "section_id",
        sa.BigInteger,
        sa.ForeignKey("sections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("required_discussion_posts", sa.Integer),
    sa.Column("required_class_notes", sa.Integer),
    sa.Column("min_percentage_for_completion", sa.Float(53)),
    sa.Column("min_percentage_for_distinction", sa.Float(53)),
    sa.Column("assessments_apply_to", assessments_apply_to, server_default="all"),
    sa.Column("custom_assessments", pg.ARRAY(sa.Integer), server_default="{}"),
    sa.Column("requires_instructor_approval", sa.Boolean, server_default=sa.false()),
    sa.Column("title", _string),
    sa.Column("description", _string),
    sa.Column("inserted_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index("certificates_section_id_index", "section_id"),
)

granted_certificates = sa.Table(
    "granted_certificates",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("certificate_id", sa.BigInteger, sa.ForeignKey("certificates.id"), nullable=False),
    sa.Column("state", granted_state, nullable=False),
    sa.Column("with_distinction", sa.Boolean, nullable=False),
    sa.Column("guid", _string, nullable=False),
    sa.Column("issued_by", sa.Integer),
    sa.Column("issued_by_type", issued_by_type, server_default="user"),
    sa.Column("issued_at", _timestamp),
    sa.Column("url", _string),
    sa.Column("student_email_sent", sa.Boolean, server_default=sa.false()),
    sa.Column("inserted_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index("unique_user_certificate", "user_id", "certificate_id", unique=True),
)

resource_accesses = sa.Table(
    "resource_accesses",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("section_id", sa.BigInteger, nullable=False),
    sa.Column("resource_id", sa.BigInteger, nullable=False),
    sa.Column("score", sa.Float(53)),
    sa.Column("out_of", sa.Float(53)),
    sa.Column("inserted_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index("resource_accesses_unique_index", "resource_id", "user_id", "section_id", unique=True),
    # The set-based facts query needs this one (DESIGN C: ~115x slower without it).
    sa.Index("resource_accesses_section_id_user_id_index", "section_id", "user_id"),
)

section_resources = sa.Table(
    "section_resources",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("section_id", sa.BigInteger, sa.ForeignKey("sections.id"), nullable=False),
    sa.Column("resource_id", sa.BigInteger, nullable=False),
    sa.Column("resource_type_id", sa.Integer, nullable=False),
    sa.Column("graded", sa.Boolean),
    sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("section_resources_unique_index", "section_id", "resource_id", unique=True),
)

posts = sa.Table(
    "posts",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("section_id", sa.BigInteger, nullable=False),
    sa.Column("resource_id", sa.BigInteger),
    sa.Column("annotated_resource_id", sa.BigInteger),
    sa.Column("visibility", _string, nullable=False, server_default="public"),
    sa.Column("status", _string, nullable=False, server_default="approved"),
    sa.Column("parent_post_id", sa.BigInteger),
    sa.Column("inserted_at", _timestamp, nullable=False, server_default=sa.func.now()),
    sa.Index("posts_section_id_user_id_index", "section_id", "user_id"),
)


def enrolled_learners() -> sa.Select[tuple[int, int]]:
    """(section_id, user_id) of every 'enrolled' enrollment with the learner role: who the
    service evaluates. Callers narrow it to their sections or keys."""
    e, r = enrollments, enrollments_context_roles
    return (
        sa.select(e.c.section_id, e.c.user_id)
        .join(r, r.c.enrollment_id == e.c.id)
        .where(e.c.status == "enrolled", r.c.context_role_id == LEARNER_ROLE)
    )


def audit_keys(conn: sa.Connection, section_ids: list[int]) -> list[tuple[int, int]]:
    """(section_id, user_id) of every learner of the sections and of every holder of a grant
    of their certificates (a grant may outlive its enrollment), in order."""
    g, c = granted_certificates, certificates
    holders = (
        sa.select(c.c.section_id, g.c.user_id)
        .join(c, c.c.id == g.c.certificate_id)
        .where(c.c.section_id.in_(section_ids))
    )
    learners = enrolled_learners().where(enrollments.c.section_id.in_(section_ids))
    union = sa.union(learners, holders).subquery()
    query = sa.select(union.c.section_id, union.c.user_id).order_by(*union.c)
    return [(int(s), int(u)) for s, u in conn.execute(query)]


@dataclass(frozen=True)
class GrantChange:
    """A granted_certificates row another writer (Torus's worker) created or changed."""

    created: bool  # inserted in the period; else updated in it (an upgrade, an approval)
    state: str
    with_distinction: bool


def grants_changed_since(
    conn: sa.Connection, since: datetime
) -> dict[tuple[int, int], GrantChange]:
    """Rows created or updated at or after ``since`` (Torus's timestamps are UTC, naive),
    by (section, user)."""
    g, c = granted_certificates, certificates
    naive = since.astimezone(UTC).replace(tzinfo=None)
    query = (
        sa.select(c.c.section_id, g.c.user_id, g.c.inserted_at, g.c.state, g.c.with_distinction)
        .join(c, c.c.id == g.c.certificate_id)
        .where(sa.or_(g.c.inserted_at >= naive, g.c.updated_at >= naive))
    )
    return {
        (int(r.section_id), int(r.user_id)): GrantChange(
            r.inserted_at >= naive, str(r.state), bool(r.with_distinction)
        )
        for r in conn.execute(query)
    }


def certificate_sections(conn: sa.Connection, *, only: int | None = None) -> list[int]:
    """Ids of every certificate-enabled section, in order; with ``only``, that section if it
    exists (enabled or not: an operator naming a section means it)."""
    query = sa.select(sections.c.id).order_by(sections.c.id)
    if only is not None:
        query = query.where(sections.c.id == only)
    else:
        query = query.where(sections.c.certificate_enabled.is_(True))
    return [int(i) for i in conn.execute(query).scalars()]


def create_torus_tables(connection: sa.Connection) -> None:
    """Create the Torus tables in an empty database (tests and the demo only, never production)."""
    existing = sa.inspect(connection).get_table_names(schema="public")
    if "granted_certificates" in existing:
        raise RuntimeError("refusing to create Torus tables: this database already has them")
    metadata.create_all(connection)


# What the service does with each Torus table: reads every one, writes granted_certificates.
_NEEDS = {
    **{t.name: ("SELECT",) for t in metadata.sorted_tables if t.name != "granted_certificates"},
    "granted_certificates": ("SELECT", "INSERT", "UPDATE"),
}


def missing_access(conn: sa.Connection) -> list[str]:
    """What stops the service on this database, one item per table: absent, or a privilege
    the connected role lacks ("public.posts: SELECT"). Empty when all is there; asked at
    start, so a wrong database or a role without deploy/postgresql/role.sql's grants is said
    at once instead of failing the first batch."""
    rows = conn.execute(
        sa.text(
            "SELECT t, to_regclass('public.' || t) IS NOT NULL FROM unnest(CAST(:ts AS text[])) t"
        ),
        {"ts": sorted(_NEEDS)},
    ).all()
    absent = [f"public.{t}: absent" for t, found in rows if not found]
    if absent:
        return absent
    lacking = []
    for table, privileges in sorted(_NEEDS.items()):
        for privilege in privileges:
            allowed = conn.execute(
                sa.text("SELECT has_table_privilege(CAST(:t AS text), CAST(:p AS text))"),
                {"t": f"public.{table}", "p": privilege},
            ).scalar()
            if not allowed:
                lacking.append(f"public.{table}: {privilege}")
    return lacking
