"""What every phase shares: the sizes of the mode, the broker, PostgreSQL, the codec, the run
folder (service logs), the random seed, and the timelines sampled for the plots."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka.admin import AdminClient

from bench.e2e.infra import SERVICE_ROLE, PgServer
from bench.e2e.sampler import Timeline
from bench.e2e.service import ServiceProcess, effective_settings, service_env
from bench.e2e.topics import Topics
from consumer.config import Settings
from consumer.events.codec import Codec


@dataclass(frozen=True)
class Profile:
    """Sizes of one mode; ``full`` and ``quick`` below, any field overridable on the CLI."""

    name: str
    ingest_events: int
    eval_keys: int
    per_key_keys: int
    rate_seconds: float
    statement_rates: tuple[int, ...]
    latency_rates: tuple[int, ...]
    idle_seconds: float
    idle_role_seconds: float  # 0: no per-role idle runs
    pending_keys: int
    scale_keys: int
    scale_processes: tuple[int, ...]
    quiet_window_s: float | None = None  # None: the service's default


FULL = Profile(
    name="full",
    ingest_events=400_000,
    eval_keys=20_000,
    per_key_keys=1_000,
    rate_seconds=25,
    statement_rates=(50, 400, 2000),
    latency_rates=(400, 2000),
    idle_seconds=15,
    idle_role_seconds=10,
    pending_keys=1_000_000,
    scale_keys=20_000,
    scale_processes=(1, 2, 3),
)
QUICK = Profile(
    name="quick",
    ingest_events=40_000,
    eval_keys=3_000,
    per_key_keys=150,
    rate_seconds=6,
    statement_rates=(50, 400, 2000),
    latency_rates=(400, 2000),
    idle_seconds=5,
    idle_role_seconds=3,
    pending_keys=50_000,
    scale_keys=3_000,
    scale_processes=(1, 2, 3),
)


@dataclass
class Context:
    profile: Profile
    bootstrap: str
    pg: PgServer
    admin: AdminClient
    codec: Codec
    work: Path
    seed: int
    service_extra: dict[str, str] = field(default_factory=dict)
    timelines: list[Timeline] = field(default_factory=list)

    def rng(self, purpose: str) -> random.Random:
        """A generator of its own per purpose, so one phase's draws never shift another's."""
        return random.Random(f"{self.seed}:{purpose}")

    def env(
        self,
        database: str,
        topics: Topics,
        *,
        group: str | None = None,
        roles: str = "ingest,evaluate,relay",
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The service's environment against ``database`` (as the service role)."""
        settings = dict(self.service_extra)
        if self.profile.quiet_window_s is not None:
            settings["CERT_CONSUMER_QUIET_WINDOW_SECONDS"] = str(self.profile.quiet_window_s)
        return service_env(
            database_url=self.pg.url(database, SERVICE_ROLE),
            bootstrap=self.bootstrap,
            topics=topics,
            group=group or f"bench-{uuid.uuid4().hex[:8]}",
            roles=roles,
            extra=settings | (extra or {}),
        )

    def settings_now(self) -> dict[str, Any]:
        """The service's settings as the code on disk now reads them (a fresh interpreter:
        settings added since this benchmark started are included)."""
        env = self.env("postgres", Topics("s", "p", "g", "a", "d"))
        script = (
            "import dataclasses, json; from consumer.config import load_settings; "
            "print(json.dumps(dataclasses.asdict(load_settings()), default=str))"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        loaded: dict[str, Any] = json.loads(done.stdout)
        return loaded

    def settings(self, env: dict[str, str] | None = None) -> Settings:
        """The settings the service runs with under ``env`` (by default: a run's settings)."""
        if env is None:
            env = self.env("postgres", Topics("s", "p", "g", "a", "d"))
        return effective_settings(env)

    def engine(self, database: str) -> sa.Engine:
        """The benchmark's own connection to a phase database (as ``postgres``: not counted)."""
        return sa.create_engine(self.pg.url(database), pool_size=2)

    def service(self, name: str, env: dict[str, str]) -> ServiceProcess:
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return ServiceProcess(name, env, logs / f"{name}-{uuid.uuid4().hex[:4]}.log")
