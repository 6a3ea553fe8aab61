"""Settings from the environment: defaults, parsing, and one message per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import describe, kafka_passthrough, load_settings
from consumer.errors import ConfigError

URL = {"CERT_CONSUMER_DATABASE_URL": "postgresql://u:secret@db/torus"}


def test_defaults_and_driver_normalisation() -> None:
    settings = load_settings(URL)
    assert settings.database_url == "postgresql+psycopg://u:secret@db/torus"
    assert settings.quiet_window_seconds == 2.0
    assert settings.max_wait_seconds == 30.0
    assert settings.roles == ("ingest", "evaluate", "relay")
    assert settings.input_topics == (
        "torus.page-score-updated",
        "torus.post-created",
        "torus.certificate-settings-changed",
    )


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("QUIET_WINDOW_SECONDS", "soon", "could not convert"),
        ("QUIET_WINDOW_SECONDS", "-1", ">= 0"),
        ("MAX_WAIT_SECONDS", "inf", "finite"),
        ("CONSUME_BATCH_SIZE", "0", "> 0"),
        ("METRICS_PORT", "70000", "0..65535"),
        ("LOG_LEVEL", "LOUD", "one of"),
        ("ROLES", "ingest,cook", "unknown role"),
        ("INPUT_TOPICS", " , ", "at least one"),
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
