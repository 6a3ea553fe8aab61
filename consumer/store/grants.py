"""Writes decided transitions to granted_certificates and names the event each one announces.

Runs inside the caller's transaction, which also writes the events (``consumer.evaluation``),
so a transition and its event commit together or not at all. Concurrency safety comes from the
database, not from luck:
- CREATE is ``INSERT ... ON CONFLICT (user_id, certificate_id) DO NOTHING``: of concurrent
  creators exactly one gets the row back, the others make no transition and no event;
- UPGRADE is a conditional ``UPDATE`` that only matches a row still in the state the decision
  saw (same state, no distinction yet), so a concurrent upgrade or an instructor's denial wins.
Event ids are uuid5(granted certificate id, new guid, event type): a re-publish after a crash
carries the same id, and downstream dedupes on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on

from consumer.domain import model
from consumer.domain.model import Key
from consumer.events.catalogue import EventType
from consumer.store.torus import enrollments

EVENT_NAMESPACE = uuid.UUID("6f1d9a52-8a8e-4c53-9a3c-3f0c2b1f7e10")


@dataclass(frozen=True)
class Transition:
    """One effective change of granted_certificates, and the event that announces it."""

    section_id: int
    user_id: int
    kind: model.DecisionKind
    granted_certificate_id: int
    state: model.GrantState
    with_distinction: bool
    guid: uuid.UUID
    issued_at: datetime
    event_type: EventType
    event_id: uuid.UUID
    cause: model.GrantCause = model.GrantCause.RULES

    def ids(self) -> dict[str, object]:
        """What a log line may say of it: ids only, never names or e-mails."""
        return {
            "section_id": self.section_id,
            "user_id": self.user_id,
            "granted_certificate_id": self.granted_certificate_id,
            "event_id": str(self.event_id),
        }


def event_id_for(granted_certificate_id: int, guid: uuid.UUID, event_type: EventType) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{granted_certificate_id}:{guid}:{event_type.value}")


def event_type_for(state: model.GrantState) -> EventType:
    """Earned certificates go to the PDF service; pending ones ask instructors to approve."""
    if state is model.GrantState.PENDING:
        return EventType.APPROVAL_REQUESTED
    return EventType.CERTIFICATE_GRANTED


def _db_time(now: datetime) -> datetime:
    """Torus stores timestamp(0) holding UTC: naive, whole seconds."""
    return now.astimezone(UTC).replace(tzinfo=None, microsecond=0)


def _issuers(conn: sa.Connection, section_ids: set[int]) -> dict[int, int]:
    """The section's earliest enrollment's user (any role; ties by enrollment id)."""
    if not section_ids:
        return {}
    query = (
        sa.select(enrollments.c.section_id, enrollments.c.user_id)
        .where(enrollments.c.section_id.in_(sorted(section_ids)))
        .order_by(enrollments.c.section_id, enrollments.c.inserted_at, enrollments.c.id)
        .ext(distinct_on(enrollments.c.section_id))
    )
    return {row.section_id: row.user_id for row in conn.execute(query)}


_INSERT_GRANTS = sa.text(
    """
    INSERT INTO public.granted_certificates AS g
        (user_id, certificate_id, state, with_distinction, guid, issued_by, issued_by_type,
         issued_at, url, student_email_sent, inserted_at, updated_at)
    SELECT v.user_id, v.certificate_id, v.state::granted_certificates_state, v.with_distinction,
           v.guid, v.issued_by, 'user', :now, NULL, false, :now, :now
    FROM unnest(CAST(:user_ids AS bigint[]), CAST(:certificate_ids AS bigint[]),
                CAST(:states AS text[]), CAST(:distinctions AS boolean[]),
                CAST(:guids AS text[]), CAST(:issuers AS int[]))
         AS v(user_id, certificate_id, state, with_distinction, guid, issued_by)
    ORDER BY v.user_id, v.certificate_id
    ON CONFLICT (user_id, certificate_id) DO NOTHING
    RETURNING g.id, g.user_id, g.certificate_id, g.state::text AS state, g.with_distinction,
              g.guid, g.issued_at
    """
)

_UPGRADE_GRANTS = sa.text(
    """
    UPDATE public.granted_certificates AS g
    SET with_distinction = true, state = v.new_state::granted_certificates_state,
        guid = v.guid, url = NULL, student_email_sent = false, updated_at = :now
    FROM unnest(CAST(:ids AS bigint[]), CAST(:seen_states AS text[]),
                CAST(:new_states AS text[]), CAST(:guids AS text[]))
         AS v(id, seen_state, new_state, guid)
    WHERE g.id = v.id AND g.state::text = v.seen_state AND g.with_distinction = false
    RETURNING g.id, g.user_id, g.certificate_id, g.state::text AS state, g.with_distinction,
              g.guid, g.issued_at
    """
)


def _create(
    conn: sa.Connection,
    creates: Sequence[tuple[Key, model.Decision]],
    now: datetime,
    new_guid: Callable[[], uuid.UUID],
) -> list[sa.Row[Any]]:
    if not creates:
        return []
    issuers = _issuers(conn, {key[0] for key, _ in creates})
    params = {
        "now": now,
        "user_ids": [key[1] for key, _ in creates],
        "certificate_ids": [d.certificate_id for _, d in creates],
        "states": [d.state.value for _, d in creates if d.state is not None],
        "distinctions": [bool(d.with_distinction) for _, d in creates],
        "guids": [str(new_guid()) for _ in creates],
        "issuers": [issuers.get(key[0]) for key, _ in creates],
    }
    return list(conn.execute(_INSERT_GRANTS, params))


def _upgrade(
    conn: sa.Connection,
    upgrades: Sequence[tuple[model.ExistingGrant, model.Decision]],
    now: datetime,
    new_guid: Callable[[], uuid.UUID],
) -> list[sa.Row[Any]]:
    if not upgrades:
        return []
    params = {
        "now": now,
        "ids": [g.granted_certificate_id for g, _ in upgrades],
        "seen_states": [g.state.value for g, _ in upgrades],
        "new_states": [d.state.value for _, d in upgrades if d.state is not None],
        "guids": [str(new_guid()) for _ in upgrades],
    }
    return list(conn.execute(_UPGRADE_GRANTS, params))


def _transition(
    row: sa.Row[Any], section_id: int, kind: model.DecisionKind, when: datetime
) -> Transition:
    state = model.GrantState(row.state)
    guid = uuid.UUID(row.guid)
    event_type = event_type_for(state)
    return Transition(
        section_id=section_id,
        user_id=row.user_id,
        kind=kind,
        granted_certificate_id=row.id,
        state=state,
        with_distinction=row.with_distinction,
        guid=guid,
        # A legacy row may lack issued_at; the event still needs a time, so use this write's.
        issued_at=row.issued_at or when,
        event_type=event_type,
        event_id=event_id_for(row.id, guid, event_type),
    )


def apply_decisions(
    conn: sa.Connection,
    facts: Mapping[Key, model.Facts],
    decisions: Mapping[Key, model.Decision],
    *,
    now: datetime,
    new_guid: Callable[[], uuid.UUID] = uuid.uuid4,
) -> list[Transition]:
    """Write every CREATE/UPGRADE of ``decisions``; return the effective transitions (a lost
    race is not one). The caller writes their events (``outbox.write``) in the same transaction."""
    when = _db_time(now)
    section_of_certificate = {
        d.certificate_id: key[0] for key, d in decisions.items() if d.certificate_id is not None
    }
    creates = [(k, d) for k, d in sorted(decisions.items()) if d.kind is model.DecisionKind.CREATE]
    upgrades = []
    for key, decision in sorted(decisions.items()):
        grant = facts[key].grant
        if decision.kind is model.DecisionKind.UPGRADE and grant is not None:
            upgrades.append((grant, decision))
    transitions = [
        _transition(
            row, section_of_certificate[row.certificate_id], model.DecisionKind.CREATE, when
        )
        for row in _create(conn, creates, when, new_guid)
    ] + [
        _transition(
            row, section_of_certificate[row.certificate_id], model.DecisionKind.UPGRADE, when
        )
        for row in _upgrade(conn, upgrades, when, new_guid)
    ]
    return transitions


_EARNED_ELSEWHERE = sa.text(
    """
    SELECT g.id, g.user_id, g.state::text AS state, g.with_distinction, g.guid, g.issued_at,
           c.section_id
    FROM public.granted_certificates g JOIN public.certificates c ON c.id = g.certificate_id
    WHERE g.id = ANY(CAST(:ids AS bigint[])) AND g.state = 'earned' AND g.url IS NULL
    ORDER BY g.id
    """
)


def earned_elsewhere(
    conn: sa.Connection, granted_certificate_ids: Sequence[int], *, now: datetime
) -> list[Transition]:
    """The certificates of ``granted_certificate_ids`` that are earned and not yet rendered
    (no ``url``), as transitions to announce; the database decides, not the change record.

    Their event ids are derived as for the service's own transitions, so a certificate the
    service itself made earned maps to the event it already wrote (the outbox keeps the first),
    and a replayed change maps to the one announced before: only a certificate made earned by
    another writer (an instructor's approval in Torus) gets a new event.
    """
    if not granted_certificate_ids:
        return []
    rows = conn.execute(_EARNED_ELSEWHERE, {"ids": sorted(set(granted_certificate_ids))})
    return [
        replace(
            _transition(row, row.section_id, model.DecisionKind.NO_CHANGE, _db_time(now)),
            cause=model.GrantCause.INSTRUCTOR_APPROVAL,
        )
        for row in rows
    ]
