"""Secrets in settings: read from mounted files, kept out of URLs on command lines, never
shown by a repr or a reported problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer.config import load_settings
from consumer.errors import ConfigError
from consumer.kafka import acls

URL = "postgresql://cert_consumer@db/torus"


def problems(env: dict[str, str], **overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(env, **overrides)
    return raised.value.problems


def test_any_variable_can_come_from_a_file_with_its_trailing_newline_dropped(
    tmp_path: Path,
) -> None:
    (tmp_path / "db").write_text("pa ss\n")
    (tmp_path / "sasl").write_text("k-secret\r\n")
    (tmp_path / "url").write_text(URL)
    settings = load_settings(
        {
            "CERT_CONSUMER_DATABASE_URL_FILE": str(tmp_path / "url"),
            "CERT_CONSUMER_DATABASE_PASSWORD_FILE": str(tmp_path / "db"),
            "CERT_CONSUMER_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "sasl"),
        }
    )
    assert sa.make_url(settings.database_url).password == "pa ss"
    assert settings.kafka_properties["sasl.password"] == "k-secret"
    assert "sasl.password.file" not in settings.kafka_properties


def test_a_value_given_twice_or_an_unreadable_file_is_named_without_its_content(
    tmp_path: Path,
) -> None:
    (tmp_path / "pw").write_text("s3cret-value")
    said = problems(
        {
            "CERT_CONSUMER_DATABASE_URL": URL,
            "CERT_CONSUMER_DATABASE_PASSWORD": "other-value",
            "CERT_CONSUMER_DATABASE_PASSWORD_FILE": str(tmp_path / "pw"),
            "CERT_CONSUMER_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing"),
        }
    )
    assert len(said) == 2
    assert "CERT_CONSUMER_DATABASE_PASSWORD and CERT_CONSUMER_DATABASE_PASSWORD_FILE" in said[0]
    assert "CERT_CONSUMER_KAFKA_SASL_PASSWORD_FILE" in said[1] and "cannot read" in said[1]
    assert not any("s3cret-value" in p or "other-value" in p for p in said)


def test_a_password_in_the_url_and_apart_is_refused() -> None:
    said = problems(
        {
            "CERT_CONSUMER_DATABASE_URL": "postgresql://u:in-url@db/torus",
            "CERT_CONSUMER_DATABASE_PASSWORD": "apart",
        }
    )
    assert said == [
        "CERT_CONSUMER_DATABASE_URL carries a password and CERT_CONSUMER_DATABASE_PASSWORD "
        "is set; give it once"
    ]


def test_a_database_url_flag_is_validated_and_may_not_carry_a_password() -> None:
    (said,) = problems({}, database_url="postgresql://u:in-flag@db/torus")
    assert said.startswith("--database-url carries a password")
    assert "in-flag" not in said
    (said,) = problems({}, database_url="mysql://u@db/x")
    assert said == "--database-url must be a postgresql URL"
    flagged = load_settings({"CERT_CONSUMER_DATABASE_PASSWORD": "pw"}, database_url=URL)
    assert sa.make_url(flagged.database_url).password == "pw"


def test_no_repr_and_no_problem_shows_a_secret() -> None:
    settings = load_settings(
        {
            "CERT_CONSUMER_DATABASE_URL": URL,
            "CERT_CONSUMER_DATABASE_PASSWORD": "db-secret",
            "CERT_CONSUMER_KAFKA_SASL_PASSWORD": "kafka-secret",
        }
    )
    shown = repr(settings)
    assert "db-secret" not in shown and "kafka-secret" not in shown
    assert "cert_consumer@db" not in shown  # the URL, with its user and host, stays out too
    said = problems({"CERT_CONSUMER_DATABASE_URL": "not a url db-secret"})
    assert "db-secret" not in " ".join(said)


def test_the_readme_lists_exactly_the_acls_the_service_needs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    security = readme.split("## Security")[1].split("\n## ")[0]
    rows = {line for line in security.splitlines() if line.startswith(("| READ |", "| WRITE |"))}
    needed = {
        f"| {p.operation.value} | {p.resource.value.lower()} | `{p.name}` | {p.why} |"
        for p in acls.required(load_settings({}, require_database=False))
    }
    assert rows == needed
