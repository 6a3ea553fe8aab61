"""One evaluation pass over a batch of keys: load facts, decide, write transitions and events.

The shared path of the evaluator loop, the ``evaluate`` CLI and the benchmarks, so a key is
decided the same way wherever it comes from. Runs in the caller's transaction; the clock and
the guid source are passed in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import structlog

from consumer.domain import model, rules
from consumer.domain.model import Key
from consumer.store import grants, outbox, shadow
from consumer.store.facts import load_facts
from consumer.store.grants import Transition, apply_decisions

log = structlog.get_logger("consumer.evaluation")


@dataclass(frozen=True)
class EvaluationResult:
    decisions: dict[Key, model.Decision]
    transitions: list[Transition]
    unaddressed: tuple[Transition, ...] = ()  # approval requests with no instructor to ask


def decide_keys(
    conn: sa.Connection, keys: Iterable[Key]
) -> tuple[dict[Key, model.Facts], dict[Key, model.Decision]]:
    facts = load_facts(conn, keys)
    decisions = {key: rules.decide(f) for key, f in facts.items()}
    for (section_id, user_id), decision in decisions.items():
        if decision.reason is model.Reason.DUPLICATE_CERTIFICATES:
            # Torus crashes here; we refuse the section loudly instead and keep going.
            log.error("duplicate_certificates", section_id=section_id, user_id=user_id)
    return facts, decisions


def evaluate_keys(
    conn: sa.Connection,
    keys: Iterable[Key],
    *,
    now: datetime,
    apply: bool = True,
    new_guid: Callable[[], uuid.UUID] = uuid.uuid4,
) -> EvaluationResult:
    """Decide every key; when ``apply``, write the transitions and their outbox events."""
    facts, decisions = decide_keys(conn, keys)
    if not apply:
        return EvaluationResult(decisions, [])
    transitions = apply_decisions(conn, facts, decisions, now=now, new_guid=new_guid)
    written = outbox.write(conn, transitions)
    return EvaluationResult(decisions, transitions, written.unaddressed)


def shadow_keys(conn: sa.Connection, keys: Iterable[Key], *, now: datetime) -> EvaluationResult:
    """Decide every key as ``evaluate_keys`` does, and record the decisions in the shadow
    table instead of writing grants or events (``run --shadow``)."""
    _, decisions = decide_keys(conn, keys)
    shadow.record(conn, decisions, now=now)
    return EvaluationResult(decisions, [])


def announce_earned(
    conn: sa.Connection, granted_certificate_ids: Iterable[int], *, now: datetime
) -> list[Transition]:
    """Write a certificate-granted event for each of these certificates that another writer
    made earned (an instructor approved it in Torus); the ones announced now, in the caller's
    transaction. A certificate whose event exists already (the service's own grant, or an
    approval announced before) is not announced again."""
    earned = grants.earned_elsewhere(conn, list(granted_certificate_ids), now=now)
    written = outbox.write(conn, earned)
    return [t for t in earned if t.event_id in written.new]
