"""The wheel a user installs works on its own: built from this checkout, installed into a fresh
virtualenv (no editable link, no checkout on the path), it finds its schemas and its commands,
and a command that needs an optional extra says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILES = sorted(p.name for p in (REPO / "schemas").glob("*.avsc"))


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # No CERT_CONSUMER_* setting and no checkout on the path: what a new user has.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERT_CONSUMER_", "PYTHON"))}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin/ folder of a fresh virtualenv holding only the built wheel and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root), str(REPO)],
        cwd=root,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = root.glob("certificate_consumer-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    pip = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=root)
    assert pip.returncode == 0, pip.stderr
    yield bin_dir


def test_the_wheel_carries_its_schemas(installed: Path, tmp_path: Path) -> None:
    listed = _run([str(installed / "cert-consumer"), "schemas", "list"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[-1] for line in listed.stdout.splitlines()) == SCHEMA_FILES
    where = _run(
        [
            str(installed / "python"),
            "-c",
            "from consumer.events.catalogue import locate_schemas_dir; print(locate_schemas_dir())",
        ],
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout


def test_help_lists_the_commands(installed: Path, tmp_path: Path) -> None:
    shown = _run([str(installed / "cert-consumer"), "--help"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for command in ("run", "evaluate", "schemas", "replay", "lag", "backfill", "demo"):
        assert command in shown.stdout


def test_the_demo_without_its_extra_says_which_to_install(installed: Path, tmp_path: Path) -> None:
    refused = _run([str(installed / "cert-consumer"), "demo"], cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "cert-consumer: cert-consumer demo needs the 'embedded' extra (rich is not installed): "
        "pip install 'certificate-consumer[embedded]'"
    ]
