"""Names, labels and keys the chart renders are ones Kubernetes takes, whatever release and model names livelearn and
Helm take; values that cannot work are refused at render. Found by a review of the chart (each test failed before)."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest
import yaml
from helm_chart import CHART, NAMESPACE

from streaming.config import Settings

pytestmark = pytest.mark.first_lane

#: A label value: at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
#: A Service's name: a DNS-1035 label.
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class _UniqueKeys(yaml.SafeLoader):
    """Refuses a mapping with a key twice, as a strict Kubernetes decoder does."""


def _unique(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise yaml.constructor.ConstructorError(None, None, f"keys twice: {twice}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique)


def _texts(values: dict[str, Any], release: str = "shop") -> dict[str, str]:
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values, name=release, namespace=NAMESPACE, is_install=True, is_upgrade=False)


def _manifests(values: dict[str, Any], release: str = "shop") -> list[dict[str, Any]]:
    return [
        doc
        for path, text in _texts(values, release).items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.load_all(text, Loader=_UniqueKeys)  # (a SafeLoader)
        if doc
    ]


EVERYTHING = {
    "metrics": {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}},
    "backup": {"enabled": True, "url": "s3://b/p"},
}


@pytest.mark.parametrize("release", ["recommendations-checkout-production", "a" * 53, "shop.v2", "a" * 42 + "--b"])
def test_every_release_name_helm_takes_renders_names_kubernetes_takes(release):
    problems = []
    for manifest in _manifests(EVERYTHING, release):
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if kind == "Service" and not (len(name) <= 63 and DNS_1035.fullmatch(name)):
            problems.append(f"Service {name!r} ({len(name)} characters) is no DNS-1035 label")
        if kind == "StatefulSet" and len(name) > 52:  # its pods' controller-revision-hash label: name-<10 chars>
            problems.append(f"StatefulSet {name!r} ({len(name)} > 52): its pods cannot be created")
    assert problems == []


@pytest.mark.parametrize("model_name", ["m" * 64, "shop-", "_shop", "shop."])
def test_every_model_name_livelearn_takes_renders_valid_label_values(model_name):
    Settings(model_name=model_name)
    manifests = _manifests({**EVERYTHING, "config": {"model_name": model_name}})
    label = {m["metadata"]["labels"]["livelearn.io/model"] for m in manifests}
    assert label == {model_name[:63].strip("_.-")}  # the name itself, trimmed to a label value
    bad = {
        (m["kind"], value)
        for m in _manifests({**EVERYTHING, "config": {"model_name": model_name}})
        for value in (m["metadata"].get("labels") or {}).values()
        if not (len(str(value)) <= 63 and LABEL_VALUE.fullmatch(str(value)))
    }
    assert bad == set()


@pytest.mark.parametrize("model_name", ["my shop", "shop/eu", "shop:v2", ""])
def test_the_values_schema_refuses_a_model_name_livelearn_refuses(model_name):
    with pytest.raises(ValueError):
        Settings(model_name=model_name)
    with pytest.raises(helm_python.HelmValuesError, match="model_name"):
        _manifests({"config": {"model_name": model_name}})


@pytest.mark.parametrize(
    "rule", [{"alertLabels": {"severity": "page", "team": "ml"}}, {"labels": {"app.kubernetes.io/name": "x", "t": "y"}}]
)
def test_alert_and_rule_labels_never_render_a_key_twice(rule):
    values = {"commonLabels": {"team": "ml", "t": "y"}, "metrics": {"prometheusRule": {"enabled": True, **rule}}}
    manifests = _manifests(values)
    (rules,) = [m for m in manifests if m["kind"] == "PrometheusRule"]
    if "alertLabels" in rule:
        alert = rules["spec"]["groups"][0]["rules"][0]
        assert alert["labels"]["team"] == "ml" and alert["labels"]["severity"] in ("warning", "critical", "info")
    else:
        assert rules["metadata"]["labels"]["t"] == "y"


def test_autoscaling_on_cpu_needs_cpu_requests():
    with pytest.raises((helm_python.HelmValuesError, helm_python.HelmRenderError), match=r"requests\.cpu"):
        _manifests({"serve": {"autoscaling": {"enabled": True}, "resources": None}})
    limits = {"serve": {"autoscaling": {"enabled": True}, "resources": {"limits": {"cpu": "1"}}}}
    assert _manifests(limits)  # requests default to the limits


def test_a_release_name_that_cannot_name_a_service_is_refused_at_render():
    with pytest.raises((helm_python.HelmValuesError, helm_python.HelmRenderError), match="fullnameOverride"):
        _manifests({}, "1shop")
    assert _manifests({"fullnameOverride": "shop-one"}, "1shop")
