"""The error tree of the service, branched by what a loop must do with the failure.

    CertConsumerError
    ├── ConfigError        bad settings at start-up: print every problem, exit 2
    ├── MissingExtraError  a command needs an optional extra that is not installed: one line, exit 2
    ├── RefusedError       PostgreSQL or Kafka refused our credentials or TLS: one line, exit 2
    ├── PoisonError        this one input can never succeed: dead-letter it and move on
    │   ├── (codec errors: UnknownSchemaError, TruncatedRecordError, ... in consumer.codec)
    │   └── UnexpectedRecordError  our code raised something unforeseen on one record
    ├── TransientError     the world is briefly broken (database down): back off, do not commit
    ├── CheckFailedError   a check of the deployment failed (migrations, Torus tables): exit 3
    └── FatalError         the process cannot go on (fatal Kafka error): exit non-zero
        └── StartupTimeoutError  the database unreachable for the whole start-up deadline: exit 3

Only loop boundaries catch ``Exception``; there they classify it into this tree.
Must not import anything outside the standard library.
"""

from __future__ import annotations


class CertConsumerError(Exception):
    """Root of every error this service raises on purpose."""


class ConfigError(CertConsumerError):
    """One or more settings are invalid; ``problems`` lists each one on its own."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class MissingExtraError(CertConsumerError):
    """A command needs an optional dependency group (``pip install 'certificate-consumer[X]'``)."""

    def __init__(self, command: str, extra: str, missing: str) -> None:
        install = f"pip install 'certificate-consumer[{extra}]'"
        super().__init__(
            f"{command} needs the '{extra}' extra ({missing} is not installed): {install}"
        )


class RefusedError(CertConsumerError):
    """A dependency answered and refused this process (a wrong password, an untrusted CA, a
    host name its certificate lacks, plaintext where TLS is required): retrying cannot help,
    so it is said once, naming the setting to fix, and the process exits 2."""


class PoisonError(CertConsumerError):
    """An input record that can never be processed; it goes to the dead-letter topic."""


class UnexpectedRecordError(PoisonError):
    """Turning one record into a trigger raised ``cause``, which nothing foresaw (a bug, or an
    input of a shape nobody imagined). The record is dead-lettered with the cause's class, never
    allowed to end the loop: every restart would read it again and die again.
    """

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}"[:500])
        self.cause = cause


class TransientError(CertConsumerError):
    """A dependency is unavailable for now; retry later without committing past the work."""


class CheckFailedError(CertConsumerError):
    """The deployment is not what the service needs (its migrations not applied, no Torus
    tables in the database, incompatible schemas): one line saying what to do, exit 3."""


class FatalError(CertConsumerError):
    """The process cannot continue; the CLI exits non-zero."""


class StartupTimeoutError(FatalError):
    """The database stayed unreachable for CERT_CONSUMER_STARTUP_TIMEOUT_SECONDS (exit 3)."""
