"""deploy/ validated offline: every YAML file parses (a real YAML parser), the kustomize base
builds, and the manifests agree with the code: probe paths answer on the service's metrics
port, the ConfigMap holds only known settings with valid values, names and selectors line up,
the Job's arguments parse, and the alerts use metric names the service exports."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consumer.cli import ops
from consumer.config import PREFIX, Settings, describe, load_settings
from consumer.observability.dependencies import Dependencies
from consumer.observability.endpoints import serve
from consumer.observability.health import Heartbeats
from consumer.observability.metrics import Metrics
from tests.ops.support import REPO, load_yaml

DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
FILES = sorted(DEPLOY.rglob("*.yaml"))
DEFAULTS = Settings()


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, list[Any]]:
    """Every deploy/ YAML file, plus the kustomize build of the base when kubectl is here."""
    paths = list(FILES)
    if shutil.which("kubectl"):
        built = subprocess.run(
            ["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, check=False
        )
        assert built.returncode == 0, built.stderr
        out = tmp_path_factory.mktemp("kustomize") / "built.yaml"
        out.write_text(built.stdout)
        paths.append(out)
    return load_yaml(paths)


def docs(parsed: dict[Path, list[Any]], kind: str, where: Path = BASE) -> list[dict[str, Any]]:
    return [
        d for p, ds in parsed.items() if p.is_relative_to(where) for d in ds if d["kind"] == kind
    ]


def one(parsed: dict[Path, list[Any]], kind: str, where: Path = BASE) -> dict[str, Any]:
    (found,) = docs(parsed, kind, where)
    return found


def test_every_file_parses_into_named_objects(parsed) -> None:
    assert len(FILES) >= 10
    for path in FILES:
        assert parsed[path], f"{path} is empty"
        if path.parent.name == "prometheus":
            continue
        for doc in parsed[path]:
            assert {"apiVersion", "kind"} <= doc.keys(), path
            meta = doc.get("metadata", {})
            assert doc["kind"] == "Kustomization" or meta.get("name") or meta.get("generateName")


def test_kustomization_lists_every_base_manifest(parsed) -> None:
    listed = set(parsed[BASE / "kustomization.yaml"][0]["resources"])
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk


def test_kustomize_build(parsed) -> None:
    built = [ds for p, ds in parsed.items() if p.name == "built.yaml"]
    if not built:
        pytest.skip("kubectl is not installed")
    kinds = sorted(d["kind"] for d in built[0])
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "ScaledObject",
            "TriggerAuthentication",
        ]
    )
    (deployment,) = [d for d in built[0] if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "cert-consumer:0.1.0"


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def probe_port(c: dict[str, Any], probe: str) -> int:
    port = c[probe]["httpGet"]["port"]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    return int(named.get(port, port))


def test_probes_match_the_service(parsed) -> None:
    deployment = one(parsed, "Deployment")
    c = container(deployment)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = one(parsed, "ConfigMap")["data"]
    port = int(config.get(PREFIX + "METRICS_PORT", DEFAULTS.metrics_port))
    assert port == DEFAULTS.metrics_port == 9400
    assert probe_port(c, "livenessProbe") == probe_port(c, "readinessProbe") == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # The paths really answer on the service's HTTP server (here on a free port).
    metrics = Metrics()
    server = serve(
        0,
        metrics.registry,
        Heartbeats(30.0),
        database_ok=lambda: True,
        dependencies=Dependencies(metrics.dependency_up),
        host="127.0.0.1",
    )
    try:
        for path in ("/healthz", "/readyz", "/metrics"):
            url = f"http://127.0.0.1:{server.server_port}{path}"
            with urllib.request.urlopen(url, timeout=5) as answer:
                assert answer.status == 200, path
    finally:
        server.shutdown()
        server.server_close()


def test_config_holds_known_valid_settings(parsed) -> None:
    config = one(parsed, "ConfigMap")["data"]
    secret = parsed[BASE / "secret.example.yaml"][0]["stringData"]
    known = {name for name, _, _ in describe()}
    for name in config:
        plain = name.removesuffix("_FILE")
        assert plain in known or plain.startswith(PREFIX + "KAFKA_"), name
    # Each *_FILE names a key of the Secret in its mount; read them from the example's values.
    mount = Path("/var/run/secrets/cert-consumer")
    env = {}
    for name, value in config.items():
        if name.endswith("_FILE"):
            assert Path(value).parent == mount and Path(value).name in secret, name
            env[name.removesuffix("_FILE")] = secret[Path(value).name]
        else:
            env[name] = value
    settings = load_settings(env)  # raises ConfigError on any bad value
    assert settings.kafka_properties["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings.kafka_properties["sasl.password"] == secret["kafka-sasl-password"]
    assert sa.make_url(settings.database_url).query["sslmode"] == "verify-full"
    deployment = one(parsed, "Deployment")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > settings.shutdown_timeout_seconds


def test_names_and_selectors_line_up(parsed) -> None:
    deployment = one(parsed, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert one(parsed, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    config = one(parsed, "ConfigMap")
    secret = parsed[BASE / "secret.example.yaml"][0]
    refs = {next(iter(ref.values()))["name"] for ref in container(deployment)["envFrom"]}
    assert refs == {config["metadata"]["name"]}  # secrets are files, not environment
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    mounted = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    assert mounted == {secret["metadata"]["name"]}
    scaled = one(parsed, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and int(trigger["metadata"]["lagThreshold"]) > 0
    assert trigger["metadata"]["consumerGroup"] == config["data"][PREFIX + "GROUP_ID"]
    bootstrap = config["data"][PREFIX + "KAFKA_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["bootstrapServers"] == bootstrap
    auth = one(parsed, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_backfill_job_arguments_parse(parsed) -> None:
    job = one(parsed, "Job", DEPLOY / "jobs")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    parser = argparse.ArgumentParser()
    ops.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(c["args"])
    assert args.handler is ops.run_backfill and args.all and args.wait
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_alerts_use_exported_metrics(parsed) -> None:
    exported = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        exported.update(family.name + s for s in suffixes.get(family.type, [""]))
    (rules,) = parsed[DEPLOY / "prometheus" / "alerts.yaml"]
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"cert_consumer_[a-z_]+", rule["expr"])
    }
    assert used and used <= exported, used - exported


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    # The wheel carries the schemas (consumer/schemas links to schemas/), so the build stage
    # must see both, and the image needs no separate copy.
    assert re.search(r"^COPY schemas \./schemas$", text, re.M)
    assert "CERT_CONSUMER_SCHEMAS_DIR" not in text
    assert 'ENTRYPOINT ["cert-consumer"]' in text and 'CMD ["run"]' in text
    assert f"EXPOSE {DEFAULTS.metrics_port}" in text
