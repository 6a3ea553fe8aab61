"""The loops sleep instead of polling, and the database wakes them: an insert into the debounce
or the outbox notifies, and an evaluator asleep for far longer than the test evaluates a new key
one quiet window later."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from consumer.config import load_settings
from consumer.observability.metrics import Metrics
from consumer.store import debounce, torus
from consumer.store.notifications import OUTBOX, Listener
from consumer.store.service_tables import outbox
from consumer.store.service_tables import pending_evaluations as pending
from tests.integration.conftest import pass_completion, seed_section
from tests.support import evaluator_running, wait_for

pytestmark = pytest.mark.integration
ASLEEP_FOR = 60.0  # an idle loop's longest sleep in these tests: far past every deadline


def took(condition: Callable[[], bool]) -> float:
    """Seconds until ``condition`` held (the test fails after 10 s)."""
    began = time.monotonic()
    wait_for(condition, timeout=10, interval=0.02)
    return time.monotonic() - began


def trigger(engine: sa.Engine, key: tuple[int, int], *, quiet: float) -> None:
    with engine.begin() as conn:
        debounce.upsert(conn, debounce.TriggerBatch.of([key]), quiet=quiet, max_wait=60)


def granted(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(torus.granted_certificates.c.user_id)).scalars())


@pytest.fixture
def evaluator(engine: sa.Engine, database_url: str) -> Iterator[Callable[[float], Metrics]]:
    """Start the real evaluator loop in a thread with a given quiet window; stopped at the end."""
    with contextlib.ExitStack() as running:

        def start(quiet: float) -> Metrics:
            settings = load_settings(
                {"CERT_CONSUMER_DATABASE_URL": database_url},
                idle_sleep_seconds=ASLEEP_FOR,
                quiet_window_seconds=quiet,
                max_wait_seconds=60,
            )
            return running.enter_context(evaluator_running(engine, settings))

        yield start


def listening_evaluators(engine: sa.Engine) -> int:
    """Sessions of this database asleep on LISTEN for a while: the evaluator's listening
    connection, which runs nothing else, once it has gone to sleep."""
    with engine.connect() as conn:
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'idle' AND query LIKE 'LISTEN %' "
            "AND clock_timestamp() - state_change > interval '0.5 seconds'"
        )
        return int(conn.execute(query).scalar_one())


def test_an_idle_evaluator_is_woken_by_a_new_trigger(engine: sa.Engine, evaluator) -> None:
    with engine.begin() as conn:
        seed_section(conn, 31, [3101])
        pass_completion(conn, 31, 3101)
    evaluator(0.0)
    took(lambda: listening_evaluators(engine) == 1)  # asleep, nothing pending

    trigger(engine, (31, 3101), quiet=0.0)

    assert took(lambda: granted(engine) == [3101]) < 3.0  # not the 60 s sleep: notified


def test_a_woken_evaluator_waits_the_quiet_window_then_evaluates(
    engine: sa.Engine, evaluator
) -> None:
    with engine.begin() as conn:
        seed_section(conn, 32, [3201])
        pass_completion(conn, 32, 3201)
    evaluator(1.5)
    took(lambda: listening_evaluators(engine) == 1)

    trigger(engine, (32, 3201), quiet=1.5)
    waited = took(lambda: granted(engine) == [3201])
    assert 1.4 < waited < 4.0  # due one quiet window later, evaluated then: not sooner, not 60 s
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(pending)).scalar_one() == 0


def test_an_outbox_insert_notifies_a_listener(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        listener = Listener(conn, OUTBOX)
        assert listener.wait(0.2) is False  # nothing yet
        with engine.begin() as writer:
            writer.execute(
                sa.insert(outbox).values(
                    event_id="6f1c1f38-5f43-4f59-9d55-2f1f0c6c5a01",
                    event_type="certificate_granted",
                    message_key="1:2",
                    payload={},
                )
            )
        assert listener.wait(5.0) is True
        assert listener.drain() is False  # one insert, one wake-up
