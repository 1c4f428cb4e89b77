"""The image's contract with the Helm chart and the brief, read from docker/Dockerfile (no docker needed).

scripts/image builds and runs the image (in .ci/run); these checks keep what the chart assumes in step
with the Dockerfile: the entry point, the numeric user, the writable paths under /tmp.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _final_stage() -> list[str]:
    """Instructions of the last stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def _instruction(name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in _final_stage() if line.split(None, 1)[0].upper() == name]


def test_runtime_runs_livelearn_as_numeric_non_root_user() -> None:
    assert json.loads(_instruction("ENTRYPOINT")[-1]) == ["livelearn"]
    user = _instruction("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert gid.isdigit() and int(gid) != 0, user
    values = (ROOT / "helm" / "livelearn" / "values.yaml").read_text(encoding="utf-8")
    assert re.findall(r"runAsUser: (\d+)", values) and set(re.findall(r"runAsUser: (\d+)", values)) == {uid}


def test_writable_paths_are_under_tmp() -> None:
    env = " ".join(_instruction("ENV"))
    for name in ("HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "LIVELEARN_CACHE_DIR"):
        match = re.search(rf"\b{name}=(\S+)", env)
        assert match, f"{name} is not set in the runtime stage"
        assert match.group(1) == "/tmp" or match.group(1).startswith("/tmp/"), match.group(0)
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_build_installs_from_wheels_only_and_takes_a_base_argument() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$", text, re.MULTILINE)  # pinned
    assert "--no-index" in text and "--only-binary=:all:" in text
    assert "[local]" not in text and "livelearn[" not in text  # production image: no embedded servers
    labels = " ".join(_instruction("LABEL"))
    for key in ("title", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


@pytest.mark.parametrize("pattern", ["**/.venv", ".git", "bench/results", "**/__pycache__", "wt-*"])
def test_dockerignore_keeps_the_context_small(pattern: str) -> None:
    assert pattern in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()


def test_image_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "image")], check=True)
