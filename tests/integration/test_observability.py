"""Metrics, health and readiness of the real `cert-consumer run` process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from tests.integration.conftest import pass_completion, pass_distinction, seed_section
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_metrics_after_a_known_workload(engine, env, services, activity, outputs, topics) -> None:
    with engine.begin() as conn:
        seed_section(conn, 9, [91, 92, 93])
        seed_section(conn, 10, [101], approval=True)
        pass_completion(conn, 9, 91)
        pass_distinction(conn, 9, 92)
        pass_completion(conn, 10, 101)
    env["CERT_CONSUMER_LAG_INTERVAL_SECONDS"] = "1"
    service = services(env)
    for section_id, user_id in ((9, 91), (9, 92), (9, 93), (10, 101)):
        activity.score(section_id, user_id)
    activity.raw(topics.scores, b"\x00\x00\x00\x00\x07not avro", key=b"9:93")
    activity.flush()
    outputs.read_until(3)

    def metric(name: str, **labels: str) -> float:
        return service.metric(name, labels or None)

    wait_for(lambda: metric("cert_consumer_events_published_total") == 3, what="published")
    assert metric("cert_consumer_events_consumed_total", topic=topics.scores) == 5
    assert metric("cert_consumer_decode_failures_total") == 1
    assert metric("cert_consumer_dlq_records_total", topic=topics.scores) == 1
    assert metric("cert_consumer_header_problems_total") == 0  # the producer set them right
    assert metric("cert_consumer_evaluations_total", decision="create") == 3
    assert metric("cert_consumer_evaluations_total", decision="no_change") == 1
    assert metric("cert_consumer_no_change_total", reason="completion_not_met") == 1
    assert metric("cert_consumer_transitions_total", kind="create", state="earned") == 2
    assert metric("cert_consumer_transitions_total", kind="create", state="pending") == 1
    assert metric("cert_consumer_events_published_total", event_type="certificate_granted") == 2
    assert metric("cert_consumer_events_published_total", event_type="approval_requested") == 1
    assert metric("cert_consumer_batch_duration_seconds_count", loop="ingest") >= 1
    assert metric("cert_consumer_evaluation_duration_seconds_count") >= 1
    assert metric("cert_consumer_triggers_per_evaluation_count") == 4
    wait_for(
        lambda: (
            metric("cert_consumer_pending_evaluations") == 0
            and metric("cert_consumer_outbox_backlog_events") == 0
            and metric("cert_consumer_evaluation_lag_seconds") == 0
        ),
        timeout=20,
        what="gauges refreshed to zero",
    )
    wait_for(
        lambda: (
            'cert_consumer_consumer_lag_messages{partition="0",topic="' + topics.scores
            in _text(service.port)
        ),
        timeout=20,
        what="lag gauge",
    )
    # Lag counts from the committed offset, so it reaches 0 with the next auto-commit (5 s).
    wait_for(
        lambda: all(
            metric("cert_consumer_consumer_lag_messages", topic=topics.scores, partition=p) == 0
            for p in ("0", "1")
        ),
        timeout=20,
        what="lag 0 once committed",
    )
    assert service.terminate() == 0


def _text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_healthz_fails_while_a_loop_is_stuck_and_recovers(engine, env, services) -> None:
    env["CERT_CONSUMER_HEALTH_DEADLINE_SECONDS"] = "2"
    service = services(env)
    wait_for(lambda: _get(service.port, "/readyz")[0] == 200, what="ready")
    assert _get(service.port, "/healthz") == (200, {"status": "ok", "stale_loops": {}})

    # Stall the evaluator for real: it cannot claim while the table is locked.
    with engine.connect() as conn:
        conn.execute(
            sa.text("LOCK TABLE cert_consumer.pending_evaluations IN ACCESS EXCLUSIVE MODE")
        )
        _status, body = wait_for(
            lambda: (r := _get(service.port, "/healthz"))[0] == 503 and r, what="unhealthy"
        )
        assert "evaluate" in body["stale_loops"]
        conn.rollback()
    wait_for(lambda: _get(service.port, "/healthz")[0] == 200, what="healthy again")
    assert service.terminate() == 0


def test_bad_configuration_exits_2_with_one_line_per_problem(env, tmp_path) -> None:
    env = env | {
        "CERT_CONSUMER_QUIET_WINDOW_SECONDS": "soon",
        "CERT_CONSUMER_METRICS_PORT": "70000",
        "CERT_CONSUMER_ROLES": "ingest,cook",
    }
    result = _run_service_expecting_exit(env)
    assert result.returncode == 2
    prefix = "cert-consumer: invalid configuration: CERT_CONSUMER_"
    problems = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(problems) == 3, result.stderr
    assert "QUIET_WINDOW_SECONDS='soon': must be a number" in problems[0]
    assert "postgresql" not in result.stderr  # the database URL is never echoed


def test_a_bad_librdkafka_property_is_a_configuration_error(env) -> None:
    env = env | {"CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL": "carrier-pigeon"}
    result = _run_service_expecting_exit(env)
    assert result.returncode == 2
    assert "librdkafka rejected the configuration" in result.stderr
    assert "security.protocol" in result.stderr


def test_an_unmigrated_database_is_refused_with_a_clear_message(env, pg_server_url) -> None:
    env = env | {"CERT_CONSUMER_DATABASE_URL": pg_server_url}  # the server's empty `postgres` db
    result = _run_service_expecting_exit(env)
    assert result.returncode == 3  # a check failed
    assert result.stderr == (
        "cert-consumer: the cert_consumer schema lacks migrations [1, 2, 3, 4]; run "
        "`cert-consumer db upgrade`\n"
    )


def _run_service_expecting_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`cert-consumer run` for a case where it must refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
