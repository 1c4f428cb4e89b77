"""How further guarded metrics are written in the settings (``LIVELEARN_MONITOR_ALSO``): one short string each.

The monitor guards ``monitor_metric`` against ``monitor_threshold``; at a 15 % base rate accuracy barely moves when
half the purchases go unlabelled or every session of some kind is labelled one, while precision or recall falls by
half. Each further rule is ``METRIC:KIND=VALUE``, and a breach of any rule is a breach:

``drop=F``
    The metric below ``(1 - F)`` times its own healthy level (an average of the values that met the rule, learned
    like the relative threshold); for ``log_loss`` above ``(1 + F)`` times it. ``F`` above 0, below 1 (log loss:
    at most 10).
``min=X`` / ``max=X``
    An absolute bound: at least ``X`` (``max``: at most ``X``, for ``log_loss`` only).

>>> parse_metric_rule("recall:drop=0.5")
MetricRule(metric='recall', kind='drop', value=0.5)
>>> parse_metric_rule("recall:drop=0.5").limit(0.4), parse_metric_rule("log_loss:drop=0.5").limit(0.3)
(0.2, 0.45)
>>> parse_metric_rule("precision:min=0.5").limit(None)
0.5
>>> parse_metric_rule("recall:max=0.9")
Traceback (most recent call last):
...
ValueError: monitor_also 'recall:max=0.9': recall is better higher: use min=X or drop=F
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Literal

__all__ = ["GUARDABLE", "MetricRule", "parse_metric_rule", "parse_metric_rules"]

#: The rolling metrics a rule can guard (``log_loss``: lower is better).
GUARDABLE = ("accuracy", "precision", "recall", "f1", "balanced_accuracy", "roc_auc", "log_loss")
_LOWER_IS_BETTER = ("log_loss",)


@dataclasses.dataclass(frozen=True)
class MetricRule:
    """One further guarded metric: ``kind`` ``drop`` (relative to its healthy level), ``min`` or ``max``."""

    metric: str
    kind: Literal["drop", "min", "max"]
    value: float

    @property
    def lower_is_better(self) -> bool:
        return self.metric in _LOWER_IS_BETTER

    @property
    def relative(self) -> bool:
        """Whether the bound follows a healthy level learned from the stream."""
        return self.kind == "drop"

    def limit(self, level: float | None) -> float | None:
        """The bound at healthy ``level`` (``None`` for a relative rule whose level is not known yet)."""
        if not self.relative:
            return self.value
        if level is None:
            return None
        return level * (1 + self.value) if self.lower_is_better else level * (1 - self.value)

    def healthy(self, value: float, limit: float) -> bool:
        """``value`` meets ``limit`` (at or above it; at or below it when lower is better)."""
        return value <= limit if self.lower_is_better else value >= limit

    def describe(self) -> str:
        return f"{self.metric}:{self.kind}={self.value:g}"


def parse_metric_rule(text: str) -> MetricRule:
    """One rule from ``METRIC:KIND=VALUE`` (see the module docstring); a ``ValueError`` of one line if it is wrong.

    Parameters
    ----------
    text
        ``recall:drop=0.5``, ``precision:min=0.4``, ``log_loss:max=0.6``, ...

    Examples
    --------
    >>> parse_metric_rule(" precision : min = 0.4 ").describe()
    'precision:min=0.4'
    >>> parse_metric_rule("recall")
    Traceback (most recent call last):
    ...
    ValueError: monitor_also 'recall': write METRIC:drop=F, METRIC:min=X or METRIC:max=X
    """
    where = f"monitor_also {text!r}"
    metric, colon, rest = (part.strip() for part in text.partition(":"))
    kind, equals, number = (part.strip() for part in rest.partition("="))
    if not colon or not equals:
        raise ValueError(f"{where}: write METRIC:drop=F, METRIC:min=X or METRIC:max=X")
    if metric not in GUARDABLE:
        raise ValueError(f"{where}: unknown metric {metric!r}; choose from {', '.join(GUARDABLE)}")
    if kind not in ("drop", "min", "max"):
        raise ValueError(f"{where}: unknown rule {kind!r}; use drop=F, min=X or max=X")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    lower = metric in _LOWER_IS_BETTER
    if kind == "drop":
        high = 10.0 if lower else 1.0
        if not (0 < value < high or (lower and value == high)):
            raise ValueError(f"{where}: drop must be a number above 0 and below {high:g}, not {number!r}")
    else:
        if (kind == "max") != lower:
            better = "lower: use max=X or drop=F" if lower else "higher: use min=X or drop=F"
            raise ValueError(f"{where}: {metric} is better {better}")
        high = math.inf if lower else 1.0
        if not 0 <= value <= high:
            raise ValueError(f"{where}: {kind} must be a number from 0{'' if lower else ' to 1'}, not {number!r}")
    return MetricRule(metric, kind, value)  # type: ignore[arg-type]


def parse_metric_rules(texts: Iterable[str], primary: str | None = None) -> tuple[MetricRule, ...]:
    """Every rule of ``texts``, each metric at most once and not ``primary`` (``monitor_metric``, guarded already).

    >>> [rule.describe() for rule in parse_metric_rules(["recall:drop=0.5", "precision:drop=0.4"], "accuracy")]
    ['recall:drop=0.5', 'precision:drop=0.4']
    >>> parse_metric_rules(["accuracy:min=0.7"], "accuracy")
    Traceback (most recent call last):
    ...
    ValueError: monitor_also 'accuracy:min=0.7': accuracy is monitor_metric, guarded by monitor_threshold already
    """
    rules: dict[str, MetricRule] = {}
    for text in texts:
        rule = parse_metric_rule(text)
        if rule.metric == primary:
            raise ValueError(
                f"monitor_also {text!r}: {rule.metric} is monitor_metric, guarded by monitor_threshold already"
            )
        if rule.metric in rules:
            raise ValueError(f"monitor_also {text!r}: {rule.metric} has a rule already; one rule per metric")
        rules[rule.metric] = rule
    return tuple(rules.values())
