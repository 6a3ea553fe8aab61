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

import socket
import ssl
from dataclasses import dataclass, field

from confluent_kafka import KafkaError

from consumer.config import Settings

_KAFKA = "CERT_CONSUMER_KAFKA_"
_CREDENTIALS = f"{_KAFKA}SASL_USERNAME / {_KAFKA}SASL_PASSWORD (or _FILE) / {_KAFKA}SASL_MECHANISMS"
_PROTOCOL = f"{_KAFKA}SECURITY_PROTOCOL: the listener expects another (SSL or SASL_SSL?)"
_PROBE_SECONDS = 3.0
_DENIALS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
}


@dataclass(frozen=True)
class Refusals:
    """Tells refusals from outages for clients made with these settings.

    librdkafka's own words do not always tell: an untrusted CA and a host name the
    certificate lacks both read "certificate verify failed", and PLAINTEXT spoken to a TLS
    listener reads only "all brokers are down". For those this makes one TLS handshake of its
    own with the bootstrap address (``ssl``, a few seconds at most, once) and says which.
    """

    bootstrap_servers: str
    security_protocol: str = "plaintext"
    ca_location: str | None = None
    _probed: list[str] = field(default_factory=list, compare=False)

    @classmethod
    def of(cls, settings: Settings) -> Refusals:
        props = settings.kafka_properties
        return cls(
            settings.bootstrap_servers,
            props.get("security.protocol", "plaintext").lower(),
            props.get("ssl.ca.location"),
        )

    def refusal(self, err: KafkaError) -> str | None:
        """One line, "<what the client said>: fix <setting>", when ``err`` is a refusal."""
        text = " ".join(str(err.str()).split())
        code = err.code()
        if code == KafkaError._AUTHENTICATION:
            fix = _CREDENTIALS
        elif code == KafkaError._SSL and "verify failed" in text:
            fix = self._unverified()
        elif code == KafkaError._SSL:
            fix = f"the TLS settings ({_KAFKA}SSL_*)"
        elif code == KafkaError._TRANSPORT and "security.protocol" in text:
            fix = _PROTOCOL
        elif code == KafkaError._ALL_BROKERS_DOWN and self._tls_spoken_to_plaintext():
            text = f"{self._address()} speaks TLS to a {self.security_protocol} client"
            fix = _PROTOCOL
        else:
            return None
        return f"Kafka refused the connection ({_short(text)}): fix {fix}"

    def _address(self) -> str:
        return self.bootstrap_servers.split(",")[0].strip().split("://")[-1]

    def _unverified(self) -> str:
        host, _, port = self._address().rpartition(":")
        if _handshake(host, int(port), self.ca_location, verify=True) == "hostname":
            return f"the host in {_KAFKA}BOOTSTRAP_SERVERS: the broker's certificate lacks it"
        return f"{_KAFKA}SSL_CA_LOCATION: it must hold the CA that signed the broker's certificate"

    def _tls_spoken_to_plaintext(self) -> bool:
        if "ssl" in self.security_protocol or self._probed:
            return False
        self._probed.append("once")  # a down broker is probed once, not on every report
        host, _, port = self._address().rpartition(":")
        return port.isdigit() and _handshake(host, int(port), None, verify=False) == "ok"


def _handshake(host: str, port: int, ca: str | None, *, verify: bool) -> str:
    """ "ok", "hostname" (the certificate lacks ``host``), "untrusted", or "failed"."""
    context = ssl.create_default_context(cafile=ca)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return "hostname" if "mismatch" in str(exc.verify_message).lower() else "untrusted"
    except (OSError, ValueError):
        return "failed"


def denial(err: KafkaError, operation: str, *, topic: str = "", group: str = "") -> str | None:
    """When ``err`` says an ACL is missing: which operation on which resource this service's
    principal needs, in one line; else None."""
    kind = _DENIALS.get(err.code())
    if kind is None:
        return None
    name = {"topic": topic, "group": group}.get(kind, "")
    named = f"{kind} {name!r}" if name else f"a {kind} ({_short(str(err.str()))})"
    return (
        f"Kafka denied {operation} on {named} to this service's principal ({err.name()}): "
        "grant it (README, Security)"
    )


def _short(text: str) -> str:
    """The client's message without librdkafka's trailing "(after N ms in state X)"."""
    cut = text.find(" (after ")
    return (text[:cut] if cut > 0 else text)[:200]
