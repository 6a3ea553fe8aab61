"""Which connection failures are refusals (said once, exit 2) and which are outages (waited
out): PostgreSQL by libpq's words, Kafka by librdkafka's codes. The real endpoints' words are
tested in tests/security; these pin the classification and the one-line wording."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError

from consumer.kafka.refusals import Refusals, denial
from consumer.store.refusals import refusal

PREAMBLE = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '


def operational(text: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("connect", {}, Exception(text))


@pytest.mark.parametrize(
    ("said", "fix"),
    [
        ('FATAL: password authentication failed for user "x"', "CERT_CONSUMER_DATABASE_PASSWORD"),
        ("SSL error: certificate verify failed", "sslrootcert in CERT_CONSUMER_DATABASE_URL"),
        (
            'server certificate for "db" does not match host name "10.0.0.5"',
            "the host in CERT_CONSUMER_DATABASE_URL",
        ),
        (
            'FATAL: pg_hba.conf rejects connection for host "10.0.0.9", user "x", '
            'database "y", no encryption',
            "sslmode in CERT_CONSUMER_DATABASE_URL",
        ),
        ('FATAL: role "x" does not exist', "the role or database in CERT_CONSUMER_DATABASE_URL"),
    ],
)
def test_postgresql_refusals_name_the_setting_without_the_address(said: str, fix: str) -> None:
    line = refusal(operational(PREAMBLE + said))
    assert line is not None
    assert line.startswith("PostgreSQL refused the connection (") and ": fix " in line
    assert fix in line.partition(": fix ")[2]
    assert "port 5432" not in line  # libpq's preamble: the URL's own host and port
    assert "\n" not in line and "FATAL" not in line


@pytest.mark.parametrize(
    "said",
    [
        "Connection refused Is the server running on that host and accepting TCP/IP connections?",
        "timeout expired",
        "FATAL: the database system is starting up",
        "FATAL: terminating connection due to administrator command",
    ],
)
def test_postgresql_outages_are_not_refusals(said: str) -> None:
    assert refusal(operational(PREAMBLE + said)) is None
    assert refusal(ValueError("password authentication failed")) is None  # not a connection


REFUSALS = Refusals("broker:9093", "sasl_ssl", "/ca.pem")


def test_a_sasl_failure_names_the_credentials_and_drops_librdkafka_timings() -> None:
    err = KafkaError(
        KafkaError._AUTHENTICATION,
        "sasl_ssl://broker:9093/bootstrap: SASL authentication error: Authentication failed "
        "(after 326ms in state AUTH_REQ)",
    )
    line = REFUSALS.refusal(err)
    assert line is not None and "after 326ms" not in line
    assert "CERT_CONSUMER_KAFKA_SASL_PASSWORD (or _FILE)" in line


@pytest.mark.parametrize(
    "code", [KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._MSG_TIMED_OUT]
)
def test_kafka_outages_are_not_refusals_on_a_tls_client(code: int) -> None:
    # A TLS client is never probed for "TLS spoken to plaintext": that cannot be its mistake.
    assert REFUSALS.refusal(KafkaError(code, "Connect to ipv4#10.0.0.5:9093 failed")) is None


def test_a_denial_names_operation_and_resource() -> None:
    err = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed")
    assert denial(err, "WRITE", topic="torus.certificate-granted") == (
        "Kafka denied WRITE on topic 'torus.certificate-granted' to this service's principal "
        "(TOPIC_AUTHORIZATION_FAILED): grant it (README, Security)"
    )
    group = KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED, "Broker: Group authorization failed")
    assert "on group 'g'" in str(denial(group, "READ", topic="t", group="g"))
    assert denial(KafkaError(KafkaError._TRANSPORT, "down"), "READ") is None
