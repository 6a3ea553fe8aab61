"""The image's inputs are pinned and the build records what it was built from: the base by tag
and digest, every Python package by the lock files in requirements/ (fully pinned, hashed,
covering pyproject.toml, the test lock at the runtime lock's versions), the environment these
tests run in is exactly the test lock, and the commit goes into a label and a file. No Docker
engine is needed: the Dockerfile is read, not built."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ops.support import REPO

DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()
LOCKS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")
HASH = re.compile(r"^    --hash=sha256:[0-9a-f]{64}( \\)?$")


def lock(name: str) -> dict[str, str]:
    """The pins of requirements/NAME.lock (canonical name -> version), each checked to carry
    hashes and nothing else: no ranges, no URLs, no editable or unpinned line."""
    pins: dict[str, str] = {}
    current = None
    for number, line in enumerate((LOCKS / f"{name}.lock").read_text().splitlines(), 1):
        where = f"{name}.lock:{number}: {line}"
        if not line or line.lstrip().startswith("#"):
            continue
        if pin := PIN.match(line):
            current = canonicalize_name(pin[1])
            assert current not in pins, where
            pins[current] = pin[2]
            continue
        assert HASH.match(line) and current, where
    assert pins, name
    return pins


def _extra(name: str, seen: frozenset[str] = frozenset()) -> list[Requirement]:
    """The requirements of an extra of the project, its own extras expanded."""
    found = []
    for text in PYPROJECT["project"]["optional-dependencies"][name]:
        req = Requirement(text)
        if canonicalize_name(req.name) == canonicalize_name(PYPROJECT["project"]["name"]):
            for inner in req.extras - seen:
                found += _extra(inner, seen | {name})
        else:
            found.append(req)
    return found


def _unmet(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    return [
        str(r)
        for r in requirements
        if canonicalize_name(r.name) not in pins
        or not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]


def test_locks_pin_everything_with_hashes() -> None:
    for name in ("runtime", "test", "build"):
        text = (LOCKS / f"{name}.lock").read_text()
        assert "Regenerate: scripts/lock" in text, name
        lock(name)


def test_locks_cover_pyproject() -> None:
    runtime = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    assert not _unmet(runtime, lock("runtime"))
    assert not _unmet(runtime + _extra("test"), lock("test"))
    build = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    assert not _unmet(build, lock("build"))


def test_tests_run_at_the_runtime_versions() -> None:
    runtime, test = lock("runtime"), lock("test")
    assert {name: test.get(name) for name in runtime} == runtime


def test_this_environment_is_the_test_lock() -> None:
    """What CI tests with is what the lock says (scripts/test installs it, hashes checked)."""
    installed = {}
    for name in lock("test"):
        try:
            installed[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed[name] = None
    differ = {n: (v, installed[n]) for n, v in lock("test").items() if installed[n] != v}
    assert not differ, f"(locked, installed) {differ}: run scripts/test"
    script = (REPO / "scripts" / "test").read_text()
    assert "--require-hashes --no-deps -r requirements/test.lock" in script
    assert "--no-deps --build-constraint requirements/build.lock -e ." in script


def stages() -> list[tuple[str, str | None, list[str]]]:
    """The Dockerfile's stages: (image, alias, instructions), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    found: list[tuple[str, str | None, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if from_ := re.fullmatch(r"FROM (\S+)(?: AS (\S+))?", line):
            found.append((from_[1], from_[2], []))
        else:
            assert found, line
            found[-1][2].append(re.sub(r"\s+", " ", line))
    return found


def test_base_image_is_pinned_by_tag_and_digest() -> None:
    (base, *rest) = stages()
    pinned = re.fullmatch(r"python:(3\.11\.\d+)-slim-bookworm@(sha256:[0-9a-f]{64})", base[0])
    assert pinned and base[1] == "base", base[0]
    # Every other stage starts from that one, so the digest is written once.
    assert [image for image, _, _ in rest] == ["base", "base"]
    labels = " ".join(i for i in rest[-1][2] if i.startswith("LABEL "))
    assert f'org.opencontainers.image.base.digest="{pinned[2]}"' in labels
    name = f"docker.io/library/python:{pinned[1]}-slim-bookworm"
    assert f'org.opencontainers.image.base.name="{name}"' in labels


def test_image_installs_exactly_the_runtime_lock() -> None:
    (_, (_, _, build), (_, _, final)) = stages()
    build_runs = " ".join(i for i in build if i.startswith("RUN "))
    assert "--require-hashes --no-deps -r requirements/build.lock" in build_runs
    assert "pip wheel --no-cache-dir --no-deps --no-build-isolation" in build_runs
    assert "--require-hashes --no-deps --only-binary=:all:" in build_runs
    assert "-r requirements/runtime.lock" in build_runs
    installs = [
        part
        for i in final
        if i.startswith("RUN ")
        for part in i.split("&&")
        if "pip install" in part
    ]
    assert len(installs) == 2 and all("--no-index" in p and "--no-deps" in p for p in installs)
    assert "--require-hashes" in installs[0] and "-r /tmp/runtime.lock" in installs[0]
    assert "certificate_consumer-*.whl" in installs[1]


@pytest.mark.parametrize("commit", ["unknown", "0123abc", "a" * 40])
def test_the_build_commit_is_a_label_and_a_file(commit: str) -> None:
    (*_, (_, _, final)) = stages()
    assert "ARG GIT_COMMIT=unknown" in final and "ARG VERSION=0.1.0" in final
    labels = " ".join(i for i in final if i.startswith("LABEL "))
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    (writes,) = [i for i in final if "/etc/cert-consumer/build-commit" in i]
    assert "printf '%s\\n' \"$GIT_COMMIT\" > /etc/cert-consumer/build-commit" in writes
    # The check the build runs on the argument accepts commit ids and the default only.
    pattern = re.search(r"=~ \^(\S+)\$ \]\]", writes)
    assert pattern and re.fullmatch(pattern[1], commit)
    for bad in ("", "HEAD", "v0.1.0", "0123ab", "ABCDEF0"):
        assert not re.fullmatch(pattern[1], bad), bad
    # Written as root before the switch to the non-root user; the user is not root.
    assert final.index(writes) < final.index("USER 10001:10001")
    assert [i for i in final if i.startswith("USER ")] == ["USER 10001:10001"]
