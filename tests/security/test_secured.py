"""The service against secured endpoints, for real: SASL_SSL with SCRAM-SHA-512 and ACLs on
Kafka, TLS (verify-full) and scram-sha-256 on PostgreSQL, as the least-privileged role; and
no password, name or email in anything it shows."""

from __future__ import annotations

import random
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from consumer.config import load_settings
from consumer.kafka import acls
from tests.faults.verdict import read_topic, verdict
from tests.faults.world import Triggers, World, expected_grants, rounds, seed_world
from tests.integration.service import Launcher, Topics, codec, service_env
from tests.security.conftest import SERVICE_USER, SecuredKafka, TorusDatabase
from tests.support import assert_one_line, run_cli, wait_for

pytestmark = pytest.mark.integration
PROBE_DOMAIN = "@leak-probe.example"


def secured_topics(kafka: SecuredKafka) -> Topics:
    admin = kafka.admin()
    suffix = random.getrandbits(40)
    names = {
        n: f"{n}-{suffix:x}" for n in ("scores", "posts", "settings", "granted", "approval", "dlq")
    }
    futures = admin.create_topics([NewTopic(t, 2, 1) for t in names.values()], operation_timeout=30)
    for future in futures.values():
        future.result(timeout=30)
    return Topics(**names)


def grant(kafka: SecuredKafka, env: dict[str, str], skip: acls.Permission | None = None) -> None:
    """The exact ACLs of consumer.kafka.acls for the service's principal, less ``skip``."""
    settings = load_settings(env)
    bindings = [
        AclBinding(
            ResourceType[p.resource.value],
            p.name,
            ResourcePatternType.LITERAL,
            f"User:{SERVICE_USER}",
            "*",
            AclOperation[p.operation.value],
            AclPermissionType.ALLOW,
        )
        for p in acls.required(settings)
        if p != skip
    ]
    admin = kafka.admin()  # kept: a collected client ends its requests
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result(timeout=30)


def secured_env(
    kafka: SecuredKafka, database: TorusDatabase, topics: Topics, secrets_dir: Path, **extra: str
) -> dict[str, str]:
    """The service's settings: passwords only in mounted files, as a Kubernetes Secret."""
    (secrets_dir / "db-password").write_text(database.role_password + "\n")
    (secrets_dir / "sasl-password").write_text(kafka.service_password + "\n")
    env = service_env(database.role_url, kafka.bootstrap, topics)
    env |= {
        "CERT_CONSUMER_DATABASE_PASSWORD_FILE": str(secrets_dir / "db-password"),
        "CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CERT_CONSUMER_KAFKA_SASL_MECHANISMS": "SCRAM-SHA-512",
        "CERT_CONSUMER_KAFKA_SASL_USERNAME": SERVICE_USER,
        "CERT_CONSUMER_KAFKA_SASL_PASSWORD_FILE": str(secrets_dir / "sasl-password"),
        "CERT_CONSUMER_KAFKA_SSL_CA_LOCATION": str(kafka.ca),
    }
    return env | extra


def probe_world(database: TorusDatabase, seed: int, learners: int) -> tuple[sa.Engine, World]:
    """A world whose people have names and emails no log line could contain by chance."""
    engine = sa.create_engine(database.superuser_url)
    world = seed_world(engine, learners_per_section=learners, seed=seed)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE users SET name = 'Probe' || md5(id::text), "
                f"email = 'p' || id || '{PROBE_DOMAIN}'"
            )
        )
    return engine, world


def personal_data(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, email FROM users")).all()
    return [value for row in rows for value in row if value]


def test_end_to_end_over_sasl_ssl_and_verify_full_leaks_no_secret_or_personal_data(
    secured_kafka: SecuredKafka,
    torus_database: TorusDatabase,
    launch: Launcher,
    tmp_path: Path,
    seed: int,
) -> None:
    topics = secured_topics(secured_kafka)
    env = secured_env(secured_kafka, torus_database, topics, tmp_path)
    grant(secured_kafka, env)
    engine, world = probe_world(torus_database, seed, learners=25)
    service = launch(env)
    triggers = Triggers(secured_kafka.bootstrap, topics, codec(), **secured_kafka.client())
    for _ in rounds(world, triggers, 2, seed):
        pass
    poison = Producer(secured_kafka.client())
    poison.produce(topics.scores, value=b"\x00not avro", key=b"1:2")
    assert poison.flush(30) == 0

    result = verdict(
        "secured",
        engine,
        world,
        secured_kafka.bootstrap,
        topics,
        codec(),
        kafka_config=secured_kafka.client(),
    )
    result.assert_correct()
    dead: list[object] = []
    wait_for(
        lambda: (
            dead.extend(read_topic(secured_kafka.bootstrap, topics.dlq, **secured_kafka.client()))
            or bool(dead)
        ),
        timeout=60,
        what="the poison record dead-lettered",
    )
    published = [
        m.value()
        for t in (topics.granted, topics.approval)
        for m in read_topic(secured_kafka.bootstrap, t, **secured_kafka.client())
    ]
    assert any(PROBE_DOMAIN.encode() in v for v in published)  # the needles are real

    # Everything the service shows: its logs, /metrics, /readyz, DLQ headers, its command
    # line and its environment (secrets are files there, not values).
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    pid = service.proc.pid if service.proc is not None else 0
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    assert service.terminate() == 0
    headers = " ".join(
        f"{k}={v!r}"
        for m in dead
        for k, v in (m.headers() or [])  # type: ignore[attr-defined]
    )
    shown = {
        "logs": service.logs(),
        "metrics": metrics,
        "dlq headers": headers,
        "command line": cmdline,
        "environment": environ,
    }
    needles = [
        torus_database.role_password,
        secured_kafka.service_password,
        secured_kafka.admin_password,
        PROBE_DOMAIN,
        *personal_data(engine),
    ]
    leaks = {where: [n for n in needles if n in text] for where, text in shown.items()}
    assert leaks == {where: [] for where in shown}
    assert "record_dead_lettered" in shown["logs"] and headers  # the scan saw real content
    engine.dispose()


def assert_one_line_exit_2(code: int, lines: list[str], *expected: str) -> None:
    assert code == 2, lines[-20:]
    assert_one_line(lines, *expected)


def _db_case(database: TorusDatabase, tls: Path, case: str) -> dict[str, str]:
    url = sa.make_url(database.role_url)
    if case == "wrong password":
        return {
            "CERT_CONSUMER_DATABASE_PASSWORD_FILE": "",
            "CERT_CONSUMER_DATABASE_PASSWORD": "wrong",
        }
    if case == "untrusted CA":
        url = url.update_query_dict({"sslrootcert": str(tls / "other-ca.pem")})
    elif case == "wrong host name":
        url = url.set(host="localhost")
    elif case == "plaintext":
        url = url.update_query_dict({"sslmode": "disable"})
    return {"CERT_CONSUMER_DATABASE_URL": url.render_as_string(hide_password=False)}


DB_CASES = {
    "wrong password": ("password authentication failed", "CERT_CONSUMER_DATABASE_PASSWORD"),
    "untrusted CA": ("certificate verify failed", "sslrootcert in CERT_CONSUMER_DATABASE_URL"),
    "wrong host name": ("does not match host name", "the host in CERT_CONSUMER_DATABASE_URL"),
    "plaintext": ("no encryption", "sslmode in CERT_CONSUMER_DATABASE_URL"),
}


@pytest.mark.parametrize("case", list(DB_CASES))
def test_a_refusing_postgresql_is_one_line_and_exit_2(
    secured_kafka: SecuredKafka,
    torus_database: TorusDatabase,
    tls: Path,
    tmp_path: Path,
    case: str,
) -> None:
    topics = Topics(*(f"unused-{n}" for n in range(6)))
    env = secured_env(secured_kafka, torus_database, topics, tmp_path)
    env |= _db_case(torus_database, tls, case)
    env = {k: v for k, v in env.items() if v}
    started = time.monotonic()
    code, lines = run_cli(env, "run")
    assert_one_line_exit_2(code, lines, "PostgreSQL refused the connection", *DB_CASES[case])
    assert time.monotonic() - started < 30  # at once, not after a start-up deadline


KAFKA_CASES = {
    "wrong password": (
        {
            "CERT_CONSUMER_KAFKA_SASL_PASSWORD_FILE": "",
            "CERT_CONSUMER_KAFKA_SASL_PASSWORD": "wrong",
        },
        "CERT_CONSUMER_KAFKA_SASL_PASSWORD",
    ),
    "untrusted CA": (
        {"CERT_CONSUMER_KAFKA_SSL_CA_LOCATION": "other-ca.pem"},
        "CERT_CONSUMER_KAFKA_SSL_CA_LOCATION",
    ),
    "wrong host name": (
        {"CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": "localhost"},
        "CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS",
    ),
    "plaintext": (
        {"CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
        "CERT_CONSUMER_KAFKA_SECURITY_PROTOCOL",
    ),
}


@pytest.mark.parametrize("command", ["run", "lag"])  # the service, and an operator command
@pytest.mark.parametrize("case", list(KAFKA_CASES))
def test_a_refusing_kafka_is_one_line_and_exit_2(
    secured_kafka: SecuredKafka,
    torus_database: TorusDatabase,
    tls: Path,
    tmp_path: Path,
    case: str,
    command: str,
) -> None:
    topics = secured_topics(secured_kafka)
    env = secured_env(secured_kafka, torus_database, topics, tmp_path)
    grant(secured_kafka, env)
    change, setting = KAFKA_CASES[case]
    for name, given in change.items():
        if name.endswith("CA_LOCATION"):
            env[name] = str(tls / given)
        elif name.endswith("BOOTSTRAP_SERVERS"):
            env[name] = secured_kafka.bootstrap.replace("127.0.0.1", given)
        else:
            env[name] = given
    env = {k: v for k, v in env.items() if v}
    started = time.monotonic()
    code, lines = run_cli(env, command)
    assert_one_line_exit_2(code, lines, "Kafka refused the connection", setting)
    assert time.monotonic() - started < 30


PERMISSIONS = ["scores", "posts", "settings", "group", "granted", "approval", "dlq"]


@pytest.mark.parametrize("missing", PERMISSIONS)
def test_without_any_one_acl_the_service_names_it_and_exits_2(
    secured_kafka: SecuredKafka,
    torus_database: TorusDatabase,
    tmp_path: Path,
    seed: int,
    missing: str,
) -> None:
    topics = secured_topics(secured_kafka)
    env = secured_env(secured_kafka, torus_database, topics, tmp_path)
    required = acls.required(load_settings(env))
    skip = required[PERMISSIONS.index(missing)]
    grant(secured_kafka, env, skip=skip)
    engine, world = probe_world(torus_database, seed, learners=12)
    owed = expected_grants(engine, world)
    assert {1, 2} <= {section for section, _ in owed}  # a grant and an approval to publish
    triggers = Triggers(secured_kafka.bootstrap, topics, codec(), **secured_kafka.client())
    for _ in rounds(world, triggers, 1, seed):
        pass
    triggers.producer.produce(topics.scores, value=b"\x00not avro", key=b"1:2")
    assert triggers.producer.flush(30) == 0
    code, lines = run_cli(env, "run")
    kind = skip.resource.value.lower()
    assert_one_line_exit_2(
        code, lines, f"Kafka denied {skip.operation.value} on {kind} '{skip.name}'", "README"
    )
    engine.dispose()
