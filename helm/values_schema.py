"""Write ``helm/livelearn/values.schema.json``: every value of the chart, its ``config`` section built from
:class:`streaming.config.Settings` so the chart accepts exactly livelearn's non-secret settings.

Run after adding or changing a setting (``tests/test_chart.py`` fails until the file matches)::

    .venv/bin/python helm/values_schema.py

>>> schema = values_schema()
>>> schema["properties"]["config"]["properties"]["snapshot_every_events"]
{'type': 'integer', 'minimum': 1, 'description': 'Write a version every N consumed events.'}
>>> "kafka_sasl_password" in schema["properties"]["config"]["properties"]
False
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parent / "livelearn"
SCHEMA_FILE = CHART / "values.schema.json"

#: Settings the chart never takes in ``config``: secrets (only through ``secrets.*.existingSecret``) and what each
#: workload sets itself (ports and addresses in the pod; a recovery switch that must not stay on in a Deployment).
CHART_MANAGED = {
    "kafka_sasl_password": "secrets.kafkaSaslPassword",
    "kafka_ssl_key_password": "secrets.kafkaSslKeyPassword",
    "redis_password": "secrets.redisPassword",
    "api_token": "secrets.apiToken",
    "metrics_port": "metricsPort",
    "api_metrics_port": "metricsPort (serve's /metrics, apart from its predictions)",
    "metrics_host": "0.0.0.0 in the pod",
    "api_host": "0.0.0.0 in the pod",
    "api_port": "serve.port",
    "allow_empty_store": "a one-off `livelearn learn --allow-empty-store`, never a Deployment's setting",
    "kubernetes": "kubernetes.enabled (auto: on where the service-account token is mounted)",
    "kubernetes_deployment": "each workload's own Deployment",
    "kubernetes_pin_configmap": "kubernetes.pinConfigMap.name (the monitor)",
}

_KEEP = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "items")
#: Rules between settings (a threshold's bound depends on the metric), kept as pydantic states them.
_RULES = ("if", "then", "else")


def _setting_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """One setting's JSON schema as pydantic states it, without titles, defaults and secret markers; an optional
    setting also takes null (left unset)."""
    if "anyOf" in prop:
        options = [_setting_schema(option) for option in prop["anyOf"]]
        out: dict[str, Any] = {"anyOf": options}
    else:
        out = {key: prop[key] for key in _KEEP if key in prop}
    if "description" in prop:
        out["description"] = prop["description"]
    return out


def config_schema() -> dict[str, Any]:
    """The ``config`` value: one property per non-secret setting the chart passes through."""
    from streaming.config import Settings

    schema = Settings.model_json_schema()
    return {
        "type": "object",
        "description": "Non-secret LIVELEARN_* settings by lower-case name without the prefix (livelearn config).",
        "additionalProperties": False,
        "properties": {
            name: _setting_schema(prop) for name, prop in schema["properties"].items() if name not in CHART_MANAGED
        },
        **{rule: schema[rule] for rule in _RULES if rule in schema},
    }


def _obj(properties: dict[str, Any], description: str = "", required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if description:
        out["description"] = description
    if required:
        out["required"] = required
    return out


_STRING = {"type": "string"}
_BOOL = {"type": "boolean"}
_FREE_OBJECT = {"type": "object"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_LIST = {"type": "array", "items": {"type": "object"}}
_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
_NAME = {"type": "string", "pattern": "^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_QUANTITY = {"anyOf": [{"type": "string", "pattern": "^[0-9.]+[a-zA-Z]*$"}, {"type": "number", "minimum": 0}]}
_RESOURCES = _obj(
    {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    },
    "Container resources (requests and limits).",
    ["requests", "limits"],
)
_PROBE = _obj(
    {
        "path": {"type": "string", "pattern": "^/"},
        "periodSeconds": {"type": "integer", "minimum": 1},
        "timeoutSeconds": {"type": "integer", "minimum": 1},
        "failureThreshold": {"type": "integer", "minimum": 1},
    },
    "An HTTP probe on the workload's port.",
    ["path", "periodSeconds", "timeoutSeconds", "failureThreshold"],
)
_SECRET_REF = _obj(
    {
        "existingSecret": {**_NAME, "description": "Name of a Secret you created (empty: setting unset)."},
        "key": {"type": "string", "minLength": 1},
    },
    required=["existingSecret", "key"],
)
_ENV_LIST = {"type": "array", "items": {"type": "object", "required": ["name"]}}
_NAMED_LIST = _ENV_LIST  # volumes, containers: Kubernetes objects with a name
_MOUNT_LIST = {"type": "array", "items": {"type": "object", "required": ["name", "mountPath"]}}
_SPREAD_LIST = {
    "type": "array",
    "items": {"type": "object", "required": ["maxSkew", "topologyKey", "whenUnsatisfiable"]},
    "description": "topologySpreadConstraints as Kubernetes takes them (labelSelector defaults to the component's).",
}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


def _workload(description: str, *, serve: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "replicas": {"type": "integer", "minimum": 0},
        "resources": _RESOURCES,
        "terminationGracePeriodSeconds": {"type": "integer", "minimum": 1},
        "topologySpread": _obj(
            {
                "enabled": _BOOL,
                "topologyKey": {"type": "string", "minLength": 1},
                "maxSkew": {"type": "integer", "minimum": 1},
                "whenUnsatisfiable": {"enum": ["ScheduleAnyway", "DoNotSchedule"]},
            },
            "Spread the replicas across nodes (topologySpreadConstraints).",
        ),
        "podDisruptionBudget": _obj(
            {"enabled": _BOOL, "maxUnavailable": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}}
        ),
        "livenessProbe": _PROBE,
        "readinessProbe": _PROBE,
        "startupProbe": _PROBE,
        "extraArgs": {"type": "array", "items": {"type": "string"}},
        "extraEnv": _ENV_LIST,
        "extraEnvFrom": _OBJECT_LIST,
        "extraVolumes": _NAMED_LIST,
        "extraVolumeMounts": _MOUNT_LIST,
        "initContainers": _NAMED_LIST,
        "sidecars": _NAMED_LIST,
        "topologySpreadConstraints": _SPREAD_LIST,
        "podAnnotations": _STRING_MAP,
        "podLabels": _STRING_MAP,
        "nodeSelector": _STRING_MAP,
        "tolerations": _OBJECT_LIST,
        "affinity": _FREE_OBJECT,
        "priorityClassName": _STRING,
    }
    if serve:
        properties["port"] = _PORT
        properties["service"] = _obj(
            {
                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "port": _PORT,
                "nodePort": {"anyOf": [{"type": "null"}, _PORT], "description": "NodePort and LoadBalancer only."},
                "annotations": _STRING_MAP,
            }
        )
        properties["autoscaling"] = _obj(
            {
                "enabled": _BOOL,
                "minReplicas": {"type": "integer", "minimum": 1},
                "maxReplicas": {"type": "integer", "minimum": 1},
                "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            # minReplicas <= maxReplicas: no JSON schema compares two values; serve.yaml fails the render instead
            "A HorizontalPodAutoscaler on CPU (replicas then left to it; minReplicas at most maxReplicas).",
        )
    return _obj(properties, description)


def _monitor_object(description: str) -> dict[str, Any]:
    return _obj(
        {
            "enabled": _BOOL,
            "interval": _DURATION,
            "scrapeTimeout": {"anyOf": [{"const": ""}, _DURATION]},
            "labels": _STRING_MAP,
            "relabelings": _OBJECT_LIST,
            "metricRelabelings": _OBJECT_LIST,
            "scheme": {"enum": ["http", "https"]},
            "tlsConfig": _FREE_OBJECT,
        },
        description,
    )


def _when_enabled(then: dict[str, Any]) -> dict[str, Any]:
    """``then``'s properties apply when ``enabled`` is true (a JSON schema if/then)."""
    return {"if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]}, "then": {"properties": then}}


def _exposure() -> dict[str, Any]:
    """``ingress`` and ``httpRoute``: serve's predictions from outside the cluster."""
    path = _obj(
        {
            "path": {"type": "string", "pattern": "^/"},
            "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]},
        },
        required=["path", "pathType"],
    )
    host = _obj({"host": _STRING, "paths": {"type": "array", "items": path, "minItems": 1}}, required=["paths"])
    tls = _obj({"secretName": _NAME, "hosts": {"type": "array", "items": _STRING}})
    ingress = _obj(
        {
            "enabled": _BOOL,
            "className": _STRING,
            "annotations": _STRING_MAP,
            "hosts": {"type": "array", "items": host},
            "tls": {"type": "array", "items": tls},
        },
        "An Ingress to serve's predictions.",
    )
    route = _obj(
        {
            "enabled": _BOOL,
            "parentRefs": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "hostnames": {"type": "array", "items": _STRING},
            "matches": {"type": "array", "items": _FREE_OBJECT, "minItems": 1},
            "annotations": _STRING_MAP,
            "labels": _STRING_MAP,
        },
        "A Gateway API HTTPRoute to serve's predictions.",
    )
    # an Ingress with no rule, a route attached to no Gateway: nothing would reach serve
    ingress |= _when_enabled({"hosts": {"minItems": 1}})
    route |= _when_enabled({"parentRefs": {"minItems": 1}})
    return {"ingress": ingress, "httpRoute": route}


def values_schema() -> dict[str, Any]:
    """The whole ``values.schema.json``."""
    security = {"type": "object", "description": "A Kubernetes securityContext (restricted Pod Security Standard)."}
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "livelearn chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "global": {
                "type": "object",
                "properties": {"imageRegistry": {**_STRING, "description": "Registry of every image (wins)."}},
            },
            "nameOverride": _STRING,
            "fullnameOverride": _STRING,
            "commonLabels": _STRING_MAP,
            "commonAnnotations": _STRING_MAP,
            "image": _obj(
                {
                    "registry": _STRING,
                    "repository": {"type": "string", "minLength": 1},
                    "tag": _STRING,
                    "digest": {"type": "string", "pattern": "^$|^sha256:[0-9a-f]{64}$"},
                    "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                },
                required=["repository"],
            ),
            "imagePullSecrets": {"type": "array", "items": _obj({"name": _NAME}, required=["name"])},
            "config": config_schema(),
            "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
            "secrets": _obj(
                {
                    "kafkaSaslPassword": _SECRET_REF,
                    "kafkaSslKeyPassword": _SECRET_REF,
                    "redisPassword": _SECRET_REF,
                    "apiToken": _SECRET_REF,
                },
                "Secret settings, only as references to existing Secrets.",
            ),
            "tls": _obj({"redisCA": _SECRET_REF, "kafkaCA": _SECRET_REF}, "CA certificates from Secrets."),
            "reloader": _obj({"enabled": _BOOL}, "stakater Reloader's annotation naming the referenced Secrets."),
            "metricsPort": {"type": "integer", "minimum": 1024, "maximum": 65535},
            "serviceAccount": _obj({"create": _BOOL, "name": _NAME, "annotations": _STRING_MAP}),
            "rbac": _obj({"create": _BOOL}),
            "kubernetes": _obj(
                {
                    "enabled": _BOOL,
                    "pinConfigMap": _obj(
                        {
                            "name": _NAME,
                            "create": _BOOL,
                            "pinned": {
                                "anyOf": [{"type": "string", "pattern": "^$|^[1-9][0-9]*$"}, {"type": "integer"}],
                                "description": "A version number, or empty: unpinned.",
                            },
                        }
                    ),
                },
                "Events, the pod role label and the declarative pin (Kubernetes API).",
            ),
            "podSecurityContext": security,
            "containerSecurityContext": security,
            "tmpVolume": _obj({"sizeLimit": _QUANTITY}),
            "learner": _workload("Learners: one active, the others hot standbys (Redis lease)."),
            "monitor": _workload("Monitors: the quality guard (epoch-fenced rollbacks)."),
            "serve": _workload("The prediction API.", serve=True),
            "topics": _obj(
                {
                    "enabled": _BOOL,
                    "partitions": {"type": "integer", "minimum": 1},
                    "backoffLimit": {"type": "integer", "minimum": 0},
                    "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                    "resources": _RESOURCES,
                },
                "The pre-install/pre-upgrade Job running `livelearn topics`.",
            ),
            "backup": _obj(
                {
                    "enabled": _BOOL,
                    "url": {"type": "string", "pattern": "^$|^[a-z0-9]+://.+"},
                    "schedule": {"type": "string", "minLength": 1},
                    "timeZone": _STRING,
                    "env": _STRING_MAP,
                    "existingSecret": _NAME,
                    "startingDeadlineSeconds": {"type": "integer", "minimum": 10},
                    "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0},
                    "failedJobsHistoryLimit": {"type": "integer", "minimum": 0},
                    "backoffLimit": {"type": "integer", "minimum": 0},
                    "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                    "alertAfterMinutes": {"type": "integer", "minimum": 1},
                    "resources": _RESOURCES,
                },
                "The backup CronJob running `livelearn backup`.",
            ),
            "networkPolicy": _obj(
                {
                    "enabled": _BOOL,
                    "serveFrom": _OBJECT_LIST,
                    "metricsFrom": _OBJECT_LIST,
                    "egress": _OBJECT_LIST,
                }
            ),
            **_exposure(),
            "metrics": _obj(
                {
                    "serviceMonitor": _monitor_object("A ServiceMonitor (Prometheus Operator)."),
                    "podMonitor": _monitor_object("A PodMonitor (Prometheus Operator)."),
                    "prometheusRule": _obj(
                        {
                            "enabled": _BOOL,
                            "labels": _STRING_MAP,
                            "snapshotStaleFactor": {"type": "number", "exclusiveMinimum": 1},
                            "lagMinEvents": {"type": "integer", "minimum": 0},
                            "lagWindow": _DURATION,
                            "rollbackWindow": _DURATION,
                            "alertLabels": _STRING_MAP,
                            "runbookBaseUrl": {"type": "string", "pattern": "^https?://[^\\s]+$"},
                        },
                        "The alert rules (PrometheusRule).",
                    ),
                    "dashboard": _obj(
                        {"enabled": _BOOL, "labels": _STRING_MAP, "annotations": _STRING_MAP},
                        "The Grafana dashboard ConfigMap (sidecar label).",
                    ),
                }
            )
            # both monitors on would scrape every series twice (doubled rates; alerts on sums)
            | {
                "if": {
                    "properties": {"serviceMonitor": _when_enabled({})["if"]},
                    "required": ["serviceMonitor"],
                },
                "then": {"properties": {"podMonitor": {"properties": {"enabled": {"const": False}}}}},
            },
            "helmTest": _obj({"enabled": _BOOL}),
        },
    }


def render() -> str:
    """The file's text."""
    return json.dumps(values_schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(CHART.parent.parent))
    SCHEMA_FILE.write_text(render())
    print(f"wrote {SCHEMA_FILE}")
