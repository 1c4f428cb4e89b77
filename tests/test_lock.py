"""The environment the suite runs in is the one the lock files pin (scripts/_venv.sh installs from requirements/)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*(?:\[[^\]]*\])?)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", re.M)


def read_pins(name: str) -> dict[str, str]:
    """The versions a lock file pins for this interpreter (its environment markers evaluated)."""
    pins: dict[str, str] = {}
    text = (LOCK / f"{name}.txt").read_text()
    for project, version, marker in PIN.findall(text):
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonicalize_name(project.split("[")[0])] = version
    return pins


def test_every_pin_carries_hashes() -> None:
    for path in sorted(LOCK.glob("*.txt")):
        blocks = [b for b in re.split(r"\n(?=\S)", path.read_text()) if b.strip() and not b.startswith("#")]
        assert blocks, path
        for block in blocks:
            assert "==" in block.splitlines()[0], (path.name, block.splitlines()[0])
            assert "--hash=sha256:" in block, f"{path.name}: {block.splitlines()[0]} has no hash"


def test_installed_versions_are_the_locked_ones() -> None:
    pins = read_pins("dev")
    assert {"river", "numba", "redis", "confluent-kafka", "mypy"} <= set(pins)
    wrong = {}
    for project, version in pins.items():
        try:
            installed = metadata.version(project)
        except metadata.PackageNotFoundError:
            wrong[project] = (version, None)
            continue
        if installed != version:
            wrong[project] = (version, installed)
    assert not wrong, f"installed versions differ from requirements/dev.txt (locked, installed): {wrong}"


@pytest.mark.parametrize(("lock", "extras"), [("image", ()), ("up", ("local",)), ("dev", ("local", "test"))])
def test_each_lock_covers_its_extras(lock: str, extras: tuple[str, ...]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = read_pins(lock)
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements/{lock}.txt has no pin for {requirement}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (lock, str(requirement), pins[name])


def test_shared_pins_agree_and_every_install_reads_a_lock() -> None:
    dev = read_pins("dev")
    for lock in ("image", "up", "build"):
        for project, version in read_pins(lock).items():
            assert dev.get(project) == version, f"requirements/{lock}.txt: {project}=={version}, dev {dev.get(project)}"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "--require-hashes --only-binary=:all: --wheel-dir /wheels -r image.txt" in dockerfile
    assert re.search(r"^ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.M), "the base is not pinned by digest"
    venv = (ROOT / "scripts" / "_venv.sh").read_text()
    installs = (
        '--require-hashes --only-binary=:all: -r "$root/requirements/build.txt" -r "$root/requirements/$lockset.txt"'
    )
    assert installs in venv
    assert "--no-deps --no-build-isolation" in venv


def test_each_lock_names_the_pyproject_it_was_made_from() -> None:
    """``scripts/lock`` heads each lock with pyproject.toml's sha256: a pyproject change is committed with its locks."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    for path in sorted((root / "requirements").glob("*.txt")):
        assert path.read_text().splitlines()[0] == f"# locked from pyproject.toml sha256 {digest}", path.name
