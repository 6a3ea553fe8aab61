"""Which Kafka client errors are refusals, and the setting or permission each one is about.

librdkafka retries every connection error for ever, which is right for a broker that is down
and wrong for one that answers and refuses us: a wrong SASL password, a CA that did not sign
the broker's certificate, a bootstrap host name the certificate lacks, or PLAINTEXT spoken to
a TLS listener fail the same way on every retry. Those are said once, naming the setting to
fix, and end the process (exit 2). So does a missing ACL, naming the operation and resource
to grant (README, "Security"): a pod that restarts with that line is seen at once, where one
waiting not-ready for a permission nobody knows it lacks is not (ADR 0014).
"""

from __future__ import annotations

from confluent_kafka import KafkaError

_KAFKA = "CERT_CONSUMER_KAFKA_"
_CREDENTIALS = f"{_KAFKA}SASL_USERNAME / {_KAFKA}SASL_PASSWORD (or _FILE) / {_KAFKA}SASL_MECHANISMS"
_DENIALS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
}


def refusal(err: KafkaError) -> str | None:
    """One line, "<what the client said>: fix <setting>", when ``err`` is a refusal."""
    text = " ".join(str(err.str()).split())
    code = err.code()
    if code == KafkaError._AUTHENTICATION:
        fix = _CREDENTIALS
    elif code == KafkaError._SSL and "match" in text.lower() and "host" in text.lower():
        fix = f"the host in {_KAFKA}BOOTSTRAP_SERVERS: the broker's certificate must carry it"
    elif code == KafkaError._SSL and "verify failed" in text:
        fix = f"{_KAFKA}SSL_CA_LOCATION: it must hold the CA that signed the broker's certificate"
    elif code == KafkaError._SSL:
        fix = f"the TLS settings ({_KAFKA}SSL_*)"
    elif code == KafkaError._TRANSPORT and "security.protocol" in text:
        fix = f"{_KAFKA}SECURITY_PROTOCOL: the listener expects another (SASL_SSL?)"
    else:
        return None
    return f"Kafka refused the connection ({_short(text)}): fix {fix}"


def denial(err: KafkaError, operation: str, resource: str = "") -> str | None:
    """When ``err`` says an ACL is missing: which operation on which resource this service's
    principal needs, in one line; else None."""
    kind = _DENIALS.get(err.code())
    if kind is None:
        return None
    named = f"{kind} {resource!r}" if resource else f"a {kind}"
    return (
        f"Kafka denied {operation} on {named} to this service's principal ({err.name()}): "
        "grant it (README, Security)"
    )


def _short(text: str) -> str:
    """The client's message without librdkafka's trailing "(after N ms in state X)"."""
    cut = text.find(" (after ")
    return (text[:cut] if cut > 0 else text)[:200]
