"""`cert-consumer run` as a separate process: its environment, its /metrics and health
endpoints, its memory, its JSON log, and a stop that always happens."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from bench.e2e import cleanup
from bench.e2e.infra import REPO
from bench.e2e.topics import Topics
from bench.e2e.waiting import until
from consumer.config import Settings, load_settings
from consumer.testing.postgres import free_port

CERT_CONSUMER = Path(sys.executable).with_name("cert-consumer")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def service_env(
    *,
    database_url: str,
    bootstrap: str,
    topics: Topics,
    group: str,
    roles: str = "ingest,evaluate,relay",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The service's settings for one run; anything not named keeps the service's default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERT_CONSUMER_")}
    env |= {
        "CERT_CONSUMER_DATABASE_URL": database_url,
        "CERT_CONSUMER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CERT_CONSUMER_GROUP_ID": group,
        "CERT_CONSUMER_SCORES_TOPIC": topics.scores,
        "CERT_CONSUMER_POSTS_TOPIC": topics.posts,
        "CERT_CONSUMER_SETTINGS_TOPIC": "",
        "CERT_CONSUMER_GRANTED_TOPIC": topics.granted,
        "CERT_CONSUMER_APPROVAL_TOPIC": topics.approval,
        "CERT_CONSUMER_DLQ_TOPIC": topics.dlq,
        "CERT_CONSUMER_ROLES": roles,
        "CERT_CONSUMER_METRICS_PORT": str(free_port()),
        "CERT_CONSUMER_LOG_FORMAT": "json",
    }
    return env | (extra or {})


def effective_settings(env: dict[str, str]) -> Settings:
    """The settings the service will run with, read the way it reads them."""
    return load_settings(env)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> each metric name's sum over all its label sets."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            name, value = match.group(1), float(match.group(3))
            totals[name] = totals.get(name, 0.0) + value
    return totals


@dataclass
class Stopped:
    exit_code: int | None
    killed: bool


class ServiceProcess:
    """One `cert-consumer run` child, logging JSON to ``log_path``."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._psutil: psutil.Process | None = None
        self._forget: Callable[[], None] | None = None
        self.spawned_at = 0.0
        self.peak_rss_bytes = 0

    @property
    def port(self) -> int:
        return int(self.env["CERT_CONSUMER_METRICS_PORT"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            [str(CERT_CONSUMER), "run"],
            env=self.env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._psutil = psutil.Process(self.proc.pid)
        self._forget = cleanup.register(f"service {self.name}", self._stop_at_exit)
        return self

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""
        except OSError:
            return 0, b""

    def _alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"service {self.name} exited with {self.proc.returncode}:\n{tail}")

    def wait_healthy(self, timeout: float = 90) -> float:
        """Until /healthz answers 200 (the loops are running); the monotonic time it did."""

        def ok() -> bool:
            self._alive()
            return self._get("/healthz")[0] == 200

        return until(ok, timeout=timeout, what=f"service {self.name} /healthz", interval=0.05)

    def wait_ready(self, timeout: float = 90) -> float:
        """Until /readyz answers 200 (ingest has its partitions, dependencies up)."""

        def ok() -> bool:
            self._alive()
            return self._get("/readyz")[0] == 200

        return until(ok, timeout=timeout, what=f"service {self.name} /readyz", interval=0.05)

    def metrics(self) -> dict[str, float]:
        """Every metric's total; empty when the endpoint does not answer."""
        status, body = self._get("/metrics")
        return parse_metrics(body.decode()) if status == 200 else {}

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def rss_bytes(self) -> int:
        """Resident memory now (0 once the process is gone); the peak seen is kept."""
        try:
            rss = int(self._psutil.memory_info().rss) if self._psutil else 0
        except psutil.Error:
            return 0
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        return rss

    def high_water_rss_bytes(self) -> int:
        """The kernel's peak resident set of the process (VmHWM), read while it runs."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _stop_at_exit(self) -> None:
        self.stop()

    def stop(self, timeout: float = 40) -> Stopped:
        """SIGTERM, wait for the graceful stop, kill if it does not come."""
        killed = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                killed = True
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._forget is not None:
            forget, self._forget = self._forget, None
            forget()
        return Stopped(self.proc.returncode if self.proc else None, killed)

    def log_records(self) -> Iterator[dict[str, Any]]:
        """The JSON log lines (anything else, e.g. a traceback, is skipped)."""
        with self.log_path.open(errors="replace") as lines:
            for line in lines:
                if line.startswith("{"):
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        continue


def start_all(services: list[ServiceProcess], *, ready: bool = False) -> tuple[float, float]:
    """Spawn every process at once; the monotonic times the first and the last one was healthy
    (with ``ready``: the last one ready, i.e. every ingest holds partitions)."""
    for service in services:
        service.start()
    healthy = [service.wait_healthy() for service in services]
    if ready:
        return min(healthy), max(service.wait_ready() for service in services)
    return min(healthy), max(healthy)


def stop_all(services: list[ServiceProcess]) -> list[Stopped]:
    for service in services:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.send_signal(signal.SIGTERM)
    return [service.stop() for service in services]


def total(services: list[ServiceProcess], name: str) -> float:
    return sum(service.metric(name) for service in services)
