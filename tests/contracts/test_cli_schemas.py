"""``cert-consumer schemas list|check|register``, invoked through argparse and as a module."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.cli import failures
from consumer.cli.schemas import REGISTRY_URL_ENV, add_commands
from tests.contracts.conftest import REPO, WriteSchema, raw_schema

ALONE = (
    "one version only, nothing to compare: approval_requested, certificate_settings_changed, "
    "page_score_updated, post_created\n"
)


def run(*argv: str) -> tuple[int, str]:
    """Parse like the main CLI would, then call the stored handler."""
    parser = argparse.ArgumentParser(prog="cert-consumer")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["schemas", *argv])
    out = io.StringIO()
    try:
        code = args.handler(args, out)
    except Exception as exc:  # as the CLI's one error path says it (cert-consumer: <line>)
        explained = failures.explain(exc)
        assert explained is not None, exc
        code, lines = explained
        out.write("".join(f"{line}\n" for line in lines))
    return code, out.getvalue()


def test_list_shows_every_version_with_its_fingerprint() -> None:
    code, out = run("list")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 6
    assert lines[4].split() == [
        "org.oli.torus.page_score_updated.v1",
        "3c443735278ba4d2",
        "torus.page-score-updated",
        "page_score_updated.v1.avsc",
    ]


def test_check_passes_on_the_real_folder() -> None:
    assert run("check") == (0, "FULL_TRANSITIVE ok: 2 reader/writer pairs checked\n" + ALONE)


def test_check_passes_with_a_defaulted_v2(write_schema: WriteSchema, schemas_copy: Path) -> None:
    v2 = raw_schema("post_created.v1.avsc")
    v2["fields"].append(
        {"name": "trace_id", "type": ["null", "string"], "default": None, "doc": "x"}
    )
    write_schema("post_created.v2.avsc", v2)
    assert run("check", "--schemas-dir", str(schemas_copy)) == (
        0,
        "FULL_TRANSITIVE ok: 4 reader/writer pairs checked\n"
        "one version only, nothing to compare: approval_requested, "
        "certificate_settings_changed, page_score_updated\n",
    )


def test_check_fails_on_an_incompatible_v2(write_schema: WriteSchema, schemas_copy: Path) -> None:
    v2 = raw_schema("post_created.v1.avsc")
    v2["fields"].append({"name": "thread_id", "type": "long", "doc": "no default"})
    write_schema("post_created.v2.avsc", v2)
    code, out = run("check", "--schemas-dir", str(schemas_copy))
    assert code == 3
    assert "INCOMPATIBLE post_created.v1.avsc (writer) -> post_created.v2.avsc (reader):" in out
    assert "$.thread_id: reader field missing from writer has no default" in out
    assert "FULL_TRANSITIVE FAILED: 4 reader/writer pairs checked\n" in out


def test_register_needs_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REGISTRY_URL_ENV, raising=False)
    assert run("register") == (
        2,
        f"invalid configuration: no registry: pass --registry-url or set {REGISTRY_URL_ENV}\n",
    )


def test_register_refuses_a_url_that_is_not_one() -> None:
    assert run("register", "--registry-url", "user:secret@registry") == (
        2,
        "invalid configuration: --schema-registry-url must be an http:// or https:// URL with "
        "a host\n",
    )


def test_register_reports_an_unreachable_registry() -> None:
    code, out = run("register", "--registry-url", "http://127.0.0.1:9")
    assert code == 3
    assert out.count("\n") == 1 and "registry" in out.lower()


def test_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli.schemas", "check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        0,
        "FULL_TRANSITIVE ok: 2 reader/writer pairs checked\n" + ALONE,
    )
    broken = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.cli.schemas",
            "list",
            "--schemas-dir",
            str(tmp_path / "none"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert broken.returncode == 2
    assert "is not a directory" in broken.stderr
