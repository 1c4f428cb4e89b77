"""The Helm chart (``helm/livelearn``), rendered offline with the Helm library (helm-python-sdk) for the default,
production-example and minimal values: lint, the values schema, every manifest against the Kubernetes schemas
(kubernetes-validate, strict), pod security, probes, resources, replicas, settings, secrets and RBAC.
"""

from __future__ import annotations

import doctest
import re
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import typer.main
from helm_chart import (
    CHART,
    NAMESPACE,
    VALUE_SETS,
    by_kind,
    example_values,
    render,
    values_schema_module,
)
from pydantic import SecretStr
from settings_cases import ACCEPTED_REDIS_URLS, ACCEPTED_THRESHOLDS, REFUSED_REDIS_URLS

from streaming.cli import app
from streaming.config import Settings, load_settings

#: Kubernetes versions every manifest is validated against: the oldest the chart supports and the newest bundled.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
#: Custom resources (Prometheus Operator) no bundled schema covers; tests/test_alerts.py checks the rules.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def pod_specs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec (Deployments, the hook Job, the test Pod) by the name of its owner."""
    specs = {}
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "Job"}:
            specs[manifest["metadata"]["name"]] = manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "Pod":
            specs[manifest["metadata"]["name"]] = manifest["spec"]
    return specs


def container(manifests: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (deployment,) = (m for m in by_kind(manifests, "Deployment").values() if m["metadata"]["name"].endswith(component))
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def literal_env(spec: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in spec.get("env", []) if "value" in e}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_is_clean_in_strict_mode(value_set):
    report = helm_python.lint(
        CHART, example_values(value_set), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}"
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_values_schema_is_generated_from_the_settings():
    module = values_schema_module()
    assert doctest.testmod(module).failed == 0
    assert (CHART / "values.schema.json").read_text() == module.render(), (
        "values.schema.json is stale: run .venv/bin/python helm/values_schema.py"
    )
    config = module.config_schema()["properties"]
    assert set(config) | set(module.CHART_MANAGED) == set(Settings.model_fields)


def test_secret_settings_are_exactly_the_secret_references():
    secret_fields = {name for name, field in Settings.model_fields.items() if SecretStr in _types(field.annotation)}
    assert secret_fields == {"kafka_sasl_password", "kafka_ssl_key_password", "redis_password", "api_token"}
    module = values_schema_module()
    assert secret_fields <= set(module.CHART_MANAGED)
    assert set(example_values("production")["secrets"]) == {"kafkaSaslPassword", "redisPassword", "apiToken"}


def _types(annotation: Any) -> set[Any]:
    return {annotation, *getattr(annotation, "__args__", ())}


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_is_valid_kubernetes(value_set, kube_version):
    manifests = render(example_values(value_set))
    checked = 0
    for manifest in manifests:
        if manifest["kind"] in CUSTOM_KINDS:
            assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(manifest, kube_version, strict=True)
        checked += 1
    assert checked >= 7


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"snapshot_every_event": 10}}, "snapshot_every_event"),  # a misspelt setting
        ({"config": {"snapshot_every_events": 0}}, "/config/snapshot_every_events"),
        ({"config": {"kafka_security_protocol": "TLS"}}, "/config/kafka_security_protocol"),
        ({"config": {"redis_password": "hunter2"}}, "redis_password"),  # secrets only by reference
        ({"secrets": {"apiToken": {"existingSecret": "s", "key": "k", "value": "x"}}}, "value"),
        ({"learner": {"replicas": "two"}}, "/learner/replicas"),
        ({"metricsPort": 80}, "/metricsPort"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"metrics": {"prometheusRule": {"lagWindow": "15 minutes"}}}, "/metrics/prometheusRule/lagWindow"),
        ({"kubernetes": {"pinConfigMap": {"pinned": "v3"}}}, "/kubernetes/pinConfigMap/pinned"),
        ({"serve": {"autoscaling": {"enabled": "yes"}}}, "/serve/autoscaling/enabled"),
        ({"unknown": 1}, "unknown"),
        # what the settings refuse, the schema refuses (issue 16, item 6)
        ({"config": {"monitor_threshold": 1.5}}, "/config/monitor_threshold"),  # accuracy is in [0, 1]
        ({"config": {"monitor_metric": "roc_auc", "monitor_threshold": 1.01}}, "/config/monitor_threshold"),
        ({"config": {"monitor_threshold": -0.1}}, "/config/monitor_threshold"),
        ({"config": {"monitor_metric": "log_loss", "monitor_threshold": -1}}, "/config/monitor_threshold"),
        ({"config": {"monitor_threshold": "nan"}}, "/config/monitor_threshold"),
        ({"config": {"snapshot_every_seconds": 1e6}}, "/config/snapshot_every_seconds"),
        ({"config": {"health_stale_seconds": 0}}, "/config/health_stale_seconds"),
        ({"config": {"redis_url": "redis://redis:abc/0"}}, "/config/redis_url"),
        ({"config": {"redis_url": "redis://redis:99999/0"}}, "/config/redis_url"),
        ({"config": {"redis_url": "redis://redis:6379/0?socket_timeout=abc"}}, "/config/redis_url"),
    ],
)
def test_invalid_values_fail_the_schema(values, where):
    with pytest.raises(helm_python.HelmValuesError, match="schema") as failure:
        render(values)
    assert where in str(failure.value)


@pytest.mark.parametrize(("url", "why"), [case for case in REFUSED_REDIS_URLS if "given twice" not in case[1]])
def test_the_schema_refuses_every_redis_url_the_settings_refuse(url, why):
    """Helm's own check (Go's regular expressions) of the pattern the settings carry; an option given twice is
    the one mistake no regular expression can see: `livelearn` itself refuses it at start."""
    with pytest.raises(helm_python.HelmValuesError, match="/config/redis_url"):
        render({"config": {"redis_url": url}})


@pytest.mark.parametrize("url", ACCEPTED_REDIS_URLS)
def test_the_schema_takes_every_redis_url_the_settings_take(url):
    config_map = by_kind(render({"config": {"redis_url": url}}), "ConfigMap")["shop-livelearn-config"]["data"]
    assert config_map["LIVELEARN_REDIS_URL"] == url


@pytest.mark.parametrize(("metric", "threshold"), ACCEPTED_THRESHOLDS)
def test_the_schema_takes_every_threshold_within_its_metrics_range(metric, threshold):
    config = {"monitor_metric": metric, "monitor_threshold": float(threshold)}
    config_map = by_kind(render({"config": config}), "ConfigMap")["shop-livelearn-config"]["data"]
    assert float(config_map["LIVELEARN_MONITOR_THRESHOLD"]) == float(threshold)


@pytest.mark.parametrize("number", [".nan", ".inf", "-.inf"])
def test_a_values_file_with_nan_or_infinity_is_refused(number):
    """YAML can spell NaN and infinities; Helm refuses such a values file before any template or schema runs."""
    with pytest.raises(helm_python.HelmValuesError, match=r"NaN|Inf"):
        helm_python.values_from_yaml(f"config:\n  monitor_threshold: {number}\n")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_meet_the_restricted_pod_security_standard(value_set):
    specs = pod_specs(render(example_values(value_set)))
    assert len(specs) >= 3
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert "hostNetwork" not in spec and "hostPID" not in spec, name
        tmp = {v["name"]: v for v in spec["volumes"]}["tmp"]
        assert "emptyDir" in tmp, name
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["runAsNonRoot"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), name


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_workload_has_probes_on_its_health_endpoints(value_set):
    values = example_values(value_set)
    manifests = render(values)
    expected = {
        "learner": ("metrics", "/healthz", "/readyz"),
        "monitor": ("metrics", "/healthz", "/readyz"),
        "serve": ("http", "/v2/health/live", "/v2/health/ready"),
    }
    for component, (port, live, ready) in expected.items():
        c = container(manifests, component)
        assert c["livenessProbe"]["httpGet"] == {"path": live, "port": port}
        assert c["startupProbe"]["httpGet"] == {"path": live, "port": port}
        assert c["readinessProbe"]["httpGet"] == {"path": ready, "port": port}
        assert port in {p["name"] for p in c["ports"]}
    # the probed ports are the ones the processes bind (their settings, read from the same env)
    assert literal_env(container(manifests, "learner"))["LIVELEARN_METRICS_PORT"] == str(
        container(manifests, "learner")["ports"][0]["containerPort"]
    )
    assert literal_env(container(manifests, "serve"))["LIVELEARN_API_PORT"] == str(
        container(manifests, "serve")["ports"][0]["containerPort"]
    )


@pytest.mark.parametrize(
    ("value_set", "learners", "monitors", "serves"),
    [("default", 2, 2, 2), ("minimal", 1, 1, 1), ("production", 2, 2, None)],
)
def test_replica_counts(value_set, learners, monitors, serves):
    manifests = render(example_values(value_set))
    deployments = {name.rsplit("-", 1)[1]: d for name, d in by_kind(manifests, "Deployment").items()}
    assert deployments["learner"]["spec"]["replicas"] == learners
    assert deployments["monitor"]["spec"]["replicas"] == monitors
    if serves is None:  # the HPA decides
        assert "replicas" not in deployments["serve"]["spec"]
        (hpa,) = by_kind(manifests, "HorizontalPodAutoscaler").values()
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployments["serve"]["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] == 3
    else:
        assert deployments["serve"]["spec"]["replicas"] == serves
    for d in deployments.values():  # a new pod (a learner: a standby) starts before an old one stops
        assert d["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_learners_spread_across_nodes_and_keep_one_through_disruptions():
    manifests = render()
    learner = by_kind(manifests, "Deployment")["shop-livelearn-learner"]
    pod_labels = learner["spec"]["template"]["metadata"]["labels"]
    (spread,) = learner["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/component"] == "learner"
    pdbs = by_kind(manifests, "PodDisruptionBudget")
    assert pdbs["shop-livelearn-learner"]["spec"]["maxUnavailable"] == 1
    assert pdbs["shop-livelearn-learner"]["spec"]["selector"] == learner["spec"]["selector"]
    assert set(pdbs) == {f"shop-livelearn-{c}" for c in ("learner", "monitor", "serve")}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_rendered_settings_load(value_set, monkeypatch):
    """What the ConfigMap and each container's env give a process is a valid Settings (as in the pod)."""
    manifests = render(example_values(value_set))
    config_map = by_kind(manifests, "ConfigMap")["shop-livelearn-config"]["data"]
    for component in ("learner", "monitor", "serve"):
        with monkeypatch.context() as env:
            for name in Settings.model_fields:
                env.delenv(f"LIVELEARN_{name.upper()}", raising=False)
            for name, value in {**config_map, **literal_env(container(manifests, component))}.items():
                env.setenv(name, value)
            env.setenv("LIVELEARN_REDIS_PASSWORD", "from-the-secret")
            settings = load_settings()
        if component == "serve":
            assert (settings.api_host, settings.api_port) == ("0.0.0.0", 8000)
        else:
            assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9100)
        assert settings.model_name == example_values(value_set).get("config", {}).get("model_name", "default")
    if value_set == "production":
        assert settings.kafka_security_protocol == "SASL_SSL"
        assert settings.redis_url.startswith("rediss://livelearn@")
        assert settings.snapshot_every_events == 5000


def test_the_topics_hook_has_the_settings_of_the_config_map():
    manifests = render(example_values("production"))
    (job,) = by_kind(manifests, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["topics", "--partitions", "6"]
    config_map = by_kind(manifests, "ConfigMap")["shop-livelearn-config"]["data"]
    assert config_map.items() <= literal_env(c).items()
    assert "LIVELEARN_KAFKA_SASL_PASSWORD" in {e["name"] for e in c["env"]}


def test_the_workloads_run_real_commands():
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    manifests = render(example_values("production"))
    for component, command in (("learner", "learn"), ("monitor", "monitor"), ("serve", "serve")):
        assert container(manifests, component)["args"] == [command]
        assert command in commands
    assert "topics" in commands


def test_secrets_come_only_from_existing_secrets():
    manifests = render(example_values("production"))
    assert by_kind(manifests, "Secret") == {}
    expected = {
        "learner": {"LIVELEARN_KAFKA_SASL_PASSWORD", "LIVELEARN_REDIS_PASSWORD"},
        "monitor": {"LIVELEARN_KAFKA_SASL_PASSWORD", "LIVELEARN_REDIS_PASSWORD"},
        "serve": {"LIVELEARN_KAFKA_SASL_PASSWORD", "LIVELEARN_REDIS_PASSWORD", "LIVELEARN_API_TOKEN"},
    }
    for component, names in expected.items():
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container(manifests, component)["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert set(refs) == names
        assert {r["name"] for r in refs.values()} == {"livelearn-secrets"}
    for manifest in by_kind(manifests, "ConfigMap").values():
        text = str(manifest.get("data"))
        assert "PASSWORD" not in text and "TOKEN" not in text
    # nothing secret by default: no secret env at all
    assert all("valueFrom" not in e or "fieldRef" in e["valueFrom"] for e in container(render(), "serve")["env"])


def test_tls_material_is_mounted_where_the_settings_name_it():
    manifests = render(example_values("production"))
    for component in ("learner", "monitor", "serve"):
        mounts = {m["mountPath"]: m for m in container(manifests, component)["volumeMounts"]}
        assert mounts["/etc/livelearn/tls/redis"]["readOnly"] is True
    config_map = by_kind(manifests, "ConfigMap")["shop-livelearn-config"]["data"]
    assert "ssl_ca_certs=/etc/livelearn/tls/redis/ca.crt" in config_map["LIVELEARN_REDIS_URL"]


def test_rbac_is_least_privilege():
    manifests = render(example_values("production"))
    assert by_kind(manifests, "ClusterRole") == {} and by_kind(manifests, "ClusterRoleBinding") == {}
    roles = {name.rsplit("-", 1)[1]: role["rules"] for name, role in by_kind(manifests, "Role").items()}
    events = {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}
    for component, rules in roles.items():
        assert rules[0] == events
        assert rules[1] == {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": [f"shop-livelearn-{component}"],
            "verbs": ["get"],
        }
    assert roles["learner"][2:] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    assert roles["monitor"][2:] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["shop-livelearn-pin"],
            "verbs": ["get"],
        }
    ]
    assert len(roles["serve"]) == 2
    bindings = by_kind(manifests, "RoleBinding")
    for name, binding in bindings.items():
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    monitor_env = {e["name"]: e for e in container(manifests, "monitor")["env"]}
    assert monitor_env["LIVELEARN_KUBERNETES_PIN_CONFIGMAP"]["value"] == "shop-livelearn-pin"
    assert by_kind(manifests, "ConfigMap")["shop-livelearn-pin"]["data"] == {"pinned": ""}
    for component in ("learner", "monitor", "serve"):
        assert {"POD_NAME", "POD_NAMESPACE", "POD_UID"} <= {e["name"] for e in container(manifests, component)["env"]}


def test_without_the_kubernetes_integration_no_token_is_mounted():
    manifests = render(example_values("minimal"))
    assert by_kind(manifests, "Role") == {} and by_kind(manifests, "ServiceAccount") == {}
    for spec in pod_specs(manifests).values():
        assert spec["automountServiceAccountToken"] is False


def test_a_pin_in_values_reaches_the_pin_config_map():
    manifests = render({"kubernetes": {"pinConfigMap": {"pinned": 42}}})
    assert by_kind(manifests, "ConfigMap")["shop-livelearn-pin"]["data"] == {"pinned": "42"}


def test_a_new_pin_does_not_restart_the_pods_but_a_new_setting_does():
    def checksums(values):
        deployments = by_kind(render(values), "Deployment").values()
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in deployments}

    (before,) = checksums({})
    assert checksums({"kubernetes": {"pinConfigMap": {"pinned": "7"}}}) == {before}
    assert checksums({"config": {"snapshot_every_events": 500}}) != {before}


def test_the_readme_names_what_the_chart_renders():
    from helm_chart import ROOT

    section = (ROOT / "README.md").read_text().split("## Deploy on Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "-f helm/examples/production.yaml" in section
    manifests = render(example_values("production"))
    names = {m["metadata"]["name"] for m in manifests}
    named = set(re.findall(r"\b(shop-livelearn-[a-z-]+)", section))
    assert len(named) >= 3
    assert named <= names
    production = (ROOT / "helm" / "examples" / "production.yaml").read_text()
    secrets = re.findall(r"secret generic ([a-z-]+)", section)
    assert len(secrets) == 2
    for secret in secrets:
        assert f"existingSecret: {secret}" in production


def test_helm_test_asks_serve_whether_it_is_ready():
    manifests = render()
    (pod,) = by_kind(manifests, "Pod").values()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = by_kind(manifests, "Service")["shop-livelearn-serve"]
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/v2/health/ready"
    assert url in pod["spec"]["containers"][0]["command"][-1]


def test_network_policy_opens_only_the_serving_and_metrics_ports():
    manifests = render(example_values("production"))
    policies = {name.rsplit("-", 1)[1]: p["spec"] for name, p in by_kind(manifests, "NetworkPolicy").items()}
    assert set(policies) == {"learner", "monitor", "serve"}
    assert policies["serve"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert policies["learner"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert policies["serve"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "shop-frontend"
    }


def test_scraping_covers_every_process():
    values = example_values("production")
    values["metrics"]["podMonitor"] = {"enabled": True}
    manifests = render(values)
    (service_monitor,) = by_kind(manifests, "ServiceMonitor").values()
    (pod_monitor,) = by_kind(manifests, "PodMonitor").values()
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} == {"metrics", "http"}
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} == {"metrics", "http"}
    selected = service_monitor["spec"]["selector"]["matchLabels"]
    services = [
        s for s in by_kind(manifests, "Service").values() if selected.items() <= s["metadata"]["labels"].items()
    ]
    assert {p["name"] for s in services for p in s["spec"]["ports"]} == {"metrics", "http"}
    assert len(services) == 3


def test_dashboard_config_map_carries_the_sidecar_label():
    manifests = render(example_values("production"))
    config_map = by_kind(manifests, "ConfigMap")["shop-livelearn-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "livelearn"}
