"""Feature drift: a river drift detector on the block means of each tracked numeric feature (pure, no I/O).

Each metric sample carries ``feature:<name>`` — the mean raw value of a tracked numeric feature over the
block. The monitor feeds every sample here in stream order; each feature's block means are standardised by
that feature's own history and fed to a river detector (``drift_detector``: Page-Hinkley, ADWIN or KSWIN).
A detection is *recorded* (audited, counted), not acted on: a feature that changes its unit (a price in
cents instead of euros) is a reason to look, not to roll back — the guarded metric says whether the model
suffers. After a detection the feature starts a new history, so a lasting change is reported once.

>>> watch = FeatureDrift("page_hinkley")
>>> quiet = [watch.observe({"feature:price": 10.0 + (i % 3) * 0.1}, position=100 * i) for i in range(1, 40)]
>>> any(quiet)
False
>>> [d.feature for d in watch.observe({"feature:price": 500.0}, position=4000)]
['price']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from river import drift

__all__ = ["DriftEvent", "FeatureDrift"]


@dataclasses.dataclass(frozen=True)
class DriftEvent:
    feature: str
    position: int  # stream position of the sample that showed it
    value: float  # the block mean
    z: float  # standard deviations off the feature's history

    @property
    def reason(self) -> str:
        return f"{self.feature} block mean {self.value:.4g} is {self.z:+.1f} standard deviations off its history"


def _detector(kind: str) -> Any:
    if kind == "adwin":
        return drift.ADWIN()  # type: ignore[no-untyped-call]
    if kind == "kswin":
        return drift.KSWIN(window_size=30, stat_size=10, seed=0)
    return drift.PageHinkley(min_instances=5, threshold=50.0)


class _Feature:
    """One numeric feature: its block means standardised by their own history, into a river detector."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.detector = _detector(kind)
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def observe(self, value: float) -> float | None:
        """The standardised value when the detector reports drift, else ``None``."""
        z = None
        if self.n >= 5:
            std = math.sqrt(self.m2 / (self.n - 1))
            z = (value - self.mean) / max(std, 1e-3 * abs(self.mean), 1e-9)
            self.detector.update(value if self.kind == "kswin" else z)
            if self.detector.drift_detected:
                self.detector = _detector(self.kind)
                self.n, self.mean, self.m2 = 0, 0.0, 0.0  # a new regime: its own history from here
                return z
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        return None


class FeatureDrift:
    """Feature drift over the metric samples of one model."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.features: dict[str, _Feature] = {}

    def observe(self, sample: dict[str, float], *, position: int) -> list[DriftEvent]:
        events = []
        for field, value in sample.items():
            if not field.startswith("feature:") or math.isnan(value):
                continue
            name = field[len("feature:") :]
            watch = self.features.get(name)
            if watch is None:
                watch = self.features[name] = _Feature(self.kind)
            z = watch.observe(value)
            if z is not None:
                events.append(DriftEvent(name, position, value, z))
        return events
