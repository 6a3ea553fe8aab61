"""Benchmark of the batch evaluation path (facts -> rules -> transitions) on 10,000 keys.

Why it exists: DESIGN C predicts ~82 ms of facts per 1,000 keys and a ~3x gain of set-based
facts over one query per key. This puts figures on *our* path (``consumer.evaluation``) over a
seeded course set shaped like a real one, so a regression in facts.py or grants.py shows up
as a number. It is a benchmark, not a test: it asserts nothing and CI does not run it.

    .venv/bin/python -m bench.bench_evaluation [--keys 10000] [--batch 500] [--database-url URL]

Each figure is the median of ``--runs`` runs, every run on a fresh copy of the seeded state
(``CREATE DATABASE ... TEMPLATE``), so what one run writes never changes what the next one sees.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from fractions import Fraction
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from consumer import evaluation
from consumer.domain import model, rules
from consumer.domain.model import Key
from consumer.evaluation import decide_keys, evaluate_keys
from consumer.store import facts, grants, outbox, torus
from consumer.store.migrations import upgrade
from consumer.testing import seeding
from consumer.testing.postgres import LocalPostgres

SEED = 42
SECTIONS = 10
GRADED_PAGES = 10
GRANT_SHARE = 0.05
PARTICIPATION_SHARE = 0.85
SWEEP = (100, 500, 2000)
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "evaluation.json"
INSTRUCTOR_BASE, DEVELOPER_BASE = 1_000_000, 2_000_000
# Torus stores naive UTC; a fixed date keeps the seeded state identical from one run to the next.
SEEDED_AT = datetime(2026, 9, 1, 8, 0)
# Out of 100 weighs double, as percentage-graded pages are the most common.
OUT_OFS: tuple[float, ...] = (10.0, 20.0, 25.0, 100.0, 100.0)
GIVEN = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Niklaus")
FAMILY = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Wirth")

Page = tuple[int, bool | None, bool]  # (resource_id, graded, hidden), as seeding.add_pages wants
Row = dict[str, object]


class ScoreProfile(Enum):
    """Which band a learner's required pages are drawn in, relative to the certificate."""

    DISTINCTION = "distinction"
    COMPLETION = "completion"
    FAIL = "fail"


# ------------------------------------------------------------------------------------------
# The course set


@dataclass(frozen=True)
class SectionPlan:
    """One seeded section: its certificate, its pages and its enrolled learners."""

    section_id: int
    certificate: seeding.Certificate
    pages: tuple[Page, ...]
    learners: tuple[int, ...]

    @property
    def required(self) -> tuple[int, ...]:
        """The pages the rules will require, so that scores can be drawn around thresholds."""
        if self.certificate.assessments_apply_to == "custom":
            return tuple(self.certificate.custom_assessments)
        return tuple(rid for rid, graded, hidden in self.pages if graded and not hidden)

    @property
    def thresholds(self) -> tuple[float, float]:
        """(completion, distinction); every seeded certificate sets both."""
        completion = self.certificate.min_percentage_for_completion
        distinction = self.certificate.min_percentage_for_distinction
        if completion is None or distinction is None:
            raise ValueError(f"section {self.section_id}: the seed sets both thresholds")
        return completion, distinction

    @property
    def instructor(self) -> int:
        return INSTRUCTOR_BASE + self.section_id

    @property
    def developer(self) -> int:
        return DEVELOPER_BASE + self.section_id


def _pages(section_id: int) -> tuple[Page, ...]:
    """Ten graded pages, then a hidden graded one, an ungraded one and one with graded NULL:
    the last three must never be required by an 'all' certificate."""
    graded = [(section_id * 100 + n, True, False) for n in range(1, GRADED_PAGES + 1)]
    base = section_id * 100 + GRADED_PAGES
    extra: list[Page] = [(base + 1, True, True), (base + 2, False, False), (base + 3, None, False)]
    return (*graded, *extra)


def _certificate(index: int, section_id: int, pages: Sequence[Page]) -> seeding.Certificate:
    """Mixed settings, as a real catalogue has them: mostly defaults (50/90), three sections
    with participation requirements, one requiring approval, one custom page list (including
    the hidden page) and one with lower thresholds."""
    base = seeding.Certificate(id=section_id, section_id=section_id)
    match index:
        case 1:
            return replace(base, required_discussion_posts=1, required_class_notes=1)
        case 2:
            return replace(
                base, requires_instructor_approval=True, min_percentage_for_completion=60.0
            )
        case 3:
            custom = (*(rid for rid, _, _ in pages[:5]), pages[GRADED_PAGES][0])
            return replace(base, assessments_apply_to="custom", custom_assessments=custom)
        case 4:
            return replace(
                base,
                required_discussion_posts=2,
                min_percentage_for_completion=70.0,
                min_percentage_for_distinction=95.0,
            )
        case 6:
            return replace(base, required_class_notes=1)
        case 7:
            return replace(
                base, min_percentage_for_completion=40.0, min_percentage_for_distinction=80.0
            )
        case _:
            return base


def plan_sections(keys: int) -> list[SectionPlan]:
    """``keys`` learners spread evenly over SECTIONS sections, each learner in one section."""
    per_section = math.ceil(keys / SECTIONS)
    plans = []
    for index in range(SECTIONS):
        section_id = index + 1
        first = index * per_section + 1
        learners = tuple(range(first, min(first + per_section, keys + 1)))
        pages = _pages(section_id)
        certificate = _certificate(index, section_id, pages)
        plans.append(SectionPlan(section_id, certificate, pages, learners))
    return plans


def all_keys(plans: Sequence[SectionPlan]) -> list[Key]:
    """Every (section, learner), shuffled: claimed batches mix sections in due_at order."""
    keys = [(plan.section_id, user_id) for plan in plans for user_id in plan.learners]
    random.Random(SEED + 1).shuffle(keys)
    return keys


# ------------------------------------------------------------------------------------------
# Per-learner draws (pure: rows only, inserted in bulk afterwards)


@dataclass
class SeedRows:
    """Every learner row, gathered first so that each table is a single executemany."""

    users: list[Row] = field(default_factory=list)
    accesses: list[Row] = field(default_factory=list)
    posts: list[Row] = field(default_factory=list)
    grants: list[Row] = field(default_factory=list)


def _draw_grant(rng: random.Random) -> tuple[str, bool] | None:
    """About 5% already hold a grant: mostly without distinction (the UPGRADE candidates),
    some with distinction and a few denied, both of which the rules must leave alone."""
    if rng.random() >= GRANT_SHARE:
        return None
    draw = rng.random()
    if draw < 0.6:
        return ("earned", False)
    if draw < 0.7:
        return ("pending", False)
    if draw < 0.9:
        return ("earned", True)
    return ("denied", False)


def _draw_profile(rng: random.Random, grant: tuple[str, bool] | None) -> ScoreProfile:
    """A third earn, a sixth earn with distinction, half fall short. Half of the holders of a
    grant without distinction have since scored better, which is what makes an UPGRADE."""
    if grant is not None and grant[1]:
        return ScoreProfile.DISTINCTION
    if grant is not None and grant[0] != "denied":
        return ScoreProfile.DISTINCTION if rng.random() < 0.5 else ScoreProfile.COMPLETION
    draw = rng.random()
    if draw < 1 / 6:
        return ScoreProfile.DISTINCTION
    if draw < 1 / 2:
        return ScoreProfile.COMPLETION
    return ScoreProfile.FAIL


def _points(scale: int, percent: float) -> Fraction:
    return Fraction(str(percent)) * scale / 100


def _score(rng: random.Random, low: float, high: float, *, below_high: bool) -> tuple[float, float]:
    """(score, out_of) with an exact percentage >= low and <= high (< high when below_high).

    Integer scores over the usual out_of values keep the pass/fail of each draw unambiguous
    under the rules' exact arithmetic, so the seeded profile is the outcome the rules reach.
    """
    out_of = rng.choice(OUT_OFS)
    scale = int(out_of)
    least = math.ceil(_points(scale, low))
    most = math.ceil(_points(scale, high)) - 1 if below_high else math.floor(_points(scale, high))
    if least > most:  # the band is narrower than one point at this scale
        return _score(rng, low, high, below_high=below_high) if scale < 100 else (low, 100.0)
    return float(rng.randint(least, most)), out_of


def _access(plan: SectionPlan, user_id: int, page: int, score: tuple[float, float]) -> Row:
    return {
        "user_id": user_id,
        "section_id": plan.section_id,
        "resource_id": page,
        "score": score[0],
        "out_of": score[1],
    }


def _accesses(
    plan: SectionPlan, user_id: int, profile: ScoreProfile, rng: random.Random
) -> list[Row]:
    """Required pages scored into the profile's band for this certificate's thresholds; one
    page off-band for COMPLETION (below distinction) and FAIL (below completion, or never
    opened); pages not required get any score, or none."""
    completion, distinction = plan.thresholds
    required = list(plan.required)
    floor = distinction if profile is ScoreProfile.DISTINCTION else completion
    scores = {page: _score(rng, floor, 100.0, below_high=False) for page in required}
    off = rng.choice(required)
    if profile is ScoreProfile.COMPLETION:
        scores[off] = _score(rng, completion, distinction, below_high=True)
    elif profile is ScoreProfile.FAIL and rng.random() < 0.3:
        del scores[off]
    elif profile is ScoreProfile.FAIL:
        scores[off] = _score(rng, 0.0, completion, below_high=True)
    for page, _, _ in plan.pages:
        if page not in scores and page not in required and rng.random() < 0.8:
            scores[page] = _score(rng, 0.0, 100.0, below_high=False)
    return [_access(plan, user_id, page, score) for page, score in sorted(scores.items())]


def _post(plan: SectionPlan, user_id: int, note: bool, visibility: str, status: str) -> Row:
    page = plan.pages[0][0]
    return {
        "user_id": user_id,
        "section_id": plan.section_id,
        "resource_id": page,
        "annotated_resource_id": page if note else None,
        "visibility": visibility,
        "status": status,
        "parent_post_id": None,
    }


def _posts(plan: SectionPlan, user_id: int, rng: random.Random) -> list[Row]:
    """Where participation is required, most learners meet it exactly and the rest fall one
    short; elsewhere a few learners post anyway. A private or deleted post now and then, which
    must not count."""
    needs = (
        plan.certificate.required_discussion_posts or 0,
        plan.certificate.required_class_notes or 0,
    )
    if any(needs):
        meets = rng.random() < PARTICIPATION_SHARE
        discussion, notes = needs if meets else (max(0, needs[0] - 1), max(0, needs[1] - 1))
    else:
        discussion, notes = rng.choice((0, 0, 0, 1, 2)), rng.choice((0, 0, 0, 0, 1))
    rows = [_post(plan, user_id, False, "public", "approved") for _ in range(discussion)]
    rows += [_post(plan, user_id, True, "public", "submitted") for _ in range(notes)]
    if rng.random() < 0.05:
        rows.append(_post(plan, user_id, rng.random() < 0.5, "private", "approved"))
    if rng.random() < 0.03:
        rows.append(_post(plan, user_id, False, "public", "deleted"))
    return rows


def _grant_row(plan: SectionPlan, user_id: int, grant: tuple[str, bool], rng: random.Random) -> Row:
    return {
        "user_id": user_id,
        "certificate_id": plan.certificate.id,
        "state": grant[0],
        "with_distinction": grant[1],
        "guid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "issued_by": plan.instructor,
        "issued_by_type": "user",
        "issued_at": SEEDED_AT,
        "url": None,
        "student_email_sent": grant[0] == "earned",
    }


def _user(user_id: int, rng: random.Random) -> Row:
    guest = rng.random() < 0.01
    return {
        "id": user_id,
        "email": None if guest else f"learner{user_id}@example.edu",
        "given_name": rng.choice(GIVEN),
        "family_name": rng.choice(FAMILY),
        "guest": guest,
    }


def draw_rows(plans: Sequence[SectionPlan]) -> SeedRows:
    """Every learner's user row, scores, posts and grant, from one seeded generator."""
    rng = random.Random(SEED)
    rows = SeedRows()
    for plan in plans:
        for user_id in plan.learners:
            rows.users.append(_user(user_id, rng))
            grant = _draw_grant(rng)
            rows.accesses += _accesses(plan, user_id, _draw_profile(rng, grant), rng)
            rows.posts += _posts(plan, user_id, rng)
            if grant is not None:
                rows.grants.append(_grant_row(plan, user_id, grant, rng))
    return rows


# ------------------------------------------------------------------------------------------
# Writing the template database


def _staff(plans: Sequence[SectionPlan]) -> list[Row]:
    people = [(p.instructor, "Instructor") for p in plans] + [
        (p.developer, "Author") for p in plans
    ]
    return [{"id": uid, "email": f"staff{uid}@example.edu", "name": name} for uid, name in people]


def _add_section(conn: sa.Connection, plan: SectionPlan) -> None:
    """The section, its staff enrolled first (the earliest enrollment issues certificates),
    its learners, its certificate and its pages."""
    seeding.add_section(conn, plan.section_id)
    start = SEEDED_AT - timedelta(days=30)
    seeding.enroll(
        conn, plan.section_id, [plan.instructor], role=seeding.INSTRUCTOR, inserted_at=start
    )
    seeding.enroll(
        conn,
        plan.section_id,
        [plan.developer],
        role=seeding.CONTENT_DEVELOPER,
        inserted_at=start + timedelta(days=1),
    )
    seeding.enroll(conn, plan.section_id, list(plan.learners), inserted_at=SEEDED_AT)
    seeding.add_certificate(conn, plan.certificate)
    seeding.add_pages(conn, plan.section_id, plan.pages)


def seed(conn: sa.Connection, plans: Sequence[SectionPlan]) -> dict[str, int]:
    """Insert the whole course set in foreign-key order; return the row counts."""
    rows = draw_rows(plans)
    seeding.add_users(conn, [*rows.users, *_staff(plans)])
    for plan in plans:
        _add_section(conn, plan)
    seeding.insert_rows(conn, torus.resource_accesses, rows.accesses)
    seeding.insert_rows(conn, torus.posts, rows.posts)
    seeding.insert_rows(conn, torus.granted_certificates, rows.grants)
    return {
        "sections": len(plans),
        "learners": len(rows.users),
        "resource_accesses": len(rows.accesses),
        "posts": len(rows.posts),
        "granted_certificates": len(rows.grants),
    }


def build_template(admin: sa.Engine, name: str, plans: Sequence[SectionPlan]) -> dict[str, int]:
    """Create, migrate, seed and VACUUM ANALYZE the template (statistics are copied with it,
    so every run plans its queries as a maintained production database would)."""
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(admin.url.set(database=name))
    try:
        with engine.begin() as conn:
            torus.create_torus_tables(conn)
        upgrade(engine)
        with engine.begin() as conn:
            counts = seed(conn, plans)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return counts


@dataclass
class Copies:
    """Fresh databases cloned from the seeded template, one per run."""

    admin: sa.Engine
    template: str
    made: int = 0

    @contextmanager
    def fresh(self) -> Iterator[sa.Engine]:
        """A new copy, dropped afterwards whatever happens."""
        self.made += 1
        name = f"{self.template}_run{self.made}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        engine = sa.create_engine(self.admin.url.set(database=name))
        try:
            yield engine
        finally:
            engine.dispose()
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------------------------------------
# Workloads


@dataclass(frozen=True)
class Run:
    """One timed pass over all keys on a fresh copy."""

    seconds: float
    outcomes: Counter[str]
    transitions: int = 0


Workload = Callable[[sa.Engine], Run]


def outcome(decision: model.Decision) -> str:
    """A stable label per decision, to show the seeded mix and to compare modes."""
    if decision.kind is model.DecisionKind.CREATE:
        return "create_with_distinction" if decision.with_distinction else "create"
    if decision.kind is model.DecisionKind.UPGRADE:
        return "upgrade"
    return f"no_change:{decision.reason.value if decision.reason else '?'}"


def chunks(keys: Sequence[Key], size: int) -> Iterator[Sequence[Key]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def decide_only(engine: sa.Engine, keys: Sequence[Key], batch: int, per_key: bool) -> Run:
    """Facts and decisions, one read transaction per batch. ``per_key`` asks for each key in
    its own call inside the same transactions, so only the query pattern differs."""
    outcomes: Counter[str] = Counter()
    with engine.connect() as conn:
        started = time.perf_counter()
        for chunk in chunks(keys, batch):
            with conn.begin():
                for call in [[key] for key in chunk] if per_key else [chunk]:
                    _, decisions = decide_keys(conn, call)
                    outcomes.update(outcome(d) for d in decisions.values())
        seconds = time.perf_counter() - started
    return Run(seconds, outcomes)


def full_path(engine: sa.Engine, keys: Sequence[Key], batch: int) -> Run:
    """Decide and write grants plus outbox rows, one transaction per batch, as the evaluator
    loop does (minus claiming and releasing the keys)."""
    outcomes: Counter[str] = Counter()
    written = 0
    with engine.connect() as conn:
        started = time.perf_counter()
        for chunk in chunks(keys, batch):
            with conn.begin():
                result = evaluate_keys(conn, chunk, now=datetime.now(UTC))
            outcomes.update(outcome(d) for d in result.decisions.values())
            written += len(result.transitions)
        seconds = time.perf_counter() - started
    return Run(seconds, outcomes, written)


@dataclass(frozen=True)
class Measurement:
    """The runs of one workload and their median."""

    keys: int
    runs: list[Run]

    @property
    def median_s(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def keys_per_s(self) -> float:
        return self.keys / self.median_s

    def as_json(self) -> dict[str, Any]:
        return {
            "keys_per_s": round(self.keys_per_s),
            "median_s": round(self.median_s, 3),
            "runs_s": [round(r.seconds, 3) for r in self.runs],
            "transitions": [r.transitions for r in self.runs],
        }


def measure(copies: Copies, runs: int, keys: int, workload: Workload) -> Measurement:
    results = []
    for _ in range(runs):
        with copies.fresh() as engine:
            results.append(workload(engine))
    return Measurement(keys, results)


# ------------------------------------------------------------------------------------------
# Where the time goes: timers around consumer functions, patched in this process only

PROFILED: tuple[tuple[ModuleType, str], ...] = (
    (evaluation, "load_facts"),
    (facts, "_load_sections"),
    (facts, "_load_certificates"),
    (facts, "_load_pages"),
    (facts, "_load_enrolled"),
    (facts, "_load_grants"),
    (facts, "_load_post_counts"),
    (facts, "_load_scores"),
    (rules, "decide"),
    (evaluation, "apply_decisions"),
    (grants, "_create"),
    (grants, "_upgrade"),
    (outbox, "write"),
)


@dataclass
class CallTimes:
    """Per wrapped function: calls, inclusive time, own time (minus wrapped callees) and the SQL
    time (cursor.execute: server work and transfer) of the statements it issued itself."""

    calls: Counter[str] = field(default_factory=Counter)
    total: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    own: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    sql: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    statements: Counter[str] = field(default_factory=Counter)
    stack: list[list[Any]] = field(default_factory=list)  # [name, time spent in callees]

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame: list[Any] = [name, 0.0]
            self.stack.append(frame)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.stack.pop()
                self.calls[name] += 1
                self.total[name] += elapsed
                self.own[name] += elapsed - frame[1]
                if self.stack:
                    self.stack[-1][1] += elapsed

        return timed

    def statement(self, seconds: float) -> None:
        name = self.stack[-1][0] if self.stack else "(other)"
        self.sql[name] += seconds
        self.statements[name] += 1


@contextmanager
def profiled(engine: sa.Engine) -> Iterator[CallTimes]:
    """Patch PROFILED with timers and time every statement, restoring everything afterwards.
    consumer/ is not edited; a timer costs about a microsecond a call."""
    times = CallTimes()
    originals = [(module, name, getattr(module, name)) for module, name in PROFILED]
    starts: list[float] = []

    def before(*_: Any) -> None:
        starts.append(time.perf_counter())

    def after(*_: Any) -> None:
        times.statement(time.perf_counter() - starts.pop())

    for module, name, original in originals:
        setattr(module, name, times.wrap(f"{module.__name__.split('.')[-1]}.{name}", original))
    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)


def breakdown(copies: Copies, keys: Sequence[Key], batch: int) -> dict[str, Any]:
    """One extra full-path run with timers on (not part of the medians)."""
    with copies.fresh() as engine, profiled(engine) as times:
        run = full_path(engine, keys, batch)
    rows = {
        name: {
            "calls": times.calls[name],
            "statements": times.statements[name],
            "total_s": round(times.total[name], 3),
            "sql_s": round(times.sql[name], 3),
            "python_s": round(times.own[name] - times.sql[name], 3),
        }
        for name in times.calls
    }
    return {"batch": batch, "run_s": round(run.seconds, 3), "functions": rows}


# ------------------------------------------------------------------------------------------
# The benchmark


@contextmanager
def database_server(url: str | None) -> Iterator[tuple[str, str]]:
    """(server URL, description): the given server, or a throw-away embedded one that is
    always destroyed."""
    if url:
        yield url, "given server"
        return
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="bench-eval-")))
    try:
        yield (
            server.start(),
            "embedded (consumer.testing.postgres: fsync off, shared_buffers 128MB)",
        )
    finally:
        server.destroy()


def machine(admin: sa.Engine, server: str) -> dict[str, Any]:
    with admin.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "postgresql": version,
        "server": server,
        "sqlalchemy": sa.__version__,
    }


def run_all(copies: Copies, keys: Sequence[Key], batch: int, runs: int) -> dict[str, Any]:
    """The four measurements, plus the breakdown and a check that every mode decided alike."""
    n = len(keys)
    sweep = {
        size: measure(copies, runs, n, partial(decide_only, keys=keys, batch=size, per_key=False))
        for size in sorted({*SWEEP, batch})
    }
    full = measure(copies, runs, n, partial(full_path, keys=keys, batch=batch))
    single = measure(copies, runs, n, partial(decide_only, keys=keys, batch=batch, per_key=True))
    outcomes = sweep[batch].runs[0].outcomes
    every = [r.outcomes for m in (*sweep.values(), full, single) for r in m.runs]
    return {
        "decide_only": {"batch": batch, **sweep[batch].as_json()},
        "full_path": {"batch": batch, **full.as_json()},
        "one_key_per_call": single.as_json(),
        "set_based_gain": round(sweep[batch].keys_per_s / single.keys_per_s, 1),
        "decide_only_by_batch": {str(size): m.as_json() for size, m in sweep.items()},
        "outcomes": dict(sorted(outcomes.items())),
        "outcomes_identical_across_modes": all(o == outcomes for o in every),
        "breakdown": breakdown(copies, keys, batch),
    }


def benchmark(server_url: str, server: str, keys: int, batch: int, runs: int) -> dict[str, Any]:
    admin = sa.create_engine(
        sa.make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    copies = Copies(admin, f"bench_eval_{uuid.uuid4().hex[:8]}")
    try:
        plans = plan_sections(keys)
        host = machine(admin, server)
        started = time.perf_counter()
        dataset: dict[str, Any] = dict(build_template(admin, copies.template, plans))
        dataset["seed_s"] = round(time.perf_counter() - started, 1)
        report = {
            "parameters": {"keys": keys, "batch": batch, "runs": runs, "seed": SEED},
            "machine": host,
            "dataset": dataset,
            **run_all(copies, all_keys(plans), batch, runs),
        }
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{copies.template}" WITH (FORCE)'))
        admin.dispose()
    return report


# ------------------------------------------------------------------------------------------
# Report


def _rate(figures: dict[str, Any]) -> str:
    runs = " ".join(f"{s:.2f}" for s in figures["runs_s"])
    return f"{figures['keys_per_s']:>8,} keys/s   (runs {runs} s)"


def _breakdown_lines(figures: dict[str, Any]) -> list[str]:
    lines = [
        f"where the time goes (one extra full-path run with timers, batch {figures['batch']}, "
        f"{figures['run_s']:.2f} s):",
        f"  {'function':<30}{'calls':>7}{'stmts':>7}{'total s':>9}{'sql s':>8}{'python s':>10}",
    ]
    for name, row in figures["functions"].items():
        lines.append(
            f"  {name:<30}{row['calls']:>7}{row['statements']:>7}{row['total_s']:>9.3f}"
            f"{row['sql_s']:>8.3f}{row['python_s']:>10.3f}"
        )
    lines.append(
        "  (sql: cursor.execute, i.e. server and transfer; python: own time minus sql,"
        " including the driver building rows)"
    )
    return lines


def render(report: dict[str, Any]) -> str:
    p, m, d = report["parameters"], report["machine"], report["dataset"]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in report["outcomes"].items())
    lines = [
        f"evaluation benchmark: {p['keys']:,} keys, batch {p['batch']}, "
        f"median of {p['runs']} runs, each on a fresh copy of the seeded state",
        f"machine: {m['cpus']} CPUs (load {m['load_average_at_start'][0]} at start), "
        f"Python {m['python']}, PostgreSQL {m['postgresql']} ({m['server']})",
        f"data: {d['sections']} sections, {d['learners']:,} learners, "
        f"{d['resource_accesses']:,} resource_accesses, {d['posts']:,} posts, "
        f"{d['granted_certificates']:,} granted certificates (seeded in {d['seed_s']} s)",
        f"outcomes: {outcomes}",
        f"  identical in every mode and run: {report['outcomes_identical_across_modes']}",
        "",
        f"(a) decide only, batch {p['batch']:<6} {_rate(report['decide_only'])}",
        f"(b) full path, batch {p['batch']:<8} {_rate(report['full_path'])}"
        f"   {report['full_path']['transitions'][0]:,} transitions written",
        f"(c) one key per call        {_rate(report['one_key_per_call'])}"
        f"   set-based is {report['set_based_gain']}x faster",
        "(d) decide only by batch size",
    ]
    for size, figures in report["decide_only_by_batch"].items():
        lines.append(f"    {size:>5} keys per batch      {_rate(figures)}")
    lines += ["", *_breakdown_lines(report["breakdown"])]
    lines.append(f"\ntotal benchmark time: {report['total_s']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_evaluation",
        description="Benchmark of the batch evaluation path on a seeded course set.",
    )
    parser.add_argument("--keys", type=int, default=10_000, help="learners to evaluate")
    parser.add_argument("--batch", type=int, default=500, help="keys per batch for (a)-(c)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to use (databases are created and dropped there); "
        "default: a throw-away embedded server",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="JSON report path")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    with database_server(args.database_url) as (url, server):
        report = benchmark(url, server, args.keys, args.batch, args.runs)
    report = {"benchmark": "evaluation", "when": when, **report}
    report["total_s"] = round(time.perf_counter() - started, 1)
    print(render(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
