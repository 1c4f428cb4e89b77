"""Render the Helm chart offline (helm-python-sdk: the Helm library itself, no binary, no cluster) for the tests.

The three value sets the tests hold the chart to: the chart's defaults, the production example and the minimal
example (``helm/examples/``).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "livelearn"
EXAMPLES = ROOT / "helm" / "examples"
RELEASE = "shop"
NAMESPACE = "shop"

#: Values each test renders; "default" is the chart's own values.yaml.
VALUE_SETS = ("default", "production", "minimal")


def example_values(name: str) -> dict[str, Any]:
    """The values of one set, parsed by Helm's own YAML reader (as ``helm install -f`` does)."""
    if name == "default":
        return {}
    return helm_python.values_from_yaml((EXAMPLES / f"{name}.yaml").read_text())


def render(values: dict[str, Any] | None = None, *, upgrade: bool = False) -> list[dict[str, Any]]:
    """Every manifest the chart renders with ``values`` (schema enforced), as parsed YAML documents (a fresh copy:
    callers may change them)."""
    return copy.deepcopy(_render(json.dumps(values or {}, sort_keys=True), upgrade))


def notes(values: dict[str, Any] | None = None) -> str:
    """What ``helm install`` prints after installing with ``values`` (the chart's NOTES.txt)."""
    return _rendered(json.dumps(values or {}, sort_keys=True), False)[NOTES]


#: The template Helm prints after an install or upgrade: text, not a manifest.
NOTES = "livelearn/templates/NOTES.txt"


@functools.lru_cache(maxsize=64)
def _rendered(values: str, upgrade: bool) -> dict[str, str]:
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(
            json.loads(values), name=RELEASE, namespace=NAMESPACE, is_install=not upgrade, is_upgrade=upgrade
        )


@functools.lru_cache(maxsize=64)
def _render(values: str, upgrade: bool) -> list[dict[str, Any]]:
    rendered = _rendered(values, upgrade)
    return [doc for path, text in rendered.items() if path != NOTES for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The manifests of one kind, by name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def rule_groups(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The PrometheusRule's groups rendered with ``values`` (the rule must be enabled in them)."""
    (rule,) = by_kind(render(values), "PrometheusRule").values()
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def dashboard(values: dict[str, Any]) -> dict[str, Any]:
    """The Grafana dashboard rendered with ``values`` (the dashboard must be enabled in them)."""
    (config_map,) = (
        m for m in by_kind(render(values), "ConfigMap").values() if m["metadata"]["name"].endswith("-dashboard")
    )
    (text,) = config_map["data"].values()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def documented_metrics() -> set[str]:
    """The metric names the metrics page's Prometheus table lists (``docs/operations/metrics.md``;
    ``tests/test_api.py`` holds them to the processes), with the ``_bucket``/``_sum``/``_count`` series of its
    histograms."""
    page = (ROOT / "docs" / "operations" / "metrics.md").read_text()
    section = page.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`livelearn_"):
            continue
        row = set(re.findall(r"`(livelearn_[a-z_]+)", cells[0]))
        names |= row
        if "histogram" in cells[2]:
            names |= {f"{name}{suffix}" for name in row for suffix in ("_bucket", "_sum", "_count")}
    return names


def metric_names(expression: str) -> set[str]:
    """The livelearn metric names a PromQL expression reads."""
    return set(re.findall(r"\b(livelearn_[a-z_]+)\b", expression))


def values_schema_module() -> ModuleType:
    """``helm/values_schema.py`` (it writes values.schema.json from the Settings)."""
    return _helm_module("values_schema")


def values_doc_module() -> ModuleType:
    """``helm/values_doc.py`` (it writes the chart README's values table from values.yaml's comments)."""
    return _helm_module("values_doc")


def _helm_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "helm" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
