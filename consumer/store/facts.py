"""Reads the facts of many (section_id, user_id) keys from the Torus tables, set-based.

A batch costs a constant number of queries (one per fact kind), whatever its size, so a
thousand keys cost about what one does. The result for a key never depends on which other keys
share its batch. Reads only; turns database values into the pure types of ``consumer.rules``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from consumer.domain import model
from consumer.domain.model import PAGE_RESOURCE_TYPE, Key
from consumer.domain.stored import certificate_settings, exact
from consumer.store.torus import (
    certificates,
    enrolled_learners,
    enrollments,
    granted_certificates,
    posts,
    resource_accesses,
    section_resources,
    sections,
)


def keys_table(keys: Sequence[Key]) -> Any:
    """The batch as a two-column relation to join against: unnest(section_ids, user_ids)."""
    section_ids = sa.cast(
        sa.literal([k[0] for k in keys], ARRAY(sa.BigInteger)), ARRAY(sa.BigInteger)
    )
    user_ids = sa.cast(sa.literal([k[1] for k in keys], ARRAY(sa.BigInteger)), ARRAY(sa.BigInteger))
    return (
        sa.func.unnest(section_ids, user_ids)
        .table_valued("section_id", "user_id", name="k")
        .render_derived(with_types=False)
    )


def _section_ids(keys: Sequence[Key]) -> list[int]:
    return sorted({section_id for section_id, _ in keys})


def _load_sections(conn: sa.Connection, section_ids: list[int]) -> dict[int, bool]:
    query = sa.select(sections.c.id, sections.c.certificate_enabled).where(
        sections.c.id.in_(section_ids)
    )
    return {row.id: bool(row.certificate_enabled) for row in conn.execute(query)}


def _load_certificates(
    conn: sa.Connection, section_ids: list[int]
) -> dict[int, tuple[model.CertificateSettings, ...]]:
    query = (
        sa.select(certificates)
        .where(certificates.c.section_id.in_(section_ids))
        .order_by(certificates.c.id)
    )
    found: dict[int, list[model.CertificateSettings]] = defaultdict(list)
    for row in conn.execute(query):
        found[row.section_id].append(certificate_settings(row))
    return {section_id: tuple(certs) for section_id, certs in found.items()}


def _load_enrolled(conn: sa.Connection, keys: Sequence[Key]) -> set[Key]:
    k = keys_table(keys)
    query = enrolled_learners().join(
        k, sa.and_(enrollments.c.section_id == k.c.section_id, enrollments.c.user_id == k.c.user_id)
    )
    return {(row.section_id, row.user_id) for row in conn.execute(query)}


def _load_grants(conn: sa.Connection, keys: Sequence[Key]) -> dict[Key, list[model.ExistingGrant]]:
    k = keys_table(keys)
    query = (
        sa.select(
            certificates.c.section_id,
            granted_certificates.c.user_id,
            granted_certificates.c.id,
            granted_certificates.c.certificate_id,
            granted_certificates.c.state,
            granted_certificates.c.with_distinction,
        )
        .select_from(granted_certificates)
        .join(certificates, certificates.c.id == granted_certificates.c.certificate_id)
        .join(
            k,
            sa.and_(
                certificates.c.section_id == k.c.section_id,
                granted_certificates.c.user_id == k.c.user_id,
            ),
        )
        .order_by(granted_certificates.c.id)
    )
    found: dict[Key, list[model.ExistingGrant]] = defaultdict(list)
    for row in conn.execute(query):
        found[(row.section_id, row.user_id)].append(
            model.ExistingGrant(
                granted_certificate_id=row.id,
                certificate_id=row.certificate_id,
                state=model.GrantState(row.state),
                with_distinction=bool(row.with_distinction),
            )
        )
    return found


def deleted_post_counts(conn: sa.Connection, key: Key) -> tuple[int, int]:
    """(deleted public discussion posts, deleted public class notes) of one learner: what
    Torus counts and the decision does not (``explain`` says so)."""
    return _load_post_counts(conn, [key], deleted=True).get(key, (0, 0))


def _load_post_counts(
    conn: sa.Connection, keys: Sequence[Key], *, deleted: bool = False
) -> dict[Key, tuple[int, int]]:
    """(public discussion posts, public class notes) per key; deleted posts do not count
    (with ``deleted``, only they do)."""
    k = keys_table(keys)
    status = posts.c.status == "deleted" if deleted else posts.c.status != "deleted"
    is_note = posts.c.annotated_resource_id.is_not(None)
    query = (
        sa.select(
            posts.c.section_id,
            posts.c.user_id,
            sa.func.count().filter(sa.not_(is_note)).label("discussion"),
            sa.func.count().filter(is_note).label("notes"),
        )
        .join(k, sa.and_(posts.c.section_id == k.c.section_id, posts.c.user_id == k.c.user_id))
        .where(posts.c.visibility == "public", status)
        .group_by(posts.c.section_id, posts.c.user_id)
    )
    return {(r.section_id, r.user_id): (r.discussion, r.notes) for r in conn.execute(query)}


def _load_pages(
    conn: sa.Connection, section_ids: list[int]
) -> dict[int, tuple[model.SectionPage, ...]]:
    query = (
        sa.select(
            section_resources.c.section_id,
            section_resources.c.resource_id,
            section_resources.c.graded,
            section_resources.c.hidden,
        )
        .where(
            section_resources.c.section_id.in_(section_ids),
            section_resources.c.resource_type_id == PAGE_RESOURCE_TYPE,
        )
        .order_by(section_resources.c.section_id, section_resources.c.resource_id)
    )
    found: dict[int, list[model.SectionPage]] = defaultdict(list)
    for row in conn.execute(query):
        found[row.section_id].append(
            model.SectionPage(row.resource_id, row.graded, bool(row.hidden))
        )
    return {section_id: tuple(pages) for section_id, pages in found.items()}


def _load_scores(conn: sa.Connection, keys: Sequence[Key]) -> dict[Key, dict[int, model.PageScore]]:
    """Each key's scores on the section's pages, one row per key with the pages as arrays.

    Only pages can ever be required (``rules.required_pages``), so scores of other resources
    (activities) are left in the database; the arrays spare a result row per learner and page,
    the hottest loop of an evaluation.
    """
    k = keys_table(keys)
    ra, sr = resource_accesses, section_resources
    query = (
        sa.select(
            ra.c.section_id,
            ra.c.user_id,
            sa.func.array_agg(ra.c.resource_id),
            sa.func.array_agg(ra.c.score),
            sa.func.array_agg(ra.c.out_of),
        )
        .join(k, sa.and_(ra.c.section_id == k.c.section_id, ra.c.user_id == k.c.user_id))
        .join(
            sr,
            sa.and_(
                sr.c.section_id == ra.c.section_id,
                sr.c.resource_id == ra.c.resource_id,
                sr.c.resource_type_id == PAGE_RESOURCE_TYPE,
            ),
        )
        .group_by(ra.c.section_id, ra.c.user_id)
    )
    page_score = _page_score
    return {
        (section_id, user_id): {
            resource_id: page_score(score, out_of)
            for resource_id, score, out_of in zip(resource_ids, scores, outs, strict=True)
        }
        for section_id, user_id, resource_ids, scores, outs in conn.execute(query).all()
    }


@functools.lru_cache(maxsize=65536)
def _page_score(score: float | None, out_of: float | None) -> model.PageScore:
    """One shared, immutable PageScore per stored pair: scores repeat (a class has few distinct
    out_of values and many equal scores), and building them was a hot spot."""
    return model.PageScore(exact(score), exact(out_of))


def _grant_for_section(
    grants: list[model.ExistingGrant], certs: tuple[model.CertificateSettings, ...]
) -> model.ExistingGrant | None:
    # With one certificate row there is at most one grant (unique index). With several rows
    # the rules refuse the section anyway, so which grant is passed does not matter.
    return grants[0] if grants and certs else None


def load_facts(conn: sa.Connection, keys: Iterable[Key]) -> dict[Key, model.Facts]:
    """The facts of every key, in 7 queries whatever the number of keys."""
    unique = sorted(set(keys))
    if not unique:
        return {}
    section_ids = _section_ids(unique)
    enabled = _load_sections(conn, section_ids)
    certs = _load_certificates(conn, section_ids)
    pages = _load_pages(conn, section_ids)
    enrolled = _load_enrolled(conn, unique)
    grants = _load_grants(conn, unique)
    counts = _load_post_counts(conn, unique)
    scores = _load_scores(conn, unique)
    result: dict[Key, model.Facts] = {}
    for key in unique:
        section_id, user_id = key
        discussion, notes = counts.get(key, (0, 0))
        section_certs = certs.get(section_id, ())
        result[key] = model.Facts(
            section_id=section_id,
            user_id=user_id,
            certificate_enabled=enabled.get(section_id, False),
            learner_enrolled=key in enrolled,
            certificates=section_certs,
            grant=_grant_for_section(grants.get(key, []), section_certs),
            public_discussion_posts=discussion,
            public_class_notes=notes,
            section_pages=pages.get(section_id, ()),
            scores=scores.get(key, {}),
        )
    return result
