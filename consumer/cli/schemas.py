"""``cert-consumer schemas list|check|register``: the schema catalogue from the command line.

``add_commands`` adds the ``schemas`` command to the main parser; each sub-command stores its
handler as ``args.handler``, a function of the parsed arguments that returns the exit code.
``check`` is what CI runs; ``register`` is run once per release, before producers start (the
service only looks schema ids up, it never registers on the fly).

Builds its registry client here, from ``--registry-url`` or CERT_CONSUMER_SCHEMA_REGISTRY_URL
(read by ``consumer.config``): the CLI is a wiring place. Must not import the runtime loops or
the database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

from consumer.config import Settings, load_settings
from consumer.errors import CheckFailedError, ConfigError
from consumer.events.catalogue import (
    Catalogue,
    EventType,
    load_catalogue,
    locate_schemas_dir,
)
from consumer.events.compatibility import check_full_transitive
from consumer.events.registration import COMPATIBILITY, register_all

REGISTRY_URL_ENV = "CERT_CONSUMER_SCHEMA_REGISTRY_URL"

Handler = Callable[[argparse.Namespace], int]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``schemas list|check|register`` to the CLI's sub-commands."""
    schemas = subparsers.add_parser("schemas", help="list, check and register the Avro schemas")
    commands = schemas.add_subparsers(dest="schemas_command", required=True)
    for name, handler, text in (
        ("list", run_list, "every schema version with its fingerprint, ce_type and topic"),
        ("check", run_check, "FULL_TRANSITIVE compatibility of every version (exit 3 if not)"),
        ("register", run_register, f"register every version as <topic>-value, {COMPATIBILITY}"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--schemas-dir",
            type=Path,
            default=None,
            help="folder of <event_type>.v<N>.avsc files (default: CERT_CONSUMER_SCHEMAS_DIR, "
            "else the checkout's schemas/)",
        )
        command.set_defaults(handler=handler)
    register = commands.choices["register"]
    register.add_argument(
        "--registry-url", default=None, help=f"schema registry URL (default: {REGISTRY_URL_ENV})"
    )
    register.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="EVENT_TYPE=TOPIC",
        help="a topic other than the default for one event type (repeatable)",
    )


def run_list(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """One line per schema version: ce_type, fingerprint, topic, file."""
    for version in _catalogue(args):
        print(
            version.ce_type,
            version.fingerprint.hex(),
            version.event_type.default_topic,
            version.path.name,
            file=out,
        )
    return 0


def run_check(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Check every version against all earlier ones of its type, both ways; 3 on any failure."""
    report = check_full_transitive(_catalogue(args))
    for bad in report.incompatibilities:
        print(
            f"INCOMPATIBLE {bad.writer.path.name} (writer) -> {bad.reader.path.name} (reader):",
            file=out,
        )
        for problem in bad.problems:
            print(f"  {problem}", file=out)
    catalogue = _catalogue(args)
    alone = sorted(e.value for e in EventType if len(catalogue.history(e)) == 1)
    verdict = "ok" if report.ok else "FAILED"
    print(
        f"{COMPATIBILITY} {verdict}: {report.pairs_checked} reader/writer pairs checked", file=out
    )
    if alone:  # said, so a pass is never mistaken for a check of what has nothing to compare
        print(f"one version only, nothing to compare: {', '.join(alone)}", file=out)
    if not report.ok:
        print(f"cert-consumer: schemas are not {COMPATIBILITY} compatible", file=sys.stderr)
    return 0 if report.ok else 3


def run_register(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Register every version in order; one JSON line per version; a refusal is one line on
    stderr and exit 3 (an unreachable registry too)."""
    url = load_settings(
        require_database=False, schema_registry_url=args.registry_url
    ).schema_registry_url
    if not url:
        raise ConfigError([f"no registry: pass --registry-url or set {REGISTRY_URL_ENV}"])
    catalogue = _catalogue(args)
    topics = _topic_overrides(args.topic)
    client = SchemaRegistryClient({"url": url})
    try:
        for registered in register_all(catalogue, client, topics):
            print(json.dumps(asdict(registered)), file=out)
    except SchemaRegistryError as exc:
        raise CheckFailedError(f"the registry refused a schema: {exc}") from exc
    return 0


def _topic_overrides(pairs: Sequence[str]) -> dict[EventType, str]:
    overrides: dict[EventType, str] = {}
    for pair in pairs:
        name, _, topic = pair.partition("=")
        if name not in {e.value for e in EventType} or not topic:
            raise ConfigError([f"--topic {pair!r}: expected <event_type>=<topic>"])
        overrides[EventType(name)] = topic
    return overrides


def _settings() -> Settings:
    return load_settings(require_database=False)


def _catalogue(args: argparse.Namespace) -> Catalogue:
    return load_catalogue(locate_schemas_dir(args.schemas_dir or _settings().schemas_dir))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``schemas`` on its own (``python -m consumer.cli.schemas list``), through the CLI's
    one error path."""
    from consumer.cli.main import main as cli_main  # noqa: PLC0415 - it imports this module

    return cli_main(["schemas", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
