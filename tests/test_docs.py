"""The documentation: the MkDocs site builds with --strict (a broken link or anchor fails), its generated references
cover every command, option and setting of the code, and the README stays one screen whose links all resolve."""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Material's notice about MkDocs 2.0 on every build: not a warning about these docs.
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(out: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``out``, from the repository root (snippets resolve from there)."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir"]
    return subprocess.run([*command, str(out)], cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def hook() -> ModuleType:
    """``docs/_hooks/cli_reference.py``, the generator of the CLI reference."""
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "_hooks" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commands() -> dict[str, list[str]]:
    """Every command path of the CLI with the first spelling of each of its visible options, read from click's
    ``commands`` mapping (not the hook's walk)."""
    import typer

    from streaming.cli import app

    found: dict[str, list[str]] = {}

    def visit(command: Any, path: str) -> None:
        found[path] = [param.opts[0] for param in command.params if not getattr(param, "hidden", False)]
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                visit(sub, f"{path} {name}")

    visit(typer.main.get_command(app), "livelearn")
    return found


def test_the_site_builds_strict_with_every_page_in_the_nav(site):
    assert (site / "index.html").exists()
    assert (site / "operations" / "alerts" / "index.html").exists()  # the runbook_url of every alert points here
    assert "flowchart LR" in (site / "index.html").read_text()  # the diagram reaches the page as a mermaid block


def test_a_broken_anchor_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    with (docs / "concepts.md").open("a") as page:
        page.write("\nSee [the runbook](operations/alerts.md#no-such-alert).\n")
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs", f"docs_dir: {docs}").replace(
        "  - docs/_hooks/cli_reference.py", f"  - {docs / '_hooks' / 'cli_reference.py'}"
    )
    assert str(docs) in config
    (tmp_path / "mkdocs.yml").write_text(config)
    result = build(tmp_path / "site", tmp_path / "mkdocs.yml")
    assert result.returncode != 0
    assert "no-such-alert" in result.stdout + result.stderr


def test_the_cli_reference_has_every_command_and_option(site):
    page = (site / "reference" / "cli" / "index.html").read_text()
    assert hook().MARKER not in page  # the hook ran
    generated = hook().cli_markdown()
    sections = dict(re.findall(r"^#{2,3} `(livelearn[a-z -]*)`\n(.*?)(?=^#{2,3} `|\Z)", generated, re.M | re.S))
    every = commands()
    assert {"livelearn", "livelearn versions pin", "livelearn learning resume"} <= set(every)
    for path, options in every.items():
        assert f'id="{path.replace(" ", "-")}"' in page, f"{path} has no section on the CLI page"
        assert path in sections
        missing = [option for option in options if f"`{option}" not in sections[path]]
        assert not missing, f"{path}: {missing} not in its section"


def test_the_configuration_reference_has_every_setting(site):
    from streaming.config import ENV_PREFIX, Settings

    page = (site / "reference" / "configuration" / "index.html").read_text()
    assert "<table>" in page
    missing = [name for name in Settings.model_fields if f"<code>{ENV_PREFIX}{name.upper()}</code>" not in page]
    assert not missing


def test_the_generator_examples_run():
    results = doctest.testmod(hook(), optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 3
    assert results.failed == 0


def test_the_readme_is_one_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail into docs/"
    text = "\n".join(lines)
    tasks = ("versions list", "versions show", "versions pin", "versions unpin", "versions rollback")
    missing = [must for must in ("scripts/up", "scripts/test", *tasks, "Sakar", "CC BY 4.0") if must not in text]
    assert not missing


def slugs(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (lower case, punctuation dropped, spaces to -)."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_slugs_are_githubs():
    assert slugs("# The five operator tasks\n## `livelearn up` (local)\n```\n# not a heading\n```") == {
        "the-five-operator-tasks",
        "livelearn-up-local",
    }


def test_every_relative_link_in_the_readme_resolves():
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(relative) >= 10
    broken = []
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (ROOT / path).resolve() if path else README
        resolves = target.exists() and target.is_relative_to(ROOT)
        if not resolves or (anchor and (target.suffix != ".md" or anchor not in slugs(target.read_text()))):
            broken.append(link)
    assert not broken
