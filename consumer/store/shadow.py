"""The shadow mode's record: what the service decided for each key, written instead of grants.

Owns every statement on ``cert_consumer.shadow_decisions``. One row per key, upserted at each
evaluation: the latest decision, and the latest transition the service would have made. The
transition is kept when a later decision says no_change, as it will once Torus's worker has
written its own row: the audit compares what the service would have done with what Torus did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from consumer.domain.model import Decision, DecisionKind, Key
from consumer.store.service_tables import shadow_decisions as t


@dataclass(frozen=True)
class WouldHave:
    """The transition the service would have made for a key, and when it decided it."""

    key: Key
    at: datetime
    kind: str
    state: str
    with_distinction: bool


def record(conn: sa.Connection, decisions: Mapping[Key, Decision], *, now: datetime) -> None:
    if not decisions:
        return
    rows = [
        {
            "section_id": key[0],
            "user_id": key[1],
            "decided_at": now,
            "kind": d.kind.value,
            "reason": d.reason.value if d.reason else None,
            **_transition(d, now),
        }
        for key, d in sorted(decisions.items())
    ]
    insert = pg.insert(t).values(rows)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[t.c.section_id, t.c.user_id],
            set_={
                "decided_at": insert.excluded.decided_at,
                "kind": insert.excluded.kind,
                "reason": insert.excluded.reason,
                # A transition replaces the one before, a no_change keeps it.
                **{
                    c: sa.case(
                        (insert.excluded.transition_at.is_(None), t.c[c]), else_=insert.excluded[c]
                    )
                    for c in _TRANSITION
                },
            },
        )
    )


_TRANSITION = (
    "transition_at",
    "transition_kind",
    "transition_state",
    "transition_with_distinction",
)


def _transition(d: Decision, now: datetime) -> dict[str, object]:
    if d.kind is DecisionKind.NO_CHANGE:
        return dict.fromkeys(_TRANSITION)
    return {
        "transition_at": now,
        "transition_kind": d.kind.value,
        "transition_state": d.state.value if d.state else None,
        "transition_with_distinction": d.kind is DecisionKind.UPGRADE or bool(d.with_distinction),
    }


def decided_since(conn: sa.Connection, since: datetime) -> list[Key]:
    query = sa.select(t.c.section_id, t.c.user_id).where(t.c.decided_at >= since)
    return [(int(s), int(u)) for s, u in conn.execute(query)]


def would_have(conn: sa.Connection, keys: list[Key], since: datetime) -> dict[Key, WouldHave]:
    """The transitions decided since ``since`` for these keys."""
    if not keys:
        return {}
    query = sa.select(t).where(
        sa.tuple_(t.c.section_id, t.c.user_id).in_(keys), t.c.transition_at >= since
    )
    return {
        (r.section_id, r.user_id): WouldHave(
            (r.section_id, r.user_id),
            r.transition_at,
            r.transition_kind,
            r.transition_state,
            bool(r.transition_with_distinction),
        )
        for r in conn.execute(query)
    }
