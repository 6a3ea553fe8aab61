"""Counting the SQL statements a database role ran in one database, with pg_stat_statements.

The service connects as its own role and the benchmark as ``postgres``, so the benchmark's
polling is never counted. Every top-level statement is counted, BEGIN and COMMIT included
(track_utility=on): each one is a round trip the database serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

_UTILITY = (
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "SHOW",
    "LISTEN",
    "UNLISTEN",
    "DISCARD",
    "RESET",
)

_READ = sa.text(
    """
    SELECT s.query, s.calls, s.total_exec_time FROM pg_stat_statements s
    JOIN pg_roles r ON r.oid = s.userid
    JOIN pg_database d ON d.oid = s.dbid
    WHERE r.rolname = :role AND d.datname = :database
    ORDER BY s.calls DESC
    """
)


@dataclass(frozen=True)
class Count:
    total: int
    utility: int  # BEGIN, COMMIT, SET, LISTEN...
    exec_seconds: float = 0.0  # time PostgreSQL spent executing them
    top: list[tuple[str, int, float]] = field(default_factory=list)  # (query head, calls, s)

    def as_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "utility": self.utility,
            "exec_seconds": self.exec_seconds,
            "top": [{"query": q, "calls": c, "exec_seconds": t} for q, c, t in self.top],
        }


def reset(admin: sa.Engine) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_statements_reset()"))


def read(admin: sa.Engine, *, role: str, database: str, top: int = 8) -> Count:
    with admin.connect() as conn:
        found = conn.execute(_READ, {"role": role, "database": database})
        rows = [(str(r.query), int(r.calls), float(r.total_exec_time) / 1000) for r in found]
    utility = sum(c for q, c, _ in rows if q.lstrip().upper().startswith(_UTILITY))
    heads = [(" ".join(q.split())[:110], c, t) for q, c, t in rows[:top]]
    return Count(sum(c for _, c, _ in rows), utility, sum(t for _, _, t in rows), heads)
