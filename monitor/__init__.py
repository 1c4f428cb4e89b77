"""Quality signals of the live model: prequential metrics and Prometheus telemetry."""

from monitor.prequential import LOWER_IS_BETTER, METRICS, PrequentialMetrics
from monitor.telemetry import EVENT_LATENCY_BUCKETS, LearnerMetrics, serve_metrics

__all__ = ["EVENT_LATENCY_BUCKETS", "LOWER_IS_BETTER", "METRICS", "LearnerMetrics", "PrequentialMetrics", "serve_metrics"]
