"""The data-quality watch: block label and prediction rates against a reference (pure, no I/O).

The learner feeds it every metric sample it records, in stream order (each one a block of
``history_every_events`` labelled events), and acts on what it reports at that exact event:

* **incident start** — the block label rate (or prediction rate) left its reference by more than its bound
  for ``incident_patience`` blocks in a row; or, at once, a run of one label value (``label_run``) less
  likely than ``incident_label_run_probability`` under the reference label rate — a labeller stuck at 0
  moves a 0.15 label rate by less than the bound, but 200 zeros in a row have a probability of 1e-14.
  The reference is an exponential average of the blocks seen while the model was healthy and no incident
  was open (half-life ``reference_half_life_events``), so a slow corruption cannot drag it along. The
  incident's *change point* is where the shift began: the start of the run of blocks already off by half
  the bound (for a label run: its first event, or that start if earlier).
* **incident end** — every watched rate back within its bound for ``incident_resume_after_events`` in a row
  (the hysteresis is in events: ``incident_patience`` blocks to open, many more to close). The reference
  stays where the healthy data left it, so it cannot have learned the incident; within the bound, not a
  tighter band, because the data's own slow seasonal movement goes on during an incident.
* **calm** — no incident, and the newest block not off by half a bound: the versions written up to here
  may be confirmed stable. A block off by half a bound starts a *suspect* run; versions written inside it
  wait, and if the run turns into an incident its start is the change point, so no version written after
  the change point was ever confirmed on a full block. Between samples, :meth:`SignalWatch.calm_with` judges
  the block so far by the same rule, to confirm a timed snapshot without waiting for the block to fill (at low
  event rates); a shift too small to show in the partial block may then confirm a version the full block later
  finds past a change point: the incident quarantines it and rolls back as for any other.

Its state is a plain document (:meth:`SignalWatch.dump`), kept in every snapshot, so a restarted learner
carries on with the same references and a replay reproduces the same decisions at the same events.

>>> from streaming.config import GuardSettings, Settings
>>> watch = SignalWatch(Settings(monitor_min_samples=1, reference_min_events=200))
>>> block = {"accuracy": 0.9, "samples": 500, "pred_rate": 0.1}
>>> for i in range(1, 6):
...     _ = watch.observe({**block, "stream_position": 100 * i, "label_rate": 0.15})
>>> watch.observe({**block, "stream_position": 600, "label_rate": 1.0}), watch.calm
([], False)
>>> events = watch.observe({**block, "stream_position": 700, "label_rate": 1.0})
>>> events[0].kind, events[0].signal, events[0].change_point
('incident_start', 'label_rate', 500)
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Literal

from monitor.prequential import meets_threshold
from streaming.config import GuardSettings, Settings

__all__ = ["RATE_SIGNALS", "RUN_SIGNAL", "SignalEvent", "SignalWatch", "run_log10_probability"]

#: Rates of a block whose shift is a data-quality incident.
RATE_SIGNALS = ("label_rate", "pred_rate")
#: An improbable run of one label value (judged against the label rate's reference).
RUN_SIGNAL = "label_run"
_RECENT = 64  # blocks kept to locate a change point


@dataclasses.dataclass(frozen=True)
class SignalEvent:
    """Something the data did: an incident started or ended."""

    kind: Literal["incident_start", "incident_end"]
    signal: str  # label_rate | pred_rate | label_run
    position: int  # stream position of the sample that decided it
    value: float
    reference: float | None
    change_point: int | None = None  # where the shift began
    reason: str = ""


@dataclasses.dataclass
class _Incident:
    signal: str
    change_point: int
    normal_since: int | None = None


def run_log10_probability(sample: dict[str, float], label_rate: float | None) -> float | None:
    """log10 of the chance of the block's longest label run under ``label_rate`` (``None``: nothing to judge).

    >>> round(run_log10_probability({"label_run": 200, "label_run_value": 0}, 0.15), 1)
    -14.1
    >>> round(run_log10_probability({"label_run": 5, "label_run_value": 1}, 0.12), 1)
    -4.6
    """
    length = sample.get("label_run")
    if not length or label_rate is None or math.isnan(label_rate):
        return None
    rate = min(max(label_rate, 1e-3), 1 - 1e-3)  # a reference of exactly 0 or 1 would make any run impossible
    return float(length) * math.log10(rate if sample.get("label_run_value") else 1 - rate)


class SignalWatch:
    """Turns the rates of consecutive metric samples into :class:`SignalEvent` s."""

    def __init__(self, settings: GuardSettings | Settings) -> None:
        self.guard = guard = GuardSettings.of(settings)
        self.bounds = {
            "label_rate": guard.incident_label_rate_bound,
            "pred_rate": guard.incident_prediction_rate_bound,
        }
        blocks = max(guard.reference_half_life_events / guard.history_every_events, 1.0)
        self.alpha = 1 - 0.5 ** (1 / blocks)
        self.reference: dict[str, float | None] = dict.fromkeys(RATE_SIGNALS)
        self.reference_events = 0  # healthy events the reference has seen
        self.runs: dict[str, int] = dict.fromkeys(RATE_SIGNALS, 0)
        self.recent: collections.deque[tuple[int, dict[str, float]]] = collections.deque(maxlen=_RECENT)
        self.incident: _Incident | None = None
        self.last_position: int | None = None
        self.suspect_since: int | None = None  # start of the current run of blocks off by half a bound

    @property
    def calm(self) -> bool:
        """No incident open and the newest block not suspect: versions up to here may be confirmed."""
        return self.incident is None and self.suspect_since is None

    def calm_with(self, partial: dict[str, float]) -> bool:
        """Calm up to a point *inside* the current block: :attr:`calm`, and the block so far (``partial``: its
        signals, :meth:`BlockSignals.peek`) is not what makes a full block suspect — a rate off by half a bound, or
        a label run two-thirds of the way to improbable. Pure: a partial block can only withhold a confirmation.
        It never opens an incident, counts towards ``incident_patience`` or teaches the reference — a small block
        cannot prove harm; the full block and the monitor's rolling window judge the same events again.

        >>> from streaming.config import GuardSettings, Settings
        >>> watch = SignalWatch(Settings(monitor_min_samples=1, reference_min_events=100))
        >>> _ = watch.observe({"accuracy": 0.9, "samples": 500, "stream_position": 100, "label_rate": 0.15})
        >>> watch.calm_with({"label_rate": 0.2}), watch.calm_with({"label_rate": 0.9}), watch.calm_with({})
        (True, False, True)
        """
        if not self.calm:
            return False
        rates = {s: partial[s] for s in RATE_SIGNALS if s in partial and not math.isnan(partial[s])}
        return not any(self._off(s, v, 0.5) for s, v in rates.items()) and not self._improbable_run(partial, 2 / 3)

    def _ready(self) -> bool:
        return self.reference_events >= self.guard.reference_min_events

    def _off(self, signal: str, value: float | None, fraction: float) -> bool:
        reference = self.reference[signal]
        if value is None or reference is None or math.isnan(value):
            return False
        return abs(value - reference) > self.bounds[signal] * fraction

    def _improbable_run(self, sample: dict[str, float], fraction: float) -> bool:
        """The block's label run is less likely than the bound (``fraction`` 2/3: a suspect run, in log space)."""
        bound = self.guard.incident_label_run_probability
        log_p = run_log10_probability(sample, self.reference["label_rate"]) if bound else None
        return log_p is not None and log_p < math.log10(bound) * fraction

    def _run_start(self, sample: dict[str, float]) -> int:
        """Where the improbable run's shift began: its first event, or the start of the blocks whose rates were
        already off by half a bound, if earlier (a burst of coin flips makes a long run only after a while)."""
        start = int(sample.get("label_run_start", sample.get("stream_position", 0)))
        return start if self.suspect_since is None else min(start, self.suspect_since)

    def _change_point(self, signal: str) -> int:
        """Block start of the earliest block in the newest run of blocks off by at least half the bound."""
        start = self.recent[-1][0]
        for block_start, values in reversed(self.recent):
            if not self._off(signal, values.get(signal), 0.5):
                break
            start = block_start
        return start

    def open_incident(self, signal: str, change_point: int) -> None:
        """Watch an incident recorded elsewhere (in Redis, when the watch was restored from before it)."""
        self.incident = _Incident(signal, change_point)
        self.runs = dict.fromkeys(RATE_SIGNALS, 0)

    def accept_new_normal(self) -> None:
        """An operator closed the incident: the shifted rates are the new normal. The watch forgets the incident
        and its reference, and learns a new one (``reference_min_events``) before it judges again."""
        self.incident, self.suspect_since = None, None
        self.reference = dict.fromkeys(RATE_SIGNALS)
        self.reference_events = 0
        self.runs = dict.fromkeys(RATE_SIGNALS, 0)
        self.recent.clear()

    def forget(self, signal: str) -> None:
        """Another model serves now (a challenger was promoted): its prediction rate is its own. The reference of
        ``signal`` is learned again from the next block on (no incident on it until then).

        >>> watch = SignalWatch(Settings())
        >>> watch.reference["pred_rate"] = 0.2
        >>> watch.forget("pred_rate"); watch.reference["pred_rate"] is None
        True
        """
        self.reference[signal] = None
        self.runs[signal] = 0

    def observe(self, sample: dict[str, float], *, threshold: float | None = None) -> list[SignalEvent]:
        """One metric sample, in stream order; the events it causes. ``threshold``: the guarded metric's current
        threshold (relative mode), which says whether the model is healthy enough to learn references from."""
        position = int(sample.get("stream_position", 0))
        block_start = self.last_position if self.last_position is not None else position
        self.last_position = position
        rates = {s: sample[s] for s in RATE_SIGNALS if s in sample and not math.isnan(sample[s])}
        self.recent.append((block_start, rates))
        suspect = any(self._off(s, v, 0.5) for s, v in rates.items()) or self._improbable_run(sample, 2 / 3)
        self.suspect_since = (
            (self.suspect_since if self.suspect_since is not None else block_start) if suspect else None
        )
        events: list[SignalEvent] = []
        if self.incident is None and self._ready():
            events += self._detect(position, rates, sample)
        elif self.incident is not None:
            events += self._watch_recovery(position, block_start, rates, sample)
        # a block that is already off (or holds a suspect run) must not pull the reference along
        calm = not any(self.runs.values()) and not self._improbable_run(sample, 2 / 3)
        if self.incident is None and calm and meets_threshold(sample, self.guard, threshold):
            self._learn_reference(rates)
        return events

    def _detect(self, position: int, rates: dict[str, float], sample: dict[str, float]) -> list[SignalEvent]:
        for signal, value in rates.items():
            self.runs[signal] = self.runs[signal] + 1 if self._off(signal, value, 1.0) else 0
        if self._improbable_run(sample, 1.0):
            reference, change_point = self.reference["label_rate"], self._run_start(sample)
            length, value = int(sample["label_run"]), int(sample["label_run_value"])
            chance = 10 ** (run_log10_probability(sample, reference) or 0.0)
            self.open_incident(RUN_SIGNAL, change_point)
            reason = (
                f"{length} labels in a row were {value} (probability {chance:.1e} at the reference label rate "
                f"{reference:.3f}); the shift began at stream position {change_point}"
            )
            return [SignalEvent("incident_start", RUN_SIGNAL, position, length, reference, change_point, reason)]
        for signal in RATE_SIGNALS:  # the label rate first: it is the usual culprit
            if self.runs[signal] >= self.guard.incident_patience:
                reference = self.reference[signal]
                assert reference is not None
                value = rates[signal]
                change_point = self._change_point(signal)
                self.open_incident(signal, change_point)
                reason = (
                    f"{signal} {value:.3f} vs reference {reference:.3f} (bound {self.bounds[signal]}) for "
                    f"{self.guard.incident_patience} blocks; shift began at stream position {change_point}"
                )
                return [SignalEvent("incident_start", signal, position, value, reference, change_point, reason)]
        return []

    def _watch_recovery(
        self, position: int, block_start: int, rates: dict[str, float], sample: dict[str, float]
    ) -> list[SignalEvent]:
        incident = self.incident
        assert incident is not None
        if any(self._off(s, v, 1.0) for s, v in rates.items()) or self._improbable_run(sample, 1.0):
            incident.normal_since = None
            return []
        incident.normal_since = block_start if incident.normal_since is None else incident.normal_since
        if position - incident.normal_since < self.guard.incident_resume_after_events:
            return []
        self.incident = None
        rate = "label_rate" if incident.signal == RUN_SIGNAL else incident.signal
        value, reference = rates.get(rate, math.nan), self.reference.get(rate)
        reason = (
            f"labels and predictions back to normal ({incident.signal} incident) for "
            f"{position - incident.normal_since} events (incident began at stream position {incident.change_point})"
        )
        return [SignalEvent("incident_end", incident.signal, position, value, reference, incident.change_point, reason)]

    def _learn_reference(self, rates: dict[str, float]) -> None:
        for signal, value in rates.items():
            reference = self.reference[signal]
            self.reference[signal] = value if reference is None else reference + self.alpha * (value - reference)
        self.reference_events += self.guard.history_every_events

    # -- state as a plain document (kept in snapshots) -------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "reference": dict(self.reference),
            "reference_events": self.reference_events,
            "runs": dict(self.runs),
            "recent": [[start, rates] for start, rates in self.recent],
            "incident": dataclasses.asdict(self.incident) if self.incident else None,
            "last_position": self.last_position,
            "suspect_since": self.suspect_since,
        }

    def load(self, doc: dict[str, Any] | None) -> None:
        """Take a :meth:`dump` (``None``: a version written before the watch existed; start afresh)."""
        if not doc:
            return
        self.reference = {s: doc["reference"].get(s) for s in RATE_SIGNALS}
        self.reference_events = int(doc["reference_events"])
        self.runs = {s: int(doc["runs"].get(s, 0)) for s in RATE_SIGNALS}
        self.recent.clear()
        self.recent.extend((int(start), dict(rates)) for start, rates in doc["recent"])
        incident = doc.get("incident")
        self.incident = _Incident(**incident) if incident else None
        self.last_position = doc.get("last_position")
        self.suspect_since = doc.get("suspect_since")
