"""Which failures to connect to PostgreSQL are refusals, and the setting each one is about.

A database that is down or restarting is an outage: the service waits for it, alive and not
ready. A database that answers and refuses us (a wrong password, a certificate we do not
trust, a host name the certificate does not carry, TLS required and not asked for) will refuse
every retry the same way, so waiting would hide the mistake behind an endless not-ready: at
start-up the service says what to fix in one line and exits instead. libpq reports these only
as message texts (psycopg gives no SQLSTATE for a failed connection), hence the fragments.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

_URL = "CERT_CONSUMER_DATABASE_URL"
_PASSWORD = "CERT_CONSUMER_DATABASE_PASSWORD (or _FILE)"
# (fragment of libpq's message, what the operator should fix), first match wins.
_REFUSALS: tuple[tuple[str, str], ...] = (
    ("password authentication failed", f"the role in {_URL} or {_PASSWORD}"),
    ("no password supplied", f"{_PASSWORD}: the server asks for a password"),
    ("no encryption", f"sslmode in {_URL}: the server takes only TLS (sslmode=verify-full)"),
    (
        "no pg_hba.conf entry",
        f"the role, database or sslmode in {_URL}: the server refuses this combination",
    ),
    (
        "pg_hba.conf rejects",
        f"the role, database or sslmode in {_URL}: the server refuses this combination",
    ),
    (
        "does not match host name",
        f"the host in {_URL}: it must be a name the server's certificate carries",
    ),
    (
        "certificate verify failed",
        f"sslrootcert in {_URL}: the CA file must hold the CA that signed the server's certificate",
    ),
    ("root certificate file", f"sslrootcert in {_URL}: the file cannot be read"),
    ("server does not support SSL", f"sslmode in {_URL}: the server has TLS off"),
    ("does not exist", f"the role or database in {_URL}"),
    ("permission denied for database", f"the role in {_URL} lacks CONNECT on the database"),
)


def refusal(exc: BaseException) -> str | None:
    """One line, "<what PostgreSQL said>: fix <setting>", when ``exc`` is a refusal."""
    if not isinstance(exc, sa.exc.OperationalError):
        return None
    text = " ".join(str(exc.orig or exc).split())
    for fragment, fix in _REFUSALS:
        if fragment in text:
            return f"PostgreSQL refused the connection ({_reason(text)}): fix {fix}"
    return None


_WHERE = re.compile(r'^connection failed: (connection to server at "[^"]*", port \d+ failed: )?')


def _reason(text: str) -> str:
    """libpq's reason without the address preamble (the URL's host and port, known)."""
    return _WHERE.sub("", text).removeprefix("FATAL: ")[:200]
