"""The Kubernetes integration (the ``kubernetes`` client): Events, the learner's pod role label and the
declarative pin ConfigMap, in one background thread that never blocks learning and whose failures are logged
and counted, never fatal. The ``kubernetes`` package itself is imported only when the integration is on."""

from streaming.kube.integration import start_for_learner, start_for_monitor
from streaming.kube.prometheus import KubeMetrics

__all__ = ["KubeMetrics", "start_for_learner", "start_for_monitor"]
