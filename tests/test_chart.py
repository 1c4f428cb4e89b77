"""The Helm chart (``helm/livelearn``), rendered offline with the Helm library (helm-python-sdk) for the default,
production-example and minimal values: lint, the values schema, every manifest against the Kubernetes schemas
(kubernetes-validate, strict), pod security, probes, resources, replicas, settings, secrets and RBAC.
"""

from __future__ import annotations

import doctest
import re
import socket
import subprocess
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import typer.main
from helm_chart import (
    CHART,
    NAMESPACE,
    ROOT,
    VALUE_SETS,
    by_kind,
    example_values,
    notes,
    render,
    values_doc_module,
    values_schema_module,
)
from pydantic import SecretStr
from settings_cases import ACCEPTED_REDIS_URLS, ACCEPTED_THRESHOLDS, REFUSED_REDIS_URLS

from streaming.cli import app
from streaming.config import Settings, load_settings

#: Kubernetes versions every manifest is validated against: the oldest the chart supports and the newest bundled.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
#: Custom resources no bundled schema covers: Prometheus Operator's (tests/test_alerts.py checks the rules) and
#: the Gateway API's HTTPRoute.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "HTTPRoute"}
CUSTOM_API_VERSIONS = {"HTTPRoute": "gateway.networking.k8s.io/v1"}
#: The kinds of the workloads: the learners are a StatefulSet (their Role names their pods), the others Deployments.
WORKLOAD_KINDS = {"StatefulSet", "Deployment"}


def workloads(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The workloads (learner, monitor, serve) by component."""
    return {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in manifests if m["kind"] in WORKLOAD_KINDS}


def pod_specs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec (the workloads, the hook Job, the test Pod) by the name of its owner."""
    specs = {}
    for manifest in manifests:
        if manifest["kind"] in {*WORKLOAD_KINDS, "Job"}:
            specs[manifest["metadata"]["name"]] = manifest["spec"]["template"]["spec"]
        elif manifest["kind"] == "CronJob":
            specs[manifest["metadata"]["name"]] = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif manifest["kind"] == "Pod":
            specs[manifest["metadata"]["name"]] = manifest["spec"]
    return specs


def container(manifests: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (only,) = workloads(manifests)[component]["spec"]["template"]["spec"]["containers"]
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
            assert manifest["apiVersion"] == CUSTOM_API_VERSIONS.get(manifest["kind"], "monitoring.coreos.com/v1")
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
    assert literal_env(container(manifests, "serve"))["LIVELEARN_API_METRICS_PORT"] == str(
        container(manifests, "serve")["ports"][1]["containerPort"]
    )


@pytest.mark.parametrize(
    ("value_set", "learners", "monitors", "serves"),
    [("default", 2, 2, 2), ("minimal", 1, 1, 1), ("production", 2, 2, None)],
)
def test_replica_counts(value_set, learners, monitors, serves):
    manifests = render(example_values(value_set))
    deployments = workloads(manifests)
    assert deployments["learner"]["spec"]["replicas"] == learners
    assert deployments["monitor"]["spec"]["replicas"] == monitors
    if serves is None:  # the HPA decides
        assert "replicas" not in deployments["serve"]["spec"]
        (hpa,) = by_kind(manifests, "HorizontalPodAutoscaler").values()
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployments["serve"]["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] == 3
    else:
        assert deployments["serve"]["spec"]["replicas"] == serves
    for component in ("monitor", "serve"):  # a new pod starts before an old one stops
        assert deployments[component]["kind"] == "Deployment"
        assert deployments[component]["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    # the learners: a StatefulSet started all at once, rolled one pod at a time (the standby takes over meanwhile)
    learner = deployments["learner"]
    assert learner["kind"] == "StatefulSet"
    assert learner["spec"]["podManagementPolicy"] == "Parallel"
    assert learner["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert learner["spec"]["serviceName"] in by_kind(manifests, "Service")


def test_learners_spread_across_nodes_and_keep_one_through_disruptions():
    manifests = render()
    learner = by_kind(manifests, "StatefulSet")["shop-livelearn-learner"]
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


def test_the_backup_cron_job_runs_livelearn_backup_with_the_settings_and_the_credentials_secret():
    manifests = render(example_values("production"))
    (job,) = by_kind(manifests, "CronJob").values()
    assert job["spec"]["schedule"] == "*/15 * * * *" and job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][0] == "backup" and "backup" in typer.main.get_command(app).commands
    sources = [next(iter(s.values()))["name"] for s in c["envFrom"]]
    assert sources[0].endswith("-config") and sources[1] == "livelearn-backup-s3"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["LIVELEARN_BACKUP_URL"] == "s3://shop-ml-backups/livelearn" and env["AWS_REGION"] == "eu-west-1"
    assert pod["automountServiceAccountToken"] is False
    assert not by_kind(render(), "CronJob")  # off by default
    with pytest.raises(Exception, match=r"backup.enabled needs backup.url"):
        render({"backup": {"enabled": True}})


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
    """Issue 18, item 7: serve gets no Role and no token; the learner may patch only its StatefulSet's pods."""
    manifests = render(example_values("production"))
    assert by_kind(manifests, "ClusterRole") == {} and by_kind(manifests, "ClusterRoleBinding") == {}
    roles = {name.rsplit("-", 1)[1]: role["rules"] for name, role in by_kind(manifests, "Role").items()}
    assert set(roles) == {"learner", "monitor"}  # serve never talks to the API
    events = {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}
    learners = workloads(manifests)["learner"]
    assert roles["learner"] == [
        events,
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": [f"{learners['metadata']['name']}-{i}" for i in range(learners["spec"]["replicas"])],
            "verbs": ["patch"],
        },
    ]
    assert roles["monitor"] == [
        events,
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["shop-livelearn-monitor"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["shop-livelearn-pin"], "verbs": ["get"]},
    ]
    bindings = by_kind(manifests, "RoleBinding")
    assert set(bindings) == set(by_kind(manifests, "Role"))
    for name, binding in bindings.items():
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    pods = {component: w["spec"]["template"]["spec"] for component, w in workloads(manifests).items()}
    assert {c: p["automountServiceAccountToken"] for c, p in pods.items()} == {
        "learner": True,
        "monitor": True,
        "serve": False,
    }
    assert {c: p["serviceAccountName"] for c, p in pods.items()} == {c: f"shop-livelearn-{c}" for c in pods}
    # the Events' regarding object: the monitor's Deployment (its Role may read it), the learner's own pod
    assert literal_env(container(manifests, "monitor"))["LIVELEARN_KUBERNETES_DEPLOYMENT"] == "shop-livelearn-monitor"
    for component in ("learner", "serve"):
        assert "LIVELEARN_KUBERNETES_DEPLOYMENT" not in literal_env(container(manifests, component))
    monitor_env = {e["name"]: e for e in container(manifests, "monitor")["env"]}
    assert monitor_env["LIVELEARN_KUBERNETES_PIN_CONFIGMAP"]["value"] == "shop-livelearn-pin"
    assert by_kind(manifests, "ConfigMap")["shop-livelearn-pin"]["data"] == {"pinned": ""}
    for component in ("learner", "monitor", "serve"):
        assert {"POD_NAME", "POD_NAMESPACE", "POD_UID"} <= {e["name"] for e in container(manifests, component)["env"]}


@pytest.mark.parametrize("replicas", [0, 1, 3])
def test_the_learner_role_names_exactly_the_statefulsets_pods(replicas):
    manifests = render({"learner": {"replicas": replicas}})
    learners = workloads(manifests)["learner"]
    rules = [r for r in by_kind(manifests, "Role")["shop-livelearn-learner"]["rules"] if "pods" in r["resources"]]
    if replicas == 0:  # an empty resourceNames would grant every pod of the namespace: no rule at all
        assert rules == []
        return
    (rule,) = rules  # a StatefulSet's pods are <name>-0 .. <name>-(replicas-1)
    assert rule["resourceNames"] == [f"{learners['metadata']['name']}-{i}" for i in range(replicas)]
    assert rule["verbs"] == ["patch"]


def test_an_existing_service_account_is_used_and_bound():
    manifests = render({"serviceAccount": {"create": False, "name": "livelearn-runner"}})
    assert by_kind(manifests, "ServiceAccount") == {}
    for spec in pod_specs(manifests).values():
        if "serviceAccountName" in spec:  # the workloads; the hook Job and the test Pod use none
            assert spec["serviceAccountName"] == "livelearn-runner"
    bindings = by_kind(manifests, "RoleBinding")
    assert set(bindings) == {"shop-livelearn-learner", "shop-livelearn-monitor"}
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "livelearn-runner", "namespace": NAMESPACE}]
    # no account named: the namespace's default account, which gets no Role (every pod of the namespace runs as it)
    manifests = render({"serviceAccount": {"create": False}})
    assert by_kind(manifests, "Role") == {} and by_kind(manifests, "RoleBinding") == {}
    assert {w["spec"]["template"]["spec"]["serviceAccountName"] for w in workloads(manifests).values()} == {"default"}


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
        deployments = workloads(render(values)).values()
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in deployments}

    (before,) = checksums({})
    assert checksums({"kubernetes": {"pinConfigMap": {"pinned": "7"}}}) == {before}
    assert checksums({"config": {"snapshot_every_events": 500}}) != {before}


def test_the_kubernetes_page_names_what_the_chart_renders():
    page = (ROOT / "docs" / "operations" / "kubernetes.md").read_text()
    assert "-f helm/examples/production.yaml" in page
    manifests = render(example_values("production"))
    names = {m["metadata"]["name"] for m in manifests}
    named = set(re.findall(r"\b(shop-livelearn-[a-z0-9-]+)", page))
    assert len(named) >= 3
    assert named <= names | {"shop-livelearn-learner-0", "shop-livelearn-learner-1"}  # the learner pods
    production = (ROOT / "helm" / "examples" / "production.yaml").read_text()
    secrets = re.findall(r"secret generic ([a-z-]+)", page)
    assert len(secrets) == 2
    for secret in secrets:
        assert f"existingSecret: {secret}" in production
    # the values table the page includes is the chart README's generated section
    assert '--8<-- "helm/livelearn/README.md:values"' in page


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


@pytest.mark.parametrize("monitor", ["serviceMonitor", "podMonitor"])
def test_scraping_covers_every_process_on_its_metrics_port(monitor):
    values = example_values("production")
    values["metrics"]["serviceMonitor"]["enabled"] = monitor == "serviceMonitor"
    values["metrics"][monitor] = {**values["metrics"].get(monitor, {}), "enabled": True}
    manifests = render(values)
    (scrape,) = by_kind(manifests, monitor[0].upper() + monitor[1:]).values()
    endpoints = scrape["spec"]["endpoints" if monitor == "serviceMonitor" else "podMetricsEndpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("metrics", "/metrics")]
    for component in ("learner", "monitor", "serve"):
        assert "metrics" in {p["name"] for p in container(manifests, component)["ports"]}
    if monitor == "podMonitor":
        assert scrape["spec"]["selector"]["matchLabels"].items() <= container_labels(manifests, "serve").items()
        return
    selected = scrape["spec"]["selector"]["matchLabels"]
    services = [
        s for s in by_kind(manifests, "Service").values() if selected.items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(s["metadata"]["name"] for s in services) == [
        f"shop-livelearn-{c}-metrics" for c in ("learner", "monitor", "serve")
    ]
    assert {p["name"] for s in services for p in s["spec"]["ports"]} == {"metrics"}


def container_labels(manifests: list[dict[str, Any]], component: str) -> dict[str, str]:
    labels: dict[str, str] = workloads(manifests)[component]["spec"]["template"]["metadata"]["labels"]
    return labels


def test_dashboard_config_map_carries_the_sidecar_label():
    manifests = render(example_values("production"))
    config_map = by_kind(manifests, "ConfigMap")["shop-livelearn-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "livelearn"}


# --- issue 18, item 5: serve's metrics on a port of their own ------------------------------------------------------


def test_serve_answers_metrics_on_a_port_and_service_apart_from_the_predictions():
    manifests = render(example_values("production"))
    serve = container(manifests, "serve")
    ports = {p["name"]: p["containerPort"] for p in serve["ports"]}
    assert set(ports) == {"http", "metrics"} and ports["http"] != ports["metrics"]
    assert literal_env(serve)["LIVELEARN_API_METRICS_PORT"] == str(ports["metrics"])
    services = by_kind(manifests, "Service")
    assert [p["targetPort"] for p in services["shop-livelearn-serve"]["spec"]["ports"]] == ["http"]
    metrics = services["shop-livelearn-serve-metrics"]["spec"]
    assert [p["targetPort"] for p in metrics["ports"]] == ["metrics"]
    assert metrics["selector"].items() <= container_labels(manifests, "serve").items()
    assert metrics["type"] == "ClusterIP"  # whatever type the prediction Service has
    # the metrics Service stays ClusterIP when the predictions go out through a LoadBalancer
    balanced = by_kind(render({"serve": {"service": {"type": "LoadBalancer"}}}), "Service")
    assert balanced["shop-livelearn-serve-metrics"]["spec"]["type"] == "ClusterIP"


def test_network_policy_admits_the_scraper_and_helm_test_apart_from_the_predictions():
    manifests = render(example_values("production"))
    policies = {name.rsplit("-", 1)[1]: p["spec"] for name, p in by_kind(manifests, "NetworkPolicy").items()}
    frontend = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop-frontend"}}}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    (test_pod,) = by_kind(manifests, "Pod").values()
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policies["serve"]["ingress"]}
    assert set(rules) == {"http", "metrics"}
    assert rules["http"][0] == frontend and monitoring not in rules["http"]
    assert rules["metrics"][0] == monitoring and frontend not in rules["metrics"]
    for peers in rules.values():  # the test pod reaches both ports (same namespace: a bare podSelector)
        (test_peer,) = [p for p in peers if "podSelector" in p]
        assert "namespaceSelector" not in test_peer
        assert test_peer["podSelector"]["matchLabels"].items() <= test_pod["metadata"]["labels"].items()
        assert not test_peer["podSelector"]["matchLabels"].items() <= container_labels(manifests, "serve").items()
    for component in ("learner", "monitor"):
        assert policies[component]["ingress"] == [
            {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [monitoring]}
        ]


def test_network_policy_with_open_ports_stays_open():
    """An empty peer list admits everyone: adding the test pod to it would shut everyone else out."""
    values = {"networkPolicy": {"enabled": True, "serveFrom": [], "metricsFrom": []}}
    for policy in by_kind(render(values), "NetworkPolicy").values():
        assert all("from" not in rule for rule in policy["spec"]["ingress"])
    # without `helm test`, no peer for its pod
    values = {**example_values("production"), "helmTest": {"enabled": False}}
    serve = by_kind(render(values), "NetworkPolicy")["shop-livelearn-serve"]["spec"]
    assert all("podSelector" not in peer for rule in serve["ingress"] for peer in rule["from"])


def test_helm_test_reads_serves_metrics_through_its_metrics_service():
    manifests = render(example_values("production"))
    (pod,) = by_kind(manifests, "Pod").values()
    service = by_kind(manifests, "Service")["shop-livelearn-serve-metrics"]
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/metrics"
    assert url in pod["spec"]["containers"][0]["command"][-1]


def test_serve_answers_metrics_on_its_metrics_port_only():
    """The port the chart scrapes, as `livelearn serve --workers 2` binds it (no Redis: serve starts unready)."""
    from conftest import LearnerProcess, wait_for

    from streaming.local.embedded import free_port

    api, metrics, nothing = free_port(), free_port(), free_port()
    settings = Settings(redis_url=f"redis://127.0.0.1:{nothing}/0", api_port=api, api_workers=2)
    server = LearnerProcess(settings, command="serve", LIVELEARN_API_METRICS_PORT=str(metrics))
    series = 'livelearn_serving_loaded_version{model="default"'

    def started() -> object:  # both workers: their series merged on the metrics port, the API answering
        page, live = _get(metrics, "/metrics"), _get(api, "/v2/health/live")
        up = page is not None and page.text.count(series) == 2 and live is not None and live.status_code == 200
        return server.proc.poll() is not None or up

    try:
        wait_for(started, 60, "both workers' series on the metrics port and the API")
        assert server.proc.poll() is None, server.proc.communicate()[0].decode()
        assert _get(api, "/metrics").status_code == 404  # not on the prediction port any more
    finally:
        server.proc.terminate()  # SIGTERM: uvicorn stops its workers (a SIGKILL would orphan them)
        try:
            server.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.communicate()


def test_serve_names_the_metrics_port_setting_when_it_cannot_bind_it():
    from typer.testing import CliRunner

    from streaming.errors import ConfigError
    from streaming.local.embedded import free_port

    api = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for metrics, why in ((api, "is the API port"), (taken.getsockname()[1], "cannot serve metrics on")):
            result = CliRunner().invoke(app, ["serve", "--port", str(api), "--metrics-port", str(metrics)])
            assert isinstance(result.exception, ConfigError), result.output
            assert why in str(result.exception) and "LIVELEARN_API_METRICS_PORT" in str(result.exception)


def _get(port: int, path: str) -> Any:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    except httpx.HTTPError:
        return None


# --- issue 18, item 6: Ingress and Gateway API HTTPRoute ------------------------------------------------------------


def test_an_ingress_routes_hosts_with_tls_to_the_prediction_service():
    ingress_values = {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "hosts": [{"host": "predict.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "predict-tls", "hosts": ["predict.example.com"]}],
    }
    manifests = render({"ingress": ingress_values})
    (ingress,) = by_kind(manifests, "Ingress").values()
    kubernetes_validate.validate(ingress, KUBE_VERSIONS[0], strict=True)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert spec["tls"] == ingress_values["tls"]
    (rule,) = spec["rules"]
    assert rule["host"] == "predict.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = by_kind(manifests, "Service")[backend["name"]]
    assert backend["name"] == "shop-livelearn-serve"  # the predictions, never the metrics Service
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert "Ingress" not in {m["kind"] for m in render()}  # off by default


def test_an_http_route_attaches_serve_to_a_gateway():
    route_values = {
        "enabled": True,
        "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["predict.example.com"],
    }
    manifests = render({"httpRoute": route_values})
    (route,) = by_kind(manifests, "HTTPRoute").values()
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == route_values["parentRefs"]
    assert route["spec"]["hostnames"] == ["predict.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend,) = rule["backendRefs"]
    service = by_kind(manifests, "Service")[backend["name"]]
    assert backend["name"] == "shop-livelearn-serve"
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert "HTTPRoute" not in {m["kind"] for m in render()}


# --- issue 18, item 8: what the schema (or, comparing two values, the render) refuses -------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"monitor_threshold": -0.5}}, "/config/monitor_threshold"),
        ({"config": {"redis_url": "http://redis:6379/0"}}, "/config/redis_url"),
        ({"config": {"redis_url": "memcached://redis:11211"}}, "/config/redis_url"),
        ({"config": {"redis_url": "redis-sentinel://redis:26379/0"}}, "/config/redis_url"),
        ({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}, "/metrics/podMonitor"),
        ({"metrics": {"serviceMonitor": {"scheme": "ftp"}}}, "/metrics/serviceMonitor/scheme"),
        ({"metrics": {"podMonitor": {"scrapeTimeout": "10 seconds"}}}, "/metrics/podMonitor/scrapeTimeout"),
        ({"ingress": {"enabled": True, "hosts": []}}, "/ingress/hosts"),
        ({"ingress": {"hosts": [{"host": "a", "paths": [{"path": "x", "pathType": "Prefix"}]}]}}, "/ingress/hosts"),
        ({"httpRoute": {"enabled": True}}, "/httpRoute/parentRefs"),
        ({"serve": {"service": {"nodePort": 70000}}}, "/serve/service/nodePort"),
        ({"serviceAccount": {"create": False, "name": "Not A Name"}}, "/serviceAccount/name"),
        ({"learner": {"topologySpreadConstraints": [{"maxSkew": 1}]}}, "/learner/topologySpreadConstraints"),
        ({"serve": {"extraVolumeMounts": [{"name": "x"}]}}, "/serve/extraVolumeMounts"),
        ({"commonLabels": {"team": 7}}, "/commonLabels/team"),
    ],
)
def test_the_schema_refuses_what_issue_18_found_accepted(values, where):
    with pytest.raises(helm_python.HelmValuesError, match="schema") as failure:
        render(values)
    assert where in str(failure.value)


def test_a_nan_threshold_never_reaches_a_template():
    """JSON has no NaN: a values file's `.nan` is refused by Helm's YAML reader (see above), `--set` makes it a
    string (refused by the schema's number type) and `--set-json` refuses it as JSON."""
    with pytest.raises(helm_python.HelmValuesError, match="/config/monitor_threshold"):
        render(helm_python.parse_set_string("config.monitor_threshold=NaN"))
    with pytest.raises(helm_python.HelmValuesError):
        helm_python.parse_set_json("config.monitor_threshold=NaN")
    config_map = by_kind(render(helm_python.parse_set_json("config.monitor_threshold=0.5")), "ConfigMap")
    assert config_map["shop-livelearn-config"]["data"]["LIVELEARN_MONITOR_THRESHOLD"] == "0.5"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"serve": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}},
            r"minReplicas \(5\) is above maxReplicas \(3\)",
        ),
        ({"metricsPort": 8000}, "serve.port and metricsPort are both 8000"),
    ],
)
def test_what_no_schema_can_compare_fails_the_render(values, message):
    with pytest.raises(helm_python.HelmRenderError, match=message):  # helm install and helm template stop here
        render(values)
    # equal bounds are a fixed size, not a mistake
    render({"serve": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 3}}})


# --- issue 18, item 9: what operators expect of a well-kept chart ---------------------------------------------------


def test_notes_say_how_to_reach_and_check_the_release():
    text = notes(example_values("production"))
    assert "kubectl -n shop port-forward svc/shop-livelearn-serve 8000:8000" in text
    assert "helm test shop -n shop" in text
    assert "livelearn.io/role=active" in text
    assert "shop-livelearn-serve-metrics" in text and "ServiceMonitor shop-livelearn" in text
    ingress = {"enabled": True, "tls": [{"secretName": "t", "hosts": ["p.example.com"]}]}
    ingress["hosts"] = [{"host": "p.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]
    assert "https://p.example.com/" in notes({"ingress": ingress})
    assert "The admin routes are off" in notes() and "The admin routes are off" not in text
    assert "livelearn.io/role=active" not in notes(example_values("minimal"))  # no Kubernetes integration


def test_extra_volumes_init_containers_sidecars_and_env_from_reach_the_pod():
    extras = {
        "extraVolumes": [{"name": "models", "configMap": {"name": "shop-models"}}],
        "extraVolumeMounts": [{"name": "models", "mountPath": "/etc/models", "readOnly": True}],
        "extraEnvFrom": [{"secretRef": {"name": "shop-extra-env"}}],
        "initContainers": [{"name": "wait", "image": "busybox:1.36", "command": ["true"]}],
        "sidecars": [{"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"}],
    }
    manifests = render(dict.fromkeys(("learner", "monitor", "serve"), extras))
    for component, workload in workloads(manifests).items():
        kubernetes_validate.validate(workload, KUBE_VERSIONS[0], strict=True)
        spec = workload["spec"]["template"]["spec"]
        assert [c["name"] for c in spec["containers"]] == [component, "proxy"]  # livelearn's first
        assert spec["initContainers"] == extras["initContainers"]
        assert spec["volumes"][0]["name"] == "tmp" and extras["extraVolumes"][0] in spec["volumes"]
        livelearn = spec["containers"][0]
        assert extras["extraVolumeMounts"][0] in livelearn["volumeMounts"]
        assert livelearn["envFrom"][0] == {"configMapRef": {"name": "shop-livelearn-config"}}
        assert livelearn["envFrom"][1:] == extras["extraEnvFrom"]  # after the settings: an operator's source wins


@pytest.mark.parametrize("value_set", ["default", "production"])
def test_common_labels_and_annotations_are_on_every_object(value_set):
    values = example_values(value_set)
    values.update(commonLabels={"team": "ml", "app.kubernetes.io/name": "ignored"}, commonAnnotations={"owner": "ml"})
    values["ingress"] = {"enabled": True}
    manifests = render(values)
    assert len(manifests) >= 10
    for manifest in manifests:
        where = f"{manifest['kind']} {manifest['metadata']['name']}"
        assert manifest["metadata"]["labels"]["team"] == "ml", where
        assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == "livelearn", where  # the chart's wins
        assert manifest["metadata"]["annotations"]["owner"] == "ml", where
    (pod,) = by_kind(manifests, "Pod").values()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"  # merged with the hook's own
    assert container_labels(manifests, "serve")["team"] == "ml"


def test_reloader_rolls_the_pods_when_a_referenced_secret_changes():
    values = example_values("production")
    assert not any(
        "secret.reloader.stakater.com/reload" in w["metadata"].get("annotations", {})
        for w in workloads(render(values)).values()
    )
    values["reloader"] = {"enabled": True}
    for component, workload in workloads(render(values)).items():
        reload = workload["metadata"]["annotations"]["secret.reloader.stakater.com/reload"]
        # the Secrets the pod reads: env from secretKeyRef, volumes from secrets
        spec = workload["spec"]["template"]["spec"]
        referenced = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in spec["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        } | {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert reload.split(",") == sorted(referenced), component
    assert reload == "livelearn-redis-ca,livelearn-secrets"


def test_service_monitor_takes_relabelings_timeout_and_tls():
    relabelings = [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]
    dropped = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}]
    tls = {"insecureSkipVerify": False, "serverName": "livelearn"}
    for monitor, endpoints in (("serviceMonitor", "endpoints"), ("podMonitor", "podMetricsEndpoints")):
        scrape = {
            "enabled": True,
            "scrapeTimeout": "10s",
            "relabelings": relabelings,
            "metricRelabelings": dropped,
            "scheme": "https",
            "tlsConfig": tls,
        }
        manifests = render({"metrics": {monitor: scrape}})
        (endpoint,) = next(m for m in manifests if m["kind"].lower() == monitor.lower())["spec"][endpoints]
        assert endpoint["scrapeTimeout"] == "10s"
        assert endpoint["relabelings"] == relabelings and endpoint["metricRelabelings"] == dropped
        assert (endpoint["scheme"], endpoint["tlsConfig"]) == ("https", tls)


def test_the_prediction_service_takes_type_node_port_and_annotations():
    service = {"type": "NodePort", "nodePort": 30080, "annotations": {"example.com/lb": "internal"}}
    manifests = render({"serve": {"service": service}})
    rendered = by_kind(manifests, "Service")["shop-livelearn-serve"]
    kubernetes_validate.validate(rendered, KUBE_VERSIONS[0], strict=True)
    assert rendered["spec"]["type"] == "NodePort"
    assert rendered["spec"]["ports"][0]["nodePort"] == 30080
    assert rendered["metadata"]["annotations"] == {"example.com/lb": "internal"}
    # a ClusterIP Service has no node port, whatever the value says
    cluster = by_kind(render({"serve": {"service": {"nodePort": 30080}}}), "Service")["shop-livelearn-serve"]
    assert "nodePort" not in cluster["spec"]["ports"][0]


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({"global": {"imageRegistry": "mirror.example.com"}}, "mirror.example.com/livelearn:0.1.0"),
        (
            {"image": {"registry": "registry.example.com/", "repository": "ml/livelearn"}},
            "registry.example.com/ml/livelearn:0.1.0",
        ),
        (
            {"global": {"imageRegistry": "mirror.example.com"}, "image": {"registry": "registry.example.com"}},
            "mirror.example.com/livelearn:0.1.0",
        ),
        (
            {"image": {"repository": "registry.example.com/livelearn", "tag": "0.2.0"}},
            "registry.example.com/livelearn:0.2.0",
        ),
    ],
)
def test_global_image_registry_is_honoured_by_every_container(values, image):
    values = {**values, "topics": {"enabled": True}}
    specs = pod_specs(render(values))
    assert len(specs) == 5  # the three workloads, the hook Job, the test Pod
    for name, spec in specs.items():
        assert {c["image"] for c in spec["containers"]} == {image}, name


def test_a_full_topology_spread_constraints_list_replaces_the_shorthand():
    constraints = [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"tier": "ml"}},
            "minDomains": 2,
        },
    ]
    manifests = render({"learner": {"topologySpreadConstraints": constraints}})
    learner = workloads(manifests)["learner"]
    kubernetes_validate.validate(learner, KUBE_VERSIONS[0], strict=True)
    zone, host = learner["spec"]["template"]["spec"]["topologySpreadConstraints"]
    # a constraint without a selector counts the learners; one with its own keeps it
    assert zone == {**constraints[0], "labelSelector": learner["spec"]["selector"]}
    assert host == constraints[1]
    (shorthand,) = workloads(manifests)["monitor"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert shorthand["topologyKey"] == "kubernetes.io/hostname"  # the others keep theirs


def test_the_readme_values_table_is_generated_from_values_yaml():
    module = values_doc_module()
    assert doctest.testmod(module).failed == 0
    readme = (CHART / "README.md").read_text()
    values = (CHART / "values.yaml").read_text()
    assert module.render_readme(readme, values) == readme, (
        "the values table is stale: run .venv/bin/python helm/values_doc.py"
    )
    rows = module.value_rows(values)
    assert [row.key for row in rows if not row.description] == [], "describe every value with a `# --` comment"
    keys = {row.key for row in rows}
    assert {"global.imageRegistry", "serve.service.nodePort", "metrics.serviceMonitor.tlsConfig"} <= keys
    # every row is a value helm knows: the schema has it
    schema = values_schema_module().values_schema()
    for key in keys:
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
