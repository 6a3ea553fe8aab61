"""deploy/ validated offline: every YAML file parses (a real YAML parser), the kustomize base
builds, every Kubernetes object (files and build alike) passes the schemas of a fixed Kubernetes
version in strict mode (an unknown field is an error), KEDA's objects pass KEDA's own CRD schemas
(vendored in keda-crds/), a broken manifest is shown to fail that same check, and the manifests
agree with the code: probe paths answer on the service's metrics port, the ConfigMap holds only
known settings with valid values, names and selectors line up, both KEDA triggers point at what
the service uses, the Job's arguments parse, and the alerts use metric names the service
exports."""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import importlib.resources
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import sqlalchemy as sa
import yaml

from consumer.cli import ops
from consumer.config import PREFIX, Settings, describe, load_settings
from consumer.observability.dependencies import Dependencies
from consumer.observability.endpoints import serve
from consumer.observability.health import Heartbeats
from consumer.observability.metrics import Metrics
from consumer.store.service_tables import SCHEMA, metadata
from tests.ops.support import REPO, load_yaml

DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
FILES = sorted(DEPLOY.rglob("*.yaml"))
DEFAULTS = Settings()

# The Kubernetes version the manifests are checked against, with the schemas shipped by the
# kubernetes-validate package (pinned in requirements/test.lock). Move it with the clusters.
KUBERNETES_VERSION = "1.33.0"
# KEDA's CRDs, unchanged from the release (keda-crds/README.md says where from); their hashes
# here so that a schema cannot be edited to let a manifest through.
KEDA_VERSION = "v2.21.0"
KEDA_CRDS = Path(__file__).parent / "keda-crds"
KEDA_CRD_SHA256 = {
    "keda.sh_scaledobjects.yaml": (
        "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80"
    ),
    "keda.sh_triggerauthentications.yaml": (
        "ed59ab37b2fa9a18119484a3dbd849b0b18ed25e1aea91d9f1305d4da2215bd8"
    ),
}
# Not Kubernetes objects: the kustomization (kustomize itself checks it, test_kustomize_build)
# and Prometheus' own configuration files.
NOT_OBJECTS = {("kustomize.config.k8s.io/v1beta1", "Kustomization")}


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


# Schema validation: the same function for the real manifests and the broken ones.


def _strict(node: Any) -> None:
    """Make a CRD's OpenAPI schema strict in place, as the API server prunes and kubectl's
    field validation rejects: an object with declared properties takes no others."""
    if isinstance(node, list):
        for item in node:
            _strict(item)
        return
    if not isinstance(node, dict):
        return
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        for child in node.get(key, {}).values():
            _strict(child)
    for key in ("items", "additionalProperties", "not"):
        _strict(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        _strict(node.get(key, []))


def _kubernetes_definitions() -> dict[str, Any]:
    """The Kubernetes definitions (ObjectMeta...) of KUBERNETES_VERSION, strict flavour."""
    schemas = importlib.resources.files(kubernetes_validate) / "kubernetes-json-schema"
    path = schemas / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json"
    return json.loads(path.read_text())


@functools.cache
def keda_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator of KEDA's CRD schema, strict, whose metadata must be a
    valid ObjectMeta of KUBERNETES_VERSION."""
    definitions = _kubernetes_definitions()
    registry = referencing.Registry().with_resource(
        definitions["$id"], referencing.Resource.from_contents(definitions)
    )
    object_meta = definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    found = {}
    for name, digest in KEDA_CRD_SHA256.items():
        raw = (KEDA_CRDS / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == digest, f"{name} differs from KEDA {KEDA_VERSION}"
        crd = yaml.safe_load(raw)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            api_version = f"{group}/{version['name']}"
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            _strict(schema)
            schema["properties"]["apiVersion"] = {"const": api_version}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {"$ref": object_meta}
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            found[api_version, kind] = jsonschema.Draft202012Validator(schema, registry=registry)
    return found


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Why ``doc`` fails its schema (empty when it passes): KEDA's CRDs for KEDA's kinds, the
    Kubernetes schemas of KUBERNETES_VERSION for the rest; strict both; no schema, an error."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if not all(isinstance(part, str) for part in key):
        return ["(root): no apiVersion or kind"]
    keda = keda_validators()
    if key in keda:
        return [
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(keda[key].iter_errors(doc), key=lambda e: list(map(str, e.path)))
        ]
    if str(key[0]).startswith("keda.sh/"):
        return [f"no KEDA {KEDA_VERSION} schema for {key}"]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


def objects(parsed: dict[Path, list[Any]]) -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object of deploy/ and of the kustomize build."""
    return [
        (path, doc)
        for path, ds in parsed.items()
        if path.parent.name != "prometheus"
        for doc in ds
        if (doc.get("apiVersion"), doc.get("kind")) not in NOT_OBJECTS
    ]


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
            "TriggerAuthentication",
        ]
    )
    (deployment,) = [d for d in built[0] if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "cert-consumer:0.1.0"


def test_manifests_pass_the_schemas(parsed) -> None:
    checked = objects(parsed)
    failures = {
        f"{path.name}: {doc.get('kind')} {doc.get('metadata', {})}": schema_errors(doc)
        for path, doc in checked
    }
    assert not {where: errors for where, errors in failures.items() if errors}
    counted: dict[str, int] = {}
    for _, doc in checked:
        counted[doc["kind"]] = counted.get(doc["kind"], 0) + 1
    built = 2 if any(p.name == "built.yaml" for p in parsed) else 1  # files, and the build
    assert counted == {
        "ServiceAccount": built,
        "ConfigMap": built,
        "Deployment": built,
        "PodDisruptionBudget": built,
        "ScaledObject": built,
        "TriggerAuthentication": 2 * built,
        "Secret": 1,
        "Job": 1,
    }


def _misspell(doc: dict[str, Any]) -> dict[str, Any]:
    c = container(doc)
    c["readynessProbe"] = c.pop("readinessProbe")
    return doc


def _trigger_without_type(doc: dict[str, Any]) -> dict[str, Any]:
    del doc["spec"]["triggers"][-1]["type"]
    return doc


def _unquoted_number(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["triggers"][-1]["metadata"]["targetQueryValue"] = 3000  # KEDA wants strings
    return doc


def _misspelled_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    doc["metadata"]["lables"] = doc["metadata"].pop("labels")
    return doc


def _misspelled_auth(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["secretTargetRefs"] = doc["spec"].pop("secretTargetRef")
    return doc


def _wrong_type(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "40s"
    return doc


def _unknown_version(doc: dict[str, Any]) -> dict[str, Any]:
    doc["apiVersion"] = "keda.sh/v1beta1"
    return doc


@pytest.mark.parametrize(
    ("kind", "breaks", "expected"),
    [
        ("Deployment", _misspell, "readynessProbe"),
        ("Deployment", _wrong_type, "terminationGracePeriodSeconds"),
        ("ScaledObject", _trigger_without_type, "'type' is a required property"),
        ("ScaledObject", _unquoted_number, "3000 is not of type 'string'"),
        ("ScaledObject", _misspelled_metadata, "lables"),
        ("ScaledObject", _unknown_version, "no KEDA"),
        ("TriggerAuthentication", _misspelled_auth, "secretTargetRefs"),
    ],
)
def test_a_broken_manifest_fails_the_schemas(
    parsed, kind: str, breaks: Callable[[dict[str, Any]], dict[str, Any]], expected: str
) -> None:
    """The check above can fail: each deliberately broken copy of a real manifest is refused,
    with the offending field named."""
    docs_of_kind = docs(parsed, kind)
    assert docs_of_kind and not schema_errors(docs_of_kind[0])
    errors = schema_errors(breaks(copy.deepcopy(docs_of_kind[0])))
    assert errors and any(expected in e for e in errors), errors


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
    # KEDA's own rule (a CEL expression in its CRD, which the schema check does not run).
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    kafka, backlog = scaled["spec"]["triggers"]
    assert kafka["type"] == "kafka" and int(kafka["metadata"]["lagThreshold"]) > 0
    assert kafka["metadata"]["consumerGroup"] == config["data"][PREFIX + "GROUP_ID"]
    bootstrap = config["data"][PREFIX + "KAFKA_BOOTSTRAP_SERVERS"]
    assert kafka["metadata"]["bootstrapServers"] == bootstrap
    auths = {a["metadata"]["name"]: a for a in docs(parsed, "TriggerAuthentication")}
    assert {t["authenticationRef"]["name"] for t in (kafka, backlog)} == auths.keys()
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == secret["metadata"]["name"], ref
            assert ref["key"] in secret["stringData"], ref


def test_backlog_trigger_reads_the_service_queue(parsed) -> None:
    """The postgresql trigger connects as the service does and counts its own due keys."""
    config = one(parsed, "ConfigMap")["data"]
    url = sa.make_url(config[PREFIX + "DATABASE_URL"])
    (trigger,) = [
        t for t in one(parsed, "ScaledObject")["spec"]["triggers"] if t["type"] == "postgresql"
    ]
    meta = trigger["metadata"]
    # KEDA's operator runs in its own namespace: the service's name in full.
    assert meta["host"].split(".")[0] == url.host and meta["host"].count(".") >= 2
    assert (meta["port"], meta["userName"], meta["dbName"]) == (
        str(url.port),
        url.username,
        url.database,
    )
    assert meta["sslmode"] == url.query["sslmode"] == "verify-full"
    # The query names a real table of the service's schema, and a real column of it.
    found = re.fullmatch(
        r"SELECT count\(\*\) FROM (\w+)\.(\w+) WHERE (\w+) <= now\(\)", meta["query"]
    )
    assert found, meta["query"]
    schema, table, column = found.groups()
    assert schema == SCHEMA and column in metadata.tables[f"{schema}.{table}"].c
    # A 6,040-key backfill (no Kafka lag at all) must be able to add evaluators.
    assert 1_000 <= float(meta["targetQueryValue"]) < 6_040 / 2
    # The password is the very Secret key the pods read theirs from, nothing else.
    auth = {a["metadata"]["name"]: a for a in docs(parsed, "TriggerAuthentication")}[
        trigger["authenticationRef"]["name"]
    ]
    (ref,) = auth["spec"]["secretTargetRef"]
    password_file = Path(config[PREFIX + "DATABASE_PASSWORD_FILE"])
    assert (ref["parameter"], ref["key"]) == ("password", password_file.name)


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
    # One base, an exact tag and its digest (tests/ops/test_image.py checks the pinning).
    assert re.search(
        r"^FROM python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64} AS base$", text, re.M
    )
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    # The wheel carries the schemas (consumer/schemas links to schemas/), so the build stage
    # must see both, and the image needs no separate copy.
    assert re.search(r"^COPY schemas \./schemas$", text, re.M)
    assert "CERT_CONSUMER_SCHEMAS_DIR" not in text
    assert 'ENTRYPOINT ["cert-consumer"]' in text and 'CMD ["run"]' in text
    assert f"EXPOSE {DEFAULTS.metrics_port}" in text
