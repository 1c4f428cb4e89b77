"""Feature drift: a river drift detector on the block means of each tracked numeric feature (pure, no I/O).

Each metric sample carries ``feature:<name>`` — the mean raw value of a tracked numeric feature over the
block. The monitor feeds every sample here in stream order; each feature's block means are standardised by
that feature's own history and fed to a river detector (``drift_detector``: Page-Hinkley, ADWIN or KSWIN).
A detection is *recorded* (audited, counted), not acted on: a feature that changes its unit (a price in
cents instead of euros) is a reason to look, not to roll back — the guarded metric says whether the model
suffers. After a detection the feature starts a new history, so a lasting change is reported once.

Seasonal data drifts in waves — at the bundled dataset's wrap (February after December) a dozen features move
within a few thousand events. :class:`DriftEpisodes` turns detections into **notices**: the first detection opens
an episode and is a notice at once (a feature that changes its unit is reported at the block that shows it); the
detections in the next ``drift_group_events`` events are held and become one notice when the episode ends (the
monitor counts each detection with its notice). On the bundled data cycled three times: 16 detections, 9 notices.

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

__all__ = ["DriftEpisodes", "DriftEvent", "DriftNotice", "FeatureDrift"]


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


@dataclasses.dataclass(frozen=True)
class DriftNotice:
    """What the audit says of feature drift: one detection, or the detections an episode held."""

    position: int  # stream position of the sample that made the notice
    events: tuple[DriftEvent, ...]
    since: int | None = None  # an episode's end: where it began

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(event.feature for event in self.events))

    @property
    def reason(self) -> str:
        if self.since is None:
            return self.events[0].reason
        return (
            f"{len(self.events)} more feature drift detection(s) between stream positions {self.since} and "
            f"{self.position} ({', '.join(self.features)}): "
            + "; ".join(f"{e.feature} at {e.position} ({e.z:+.1f} sd)" for e in self.events)
        )


class DriftEpisodes:
    """Feature drift detections grouped into notices (see the module docstring).

    >>> episodes = DriftEpisodes(group_events=1000)
    >>> first = DriftEvent("price", 100, 500.0, 9.0)
    >>> [n.reason for n in episodes.notices([first], position=100)]
    ['price block mean 500 is +9.0 standard deviations off its history']
    >>> episodes.notices([DriftEvent("rate", 400, 2.0, -4.0)], position=400)  # held
    []
    >>> [n.features for n in episodes.notices([], position=1200)]  # the episode is over
    [('rate',)]
    """

    def __init__(self, group_events: int) -> None:
        self.group_events = group_events
        self.started: int | None = None  # where the current episode began
        self.held: list[DriftEvent] = []

    def notices(self, events: list[DriftEvent], *, position: int) -> list[DriftNotice]:
        """The notices for one sample's detections ``events`` at stream ``position`` (in stream order)."""
        out: list[DriftNotice] = []
        if self.started is not None and position - self.started >= self.group_events:
            if self.held:
                out.append(DriftNotice(position, tuple(self.held), since=self.started))
            self.started, self.held = None, []
        for event in events:
            if self.started is None or self.group_events == 0:
                out.append(DriftNotice(position, (event,)))
                self.started = position
            else:
                self.held.append(event)
        return out
