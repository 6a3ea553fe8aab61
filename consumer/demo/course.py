"""The demo's course: who is enrolled where, what each learner does and when, what must follow.

Owns two things only the demo needs (the expected outcome is ``demo_expected``'s):
- the plan: three sections (a plain one, one requiring instructor approval, one with
  participation requirements), their staff and ``learners`` learners, and the scripted activity
  as phases of per-learner steps, all drawn from a seeded ``random.Random``;
- writing the plan to the Torus tables as Torus would, returning the trigger events that must
  follow each committed write (the database is the truth; events only trigger).

Each step is one learner's writes in one transaction, and the demo waits for the service to be
idle between phases, so the service sees exactly the states the model decides on.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consumer.domain.model import Key
from consumer.events.catalogue import EventType
from consumer.store import torus
from consumer.testing import seeding

_GIVEN = ("Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun")
_FAMILY = ("Okafor", "Silva", "Novak", "Haddad", "Kim", "Lindqvist", "Moreau", "Patel", "Rossi")
FIRST_LEARNER_ID = 1001


@dataclass(frozen=True)
class Profile:
    """One kind of learner: phase-1 score range in percent (None: never active), phase-3
    ``retake`` range for every graded page, ``first_pages`` attempted in phase 1 (the rest
    follow in phase 3), and the (discussion posts, class notes) written in phase 2."""

    name: str
    first: tuple[int, int] | None
    retake: tuple[int, int] | None = None
    first_pages: int | None = None
    posts: tuple[int, int] = (2, 1)


PROFILES = (
    Profile("excellent", (92, 100)),
    Profile("improver", (72, 84), retake=(93, 100)),
    Profile("steady", (72, 84)),
    Profile("borderline", (52, 58)),
    Profile("late", (75, 84), first_pages=1),
    Profile("quiet", (76, 84), posts=(1, 0)),
    Profile("struggling", (20, 45), posts=(0, 0)),
    Profile("inactive", None, posts=(0, 0)),
)


@dataclass(frozen=True)
class SectionPlan:
    """A section, its certificate, its pages as (resource_id, graded, hidden, out_of) and its
    staff as (user_id, context role), who are enrolled before the learners."""

    id: int
    title: str
    certificate: seeding.Certificate
    pages: tuple[tuple[int, bool | None, bool, float], ...]
    staff: tuple[tuple[int, int], ...]

    @property
    def graded(self) -> tuple[int, ...]:
        return tuple(rid for rid, graded, hidden, _ in self.pages if graded and not hidden)

    @property
    def practice(self) -> tuple[int, ...]:
        return tuple(rid for rid, graded, _, _ in self.pages if graded is False)

    def out_of(self, resource_id: int) -> float:
        return next(o for rid, _, _, o in self.pages if rid == resource_id)


_CERT = seeding.Certificate
_PRACTICE = ((14, False, False, 10.0),)
SECTIONS = (
    SectionPlan(
        1,
        "Introduction to Statistics",
        _CERT(1, 1, min_percentage_for_completion=60.0, min_percentage_for_distinction=90.0),
        # Page 14 is practice (ungraded): its score must not matter.
        ((11, True, False, 100.0), (12, True, False, 20.0), (13, True, False, 10.0), *_PRACTICE),
        ((1, seeding.INSTRUCTOR), (2, seeding.INSTRUCTOR)),
    ),
    SectionPlan(
        2,
        "General Chemistry",
        _CERT(2, 2, min_percentage_for_completion=70.0, requires_instructor_approval=True),
        ((21, True, False, 50.0), (22, True, False, 100.0), (23, True, True, 100.0)),
        ((3, seeding.INSTRUCTOR), (4, seeding.CONTENT_DEVELOPER)),
    ),
    SectionPlan(
        3,
        "Academic Writing",
        _CERT(
            3,
            3,
            required_discussion_posts=2,
            required_class_notes=1,
            min_percentage_for_completion=50.0,
            min_percentage_for_distinction=85.0,
        ),
        ((31, True, False, 100.0), (32, True, False, 10.0)),
        ((5, seeding.INSTRUCTOR),),
    ),
)


@dataclass(frozen=True)
class Step:
    """One learner's writes, committed together, then announced by one event per row."""

    section_id: int
    user_id: int
    scores: tuple[tuple[int, float, float], ...] = ()  # (resource_id, score, out_of)
    discussion_posts: int = 0
    class_notes: int = 0
    cause: str = "GRADED_FINALIZE"

    @property
    def key(self) -> Key:
        return (self.section_id, self.user_id)


@dataclass(frozen=True)
class Phase:
    title: str
    steps: tuple[Step, ...] = ()
    lowered: tuple[tuple[int, float], ...] = ()  # (section_id, new completion threshold)


@dataclass(frozen=True)
class CoursePlan:
    sections: tuple[SectionPlan, ...]
    users: tuple[dict[str, object], ...]
    enrolled: dict[int, tuple[int, ...]]  # section id -> learner ids
    phases: tuple[Phase, ...]

    def learner_keys(self, section_id: int | None = None) -> list[Key]:
        return [
            (s, u)
            for s, ids in sorted(self.enrolled.items())
            if section_id in (None, s)
            for u in ids
        ]


def _person(user_id: int, index: int) -> dict[str, object]:
    given, family = _GIVEN[index % len(_GIVEN)], _FAMILY[(index * 7) % len(_FAMILY)]
    email = f"{given}.{family}.{user_id}@example.edu".lower()
    return {"id": user_id, "given_name": given, "family_name": family, "email": email}


def _learner_steps(
    section: SectionPlan, profile: Profile, user_id: int, rng: random.Random
) -> tuple[Step | None, Step | None, Step | None]:
    """The learner's step in phases 1 (scores), 2 (posts) and 3 (retakes), None where idle."""
    if profile.first is None:
        return None, None, None

    def scored(
        pages: tuple[int, ...], span: tuple[int, int]
    ) -> tuple[tuple[int, float, float], ...]:
        return tuple(
            (r, round(rng.randint(*span) * section.out_of(r) / 100, 2), section.out_of(r))
            for r in pages
        )

    attempted = section.graded[: profile.first_pages]
    first = Step(section.id, user_id, scored(attempted + section.practice, profile.first))
    posts = Step(section.id, user_id, (), *profile.posts) if any(profile.posts) else None
    missing = section.graded[len(attempted) :]
    retake = None
    if missing:
        retake = Step(section.id, user_id, scored(missing, profile.first), cause="MANUAL_GRADING")
    elif profile.retake:
        retake = Step(
            section.id, user_id, scored(section.graded, profile.retake), cause="MANUAL_GRADING"
        )
    return first, posts, retake


def build_plan(learners: int, rng: random.Random) -> CoursePlan:
    """Spread ``learners`` round-robin over the sections, profiles cycling within each."""
    users = [_person(u, u) for u in sorted({u for s in SECTIONS for u, _ in s.staff})]
    enrolled: dict[int, tuple[int, ...]] = defaultdict(tuple)
    steps: tuple[list[Step], list[Step], list[Step]] = ([], [], [])
    for k in range(learners):
        section = SECTIONS[k % len(SECTIONS)]
        user_id = FIRST_LEARNER_ID + k
        users.append(_person(user_id, k))
        enrolled[section.id] += (user_id,)
        profile = PROFILES[(k // len(SECTIONS)) % len(PROFILES)]
        for phase_steps, step in zip(
            steps, _learner_steps(section, profile, user_id, rng), strict=True
        ):
            if step is not None:
                phase_steps.append(step)
    phases = (
        Phase("First attempts: graded pages are finalized", tuple(steps[0])),
        Phase("Discussion week: posts and class notes", tuple(steps[1])),
        Phase("Retakes and late submissions, graded by instructors", tuple(steps[2])),
        Phase("An instructor lowers the pass mark of Statistics to 50%", lowered=((1, 50.0),)),
    )
    return CoursePlan(SECTIONS, tuple(users), dict(enrolled), phases)


# -- writing the plan as Torus would ------------------------------------------------------------


@dataclass(frozen=True)
class TorusEvent:
    """A trigger to publish once its write committed (``user_id`` None: section-wide)."""

    event_type: EventType
    section_id: int
    user_id: int | None
    record: dict[str, Any]


def seed(conn: sa.Connection, plan: CoursePlan) -> None:
    """Users, sections, staff (enrolled first, so the earliest enrollment issues
    certificates, as in Torus), learners, certificates and pages."""
    seeding.add_users(conn, plan.users)
    for section in plan.sections:
        seeding.add_section(conn, section.id, title=section.title)
        for user_id, role in section.staff:
            seeding.enroll(conn, section.id, [user_id], role=role)
        seeding.enroll(conn, section.id, list(plan.enrolled.get(section.id, ())))
        seeding.add_certificate(conn, section.certificate)
        seeding.add_pages(conn, section.id, [(r, g, h) for r, g, h, _ in section.pages])


def write_step(conn: sa.Connection, step: Step, now: datetime) -> list[TorusEvent]:
    """One learner's scores and posts, and the events announcing each row."""
    seeding.set_scores(conn, *step.key, {rid: (s, o) for rid, s, o in step.scores})
    base = {"section_id": step.section_id, "user_id": step.user_id, "occurred_at": now}
    events = [
        TorusEvent(
            EventType.PAGE_SCORE_UPDATED,
            *step.key,
            base | {"resource_id": rid, "score": s, "out_of": o, "cause": step.cause},
        )
        for rid, s, o in step.scores
    ]
    # A class note annotates a page of the section; a discussion post annotates nothing.
    annotations = [None] * step.discussion_posts + [step.section_id * 10 + 1] * step.class_notes
    for annotated in annotations:
        post = sa.insert(torus.posts).values(
            section_id=step.section_id, user_id=step.user_id, annotated_resource_id=annotated
        )
        post_id = conn.execute(post.returning(torus.posts.c.id)).scalar_one()
        record = {"post_id": post_id, "annotated_resource_id": annotated, "visibility": "PUBLIC"}
        events.append(TorusEvent(EventType.POST_CREATED, *step.key, base | record))
    return events


def lower_threshold(
    conn: sa.Connection, section_id: int, threshold: float, now: datetime
) -> TorusEvent:
    """An instructor saves new certificate settings: every learner must be looked at again."""
    conn.execute(
        sa.update(torus.certificates)
        .where(torus.certificates.c.section_id == section_id)
        .values(min_percentage_for_completion=threshold, updated_at=sa.func.now())
    )
    record = {"section_id": section_id, "occurred_at": now}
    return TorusEvent(EventType.CERTIFICATE_SETTINGS_CHANGED, section_id, None, record)
