"""The data-quality watch: label and prediction rates against a reference, feature drift (pure, no I/O).

Fed every metric sample in stream order (each one a block of ``history_every_events`` labelled events),
it reports:

* **incident start** — the block label rate (or prediction rate) left its reference by more than its bound
  for ``incident_patience`` blocks in a row. The reference is an exponential average of the blocks seen
  while the model was healthy and no incident was open (half-life ``reference_half_life_events``), so a slow
  corruption cannot drag it along. The incident's *change point* is where the shift began: the first block
  of the run of blocks already off by half the bound.
* **incident end** — every watched rate back within its bound for ``incident_resume_after_events`` in a row
  (the hysteresis is in events: ``incident_patience`` blocks to open, many more to close). The reference
  stays where the healthy data left it, so it cannot have learned the incident; within the bound, not a
  tighter band, because the data's own slow seasonal movement goes on during an incident.
* **feature drift** — a river drift detector (``drift_detector``: Page-Hinkley, ADWIN or KSWIN) on the
  block means of each tracked numeric feature, standardised by that feature's own history. Recorded, not
  acted on: a feature that changes its unit is a reason to look, not to roll back.

A monitor rebuilds this state by replaying the history stream, so every monitor of a model agrees and a
replay reproduces the same events.

>>> from streaming.config import Settings
>>> watch = SignalWatch(Settings(monitor_min_samples=1, reference_min_events=200))
>>> block = {"accuracy": 0.9, "samples": 500, "pred_rate": 0.1}
>>> for i in range(1, 6):
...     _ = watch.observe({**block, "stream_position": 100 * i, "label_rate": 0.15})
>>> [e.kind for e in watch.observe({**block, "stream_position": 600, "label_rate": 1.0})]
[]
>>> events = watch.observe({**block, "stream_position": 700, "label_rate": 1.0})
>>> events[0].kind, events[0].signal, events[0].change_point
('incident_start', 'label_rate', 500)
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Literal

from river import drift

from monitor.prequential import meets_threshold
from streaming.config import Settings

__all__ = ["RATE_SIGNALS", "SignalEvent", "SignalWatch"]

#: Rates of a block whose shift is a data-quality incident.
RATE_SIGNALS = ("label_rate", "pred_rate")
_RECENT = 64  # blocks kept to locate a change point


@dataclasses.dataclass(frozen=True)
class SignalEvent:
    """Something the data did: an incident started or ended, or a feature drifted."""

    kind: Literal["incident_start", "incident_end", "feature_drift"]
    signal: str  # label_rate | pred_rate | feature:<name>
    position: int  # stream position of the sample that decided it
    value: float
    reference: float | None
    change_point: int | None = None  # incident start: where the shift began
    reason: str = ""


@dataclasses.dataclass
class _Incident:
    signal: str
    change_point: int
    normal_since: int | None = None


class _FeatureWatch:
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


def _detector(kind: str) -> Any:
    if kind == "adwin":
        return drift.ADWIN()  # type: ignore[no-untyped-call]
    if kind == "kswin":
        return drift.KSWIN(window_size=30, stat_size=10, seed=0)
    return drift.PageHinkley(min_instances=5, threshold=50.0)


class SignalWatch:
    """Turns the data signals of consecutive metric samples into :class:`SignalEvent` s."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bounds = {
            "label_rate": settings.incident_label_rate_bound,
            "pred_rate": settings.incident_prediction_rate_bound,
        }
        blocks = max(settings.reference_half_life_events / settings.history_every_events, 1.0)
        self.alpha = 1 - 0.5 ** (1 / blocks)
        self.reference: dict[str, float | None] = dict.fromkeys(RATE_SIGNALS)
        self.reference_events = 0  # healthy events the reference has seen
        self.runs: dict[str, int] = dict.fromkeys(RATE_SIGNALS, 0)
        self.recent: collections.deque[tuple[int, dict[str, float]]] = collections.deque(maxlen=_RECENT)
        self.incident: _Incident | None = None
        self.features: dict[str, _FeatureWatch] = {}
        self.last_position: int | None = None
        self.suspect_since: int | None = None  # start of the current run of blocks off by half a bound

    def _ready(self) -> bool:
        return self.reference_events >= self.settings.reference_min_events

    def _change_point(self, signal: str, reference: float) -> int:
        """Block start of the earliest block in the newest run of blocks off by at least half the bound."""
        half = self.bounds[signal] / 2
        start = self.recent[-1][0]
        for block_start, values in reversed(self.recent):
            value = values.get(signal)
            if value is None or math.isnan(value) or abs(value - reference) <= half:
                break
            start = block_start
        return start

    def resume_incident(self, signal: str, change_point: int) -> None:
        """Carry on watching an incident opened before this watch's history (e.g. trimmed from the stream)."""
        self.incident = _Incident(signal, change_point)

    def observe(self, sample: dict[str, float], *, threshold: float | None = None) -> list[SignalEvent]:
        """One metric sample, in stream order; the events it causes. ``threshold``: the guarded metric's
        current threshold (relative mode), which says whether the model is healthy enough to learn references."""
        position = int(sample.get("stream_position", 0))
        block_start = self.last_position if self.last_position is not None else position
        self.last_position = position
        rates = {s: sample[s] for s in RATE_SIGNALS if s in sample and not math.isnan(sample[s])}
        self.recent.append((block_start, rates))
        events: list[SignalEvent] = []
        self._track_suspicion(block_start, rates)
        if self.incident is None and self._ready():
            events += self._detect(position, rates)
        elif self.incident is not None:
            events += self._watch_recovery(position, block_start, rates)
        calm = not any(self.runs.values())  # a block that is already off must not pull the reference along
        if self.incident is None and calm and meets_threshold(sample, self.settings, threshold):
            self._learn_reference(rates)
        events += self._feature_drift(position, sample)
        return events

    @property
    def calm(self) -> bool:
        """No incident open and the newest block not suspect: versions up to here may be confirmed."""
        return self.incident is None and self.suspect_since is None

    def _track_suspicion(self, block_start: int, rates: dict[str, float]) -> None:
        """A block off its reference by half a bound starts (or continues) a suspect run; promotion of versions
        written inside it waits until the run ends without an incident."""
        suspect = any(
            ref is not None and signal in rates and abs(rates[signal] - ref) > self.bounds[signal] / 2
            for signal, ref in self.reference.items()
        )
        if not suspect:
            self.suspect_since = None
        elif self.suspect_since is None:
            self.suspect_since = block_start

    def _detect(self, position: int, rates: dict[str, float]) -> list[SignalEvent]:
        for signal, value in rates.items():
            reference = self.reference[signal]
            off = reference is not None and abs(value - reference) > self.bounds[signal]
            self.runs[signal] = self.runs[signal] + 1 if off else 0
        for signal in RATE_SIGNALS:  # the label rate first: it is the usual culprit
            if self.runs[signal] >= self.settings.incident_patience:
                reference = self.reference[signal]
                assert reference is not None
                value = rates[signal]
                change_point = self._change_point(signal, reference)
                self.incident = _Incident(signal, change_point)
                self.runs = dict.fromkeys(RATE_SIGNALS, 0)
                reason = (
                    f"{signal} {value:.3f} vs reference {reference:.3f} (bound {self.bounds[signal]}) for "
                    f"{self.settings.incident_patience} blocks; shift began at stream position {change_point}"
                )
                return [SignalEvent("incident_start", signal, position, value, reference, change_point, reason)]
        return []

    def _watch_recovery(self, position: int, block_start: int, rates: dict[str, float]) -> list[SignalEvent]:
        incident = self.incident
        assert incident is not None
        normal = all(
            abs(rates[s] - ref) <= self.bounds[s] for s, ref in self.reference.items() if ref is not None and s in rates
        )
        if not normal:
            incident.normal_since = None
            return []
        incident.normal_since = block_start if incident.normal_since is None else incident.normal_since
        if position - incident.normal_since < self.settings.incident_resume_after_events:
            return []
        self.incident = None
        value, reference = rates.get(incident.signal, math.nan), self.reference[incident.signal]
        reason = (
            f"{incident.signal} back within its bound of the reference for {position - incident.normal_since} events"
        )
        return [SignalEvent("incident_end", incident.signal, position, value, reference, incident.change_point, reason)]

    def _learn_reference(self, rates: dict[str, float]) -> None:
        for signal, value in rates.items():
            reference = self.reference[signal]
            self.reference[signal] = value if reference is None else reference + self.alpha * (value - reference)
        self.reference_events += self.settings.history_every_events

    def _feature_drift(self, position: int, sample: dict[str, float]) -> list[SignalEvent]:
        events = []
        for field, value in sample.items():
            if not field.startswith("feature:") or math.isnan(value):
                continue
            watch = self.features.get(field)
            if watch is None:
                watch = self.features[field] = _FeatureWatch(self.settings.drift_detector)
            z = watch.observe(value)
            if z is not None:
                reason = f"{field[8:]} block mean {value:.4g} is {z:+.1f} standard deviations off its history"
                events.append(SignalEvent("feature_drift", field, position, value, None, None, reason))
        return events
