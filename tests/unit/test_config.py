"""Settings from the environment: defaults, parsing, and one message per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import describe, kafka_passthrough, load_settings
from consumer.errors import ConfigError
from consumer.events.catalogue import EventType
from consumer.kafka.clients import admin_config, consumer_config, producer_config

URL = {"CERT_CONSUMER_DATABASE_URL": "postgresql://u:secret@db/torus"}


def test_defaults_and_driver_normalisation() -> None:
    settings = load_settings(URL)
    assert settings.database_url == "postgresql+psycopg://u:secret@db/torus"
    assert settings.quiet_window_seconds == 2.0
    assert settings.max_wait_seconds == 30.0
    assert settings.roles == ("ingest", "evaluate", "relay")
    assert settings.accepted_types == {
        "torus.page-score-updated": {EventType.PAGE_SCORE_UPDATED},
        "torus.post-created": {EventType.POST_CREATED},
        "torus.certificate-settings-changed": {EventType.CERTIFICATE_SETTINGS_CHANGED},
    }
    assert settings.input_topics == tuple(settings.accepted_types)


def test_a_topic_named_for_two_types_accepts_both_and_an_empty_one_is_not_read() -> None:
    env = {
        "CERT_CONSUMER_SCORES_TOPIC": "torus.activity",
        "CERT_CONSUMER_POSTS_TOPIC": "torus.activity",
        "CERT_CONSUMER_SETTINGS_TOPIC": "",
    }
    settings = load_settings(URL | env)
    assert settings.accepted_types == {
        "torus.activity": {EventType.PAGE_SCORE_UPDATED, EventType.POST_CREATED}
    }


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CERT_CONSUMER_INPUT_TOPICS": "a,b"}, "no longer read; use CERT_CONSUMER_SCORES_TOPIC"),
        (
            {f"CERT_CONSUMER_{t}_TOPIC": "" for t in ("SCORES", "POSTS", "SETTINGS")},
            "nothing to consume",
        ),
        ({"CERT_CONSUMER_POSTS_TOPIC": "cert-consumer.dlq"}, "never right"),
    ],
)
def test_topic_mistakes_are_refused(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(URL | env)
    (problem,) = caught.value.problems
    assert fragment in problem


def test_group_membership_properties() -> None:
    default = consumer_config(load_settings(URL))
    assert default["group.protocol"] == "consumer"
    assert "partition.assignment.strategy" not in default
    assert "group.instance.id" not in default
    env = {"CERT_CONSUMER_GROUP_PROTOCOL": "classic", "CERT_CONSUMER_GROUP_INSTANCE_ID": "pod-1"}
    classic = consumer_config(load_settings(URL | env))
    assert classic["partition.assignment.strategy"] == "cooperative-sticky"
    assert classic["group.instance.id"] == "pod-1"


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("QUIET_WINDOW_SECONDS", "soon", "must be a number"),
        ("QUIET_WINDOW_SECONDS", "-1", ">= 0"),
        ("MAX_WAIT_SECONDS", "inf", "finite"),
        ("CONSUME_BATCH_SIZE", "0", "> 0"),
        ("METRICS_PORT", "70000", "0..65535"),
        ("LOG_LEVEL", "LOUD", "one of"),
        ("ROLES", "ingest,cook", "unknown role"),
        ("GROUP_PROTOCOL", "eager", "one of"),
        ("REGISTER_SCHEMAS", "maybe", "true or false"),
        ("DATABASE_URL", "mysql://x/y", "postgresql"),
    ],
)
def test_each_bad_value_is_named(name: str, raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(URL | {f"CERT_CONSUMER_{name}": raw})
    (problem,) = caught.value.problems
    assert problem.startswith(f"CERT_CONSUMER_{name}=")
    assert fragment in problem


def test_all_problems_are_reported_together_and_secrets_hidden() -> None:
    env = {
        "CERT_CONSUMER_DATABASE_URL": "not a url with secret",
        "CERT_CONSUMER_METRICS_PORT": "x",
        "CERT_CONSUMER_QUIET_WINDOW_SECONDS": "10",
        "CERT_CONSUMER_MAX_WAIT_SECONDS": "5",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert len(caught.value.problems) == 3
    assert "secret" not in str(caught.value)


def test_database_is_required_only_where_needed() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL is required"):
        load_settings({})
    assert load_settings({}, require_database=False).database_url == ""


def test_roles_all_expands() -> None:
    assert load_settings(URL | {"CERT_CONSUMER_ROLES": "all"}).roles == (
        "ingest",
        "evaluate",
        "relay",
    )


def test_librdkafka_properties_pass_through() -> None:
    env = {
        "CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CERT_CONSUMER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CERT_CONSUMER_KAFKA_LOG__LEVEL": "3",
        "CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": "b:9092",
        "OTHER": "x",
    }
    assert kafka_passthrough(env) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "log_level": "3",
    }


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name, _, _ in describe() if f"`{name}`" not in readme]
    assert missing == []


def test_each_client_gets_only_the_properties_that_are_its_own() -> None:
    env = {
        "CERT_CONSUMER_KAFKA_SESSION_TIMEOUT_MS": "30000",
        "CERT_CONSUMER_KAFKA_LINGER_MS": "50",
        "CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL": "SSL",
    }
    settings = load_settings(URL | env)
    consumer, producer, admin = (
        consumer_config(settings),
        producer_config(settings),
        admin_config(settings),
    )
    assert consumer["session.timeout.ms"] == "30000" and "linger.ms" not in consumer
    assert producer["linger.ms"] == "50" and "session.timeout.ms" not in producer
    assert "session.timeout.ms" not in admin and "linger.ms" not in admin
    assert consumer["security.protocol"] == producer["security.protocol"] == "SSL"
    assert admin["security.protocol"] == "SSL"


@pytest.mark.parametrize(
    ("name", "raw", "said"),
    [
        ("HEALTH_DEADLINE_SECONDS", "0", "must be >= 1"),
        ("IDLE_SLEEP_SECONDS", "0", "must be >= 0.01"),
        ("LEASE_SECONDS", "0", "must be >= 1"),
        ("LAG_INTERVAL_SECONDS", "0.0001", "must be >= 0.5 (or 0 to disable)"),
        ("MAX_BACKOFF_SECONDS", "0", "must be >= 0.1"),
    ],
)
def test_values_that_would_harm_are_refused(name: str, raw: str, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"CERT_CONSUMER_" + name: raw}, require_database=False)
    assert raised.value.problems == [f"CERT_CONSUMER_{name}={raw!r}: {said}"]


def test_lag_interval_0_still_disables_the_gauge() -> None:
    settings = load_settings({"CERT_CONSUMER_LAG_INTERVAL_SECONDS": "0"}, require_database=False)
    assert settings.lag_interval_seconds == 0


def test_an_unknown_name_is_a_notice_with_the_nearest_setting() -> None:
    settings = load_settings(
        {
            "CERT_CONSUMER_QUIET_WINDOW_SECOND": "2",
            "CERT_CONSUMER_TEST_KAFKA_BOOTSTRAP": "x",  # the test suite's own, not a setting
            "CERT_CONSUMER_DATABASE_PASSWORD_FILE_X": "y",
        },
        require_database=False,
    )
    assert settings.notices == (
        "CERT_CONSUMER_DATABASE_PASSWORD_FILE_X is not a setting and is ignored; did you mean "
        "CERT_CONSUMER_DATABASE_PASSWORD?",
        "CERT_CONSUMER_QUIET_WINDOW_SECOND is not a setting and is ignored; did you mean "
        "CERT_CONSUMER_QUIET_WINDOW_SECONDS?",
    )


def test_postgres_scheme_is_accepted() -> None:
    settings = load_settings({"CERT_CONSUMER_DATABASE_URL": "postgres://u@db:5432/torus"})
    assert settings.database_url == "postgresql+psycopg://u@db:5432/torus"


def test_overridden_protected_properties_are_named() -> None:
    from consumer.kafka.clients import consumer_config, ignored_overrides  # noqa: PLC0415

    settings = load_settings(
        {"CERT_CONSUMER_KAFKA_ENABLE_AUTO_OFFSET_STORE": "true"}, require_database=False
    )
    assert ignored_overrides(settings) == [
        "CERT_CONSUMER_KAFKA_ENABLE_AUTO_OFFSET_STORE is ignored: offsets are stored only after "
        "a batch's upsert commits"
    ]
    assert consumer_config(settings)["enable.auto.offset.store"] is False
