"""The quality guard: prequential metrics and the threshold rule (``prequential``), the decision rule
(``judge``), the monitor process (``guard``), its Prometheus metrics (``telemetry``) and the incident
report (``report``). Names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real types for type checkers; at run time each name is imported on first use (__getattr__)
    from monitor.guard import Monitor
    from monitor.judge import Decision, Judge
    from monitor.prequential import LOWER_IS_BETTER, METRICS, PrequentialMetrics, is_healthy
    from monitor.report import write_report

__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "Decision",
    "Judge",
    "Monitor",
    "PrequentialMetrics",
    "is_healthy",
    "write_report",
]

_WHERE = {
    "LOWER_IS_BETTER": "monitor.prequential",
    "METRICS": "monitor.prequential",
    "Decision": "monitor.judge",
    "Judge": "monitor.judge",
    "Monitor": "monitor.guard",
    "PrequentialMetrics": "monitor.prequential",
    "is_healthy": "monitor.prequential",
    "write_report": "monitor.report",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'monitor' has no attribute {name!r}")
