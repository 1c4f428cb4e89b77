"""When the Kubernetes integration is on, who this pod is, and the API clients (the ``kubernetes`` package).

``LIVELEARN_KUBERNETES=auto`` (the default) turns it on in a pod whose service-account token is mounted (the chart
mounts it only when ``kubernetes.enabled``); ``on`` also outside a pod, through ``KUBECONFIG`` (development,
tests); ``off`` never. The pod's identity comes from the downward API variables the chart sets: ``POD_NAME``
(default: the host name, which is the pod name), ``POD_NAMESPACE`` (default: the service account's namespace
file, then ``default``) and ``POD_UID``.

>>> wanted("auto", token_path="/nonexistent/token"), wanted("on", token_path="/nonexistent/token")
(False, True)
>>> identity_from({"POD_NAME": "shop-learner-0", "POD_NAMESPACE": "shop"}, "/nonexistent").namespace
'shop'
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streaming.config import KubernetesSettings
from streaming.errors import ConfigError

__all__ = ["SERVICE_ACCOUNT", "KubeApi", "PodIdentity", "connect", "identity_from", "wanted"]

#: Where Kubernetes mounts the service account's token, CA and namespace in a pod.
SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def wanted(mode: str, token_path: str = f"{SERVICE_ACCOUNT}/token") -> bool:
    """Whether the integration runs: ``on``, or ``auto`` in a pod (token mounted)."""
    return mode == "on" or (mode == "auto" and Path(token_path).is_file())


@dataclasses.dataclass(frozen=True)
class PodIdentity:
    """This pod: its name, namespace and uid (the Events' reporting instance and the object labelled)."""

    name: str
    namespace: str
    uid: str | None


def identity_from(environ: Mapping[str, str], service_account: str = SERVICE_ACCOUNT) -> PodIdentity:
    """The pod's identity from the downward API variables, with the defaults of the module docstring."""
    namespace = environ.get("POD_NAMESPACE", "").strip()
    if not namespace:
        try:
            namespace = Path(service_account, "namespace").read_text().strip()
        except OSError:
            namespace = ""
    return PodIdentity(
        name=environ.get("POD_NAME", "").strip() or socket.gethostname(),
        namespace=namespace or "default",
        uid=environ.get("POD_UID", "").strip() or None,
    )


@dataclasses.dataclass(frozen=True)
class KubeApi:
    """The API clients one process uses, with the timeout every call passes (``request_timeout``)."""

    core: Any  # kubernetes.client.CoreV1Api
    apps: Any  # kubernetes.client.AppsV1Api
    events: Any  # kubernetes.client.EventsV1Api
    pod: PodIdentity
    timeout: float

    @property
    def request_timeout(self) -> tuple[float, float]:
        """``_request_timeout`` of every call: connect and read timeouts."""
        return (self.timeout, self.timeout)


def connect(
    kube: KubernetesSettings,
    *,
    kubeconfig: str | None = None,
    environ: Mapping[str, str] | None = None,
    service_account: str = SERVICE_ACCOUNT,
) -> KubeApi:
    """API clients for this pod: the in-cluster configuration when the token is mounted, else ``kubeconfig``
    (default: ``KUBECONFIG``, then ``~/.kube/config``). Fails with :class:`ConfigError` saying what to fix."""
    from kubernetes import client, config

    environ = os.environ if environ is None else environ
    configuration = client.Configuration()
    try:
        if kubeconfig is None and Path(service_account, "token").is_file():
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
    except (config.ConfigException, OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot configure the Kubernetes client ({exc}); run in a pod with its service-account token "
            "mounted (chart: kubernetes.enabled), point KUBECONFIG at a cluster, or set LIVELEARN_KUBERNETES=off"
        ) from None
    configuration.retries = 0  # one attempt per call, bounded by the timeout: the next poll is the retry
    api = client.ApiClient(configuration)
    return KubeApi(
        core=client.CoreV1Api(api),
        apps=client.AppsV1Api(api),
        events=client.EventsV1Api(api),
        pod=identity_from(environ, service_account),
        timeout=kube.timeout_seconds,
    )
