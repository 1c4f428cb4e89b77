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
* **incident start, quietly** — the **label-odds rule** (a risk-adjusted Bernoulli CUSUM, Steiner et al. 2000): the
  model's own prequential score ``p`` says how likely each label is to be positive; labels whose odds of being
  positive are ``R`` times (or ``1/R`` times) what the scores say (``R``: ``incident_odds_ratio``, 2) accumulate a
  log-likelihood ratio, per group — the stream (``all``) and each group of each guard segment
  (``LIVELEARN_GUARD_SEGMENTS``), a segment group against scores moved by its own calibration (its labels' long-run
  odds against its scores while healthy: :meth:`SignalWatch.odds_factors`) — block by block, ``S = max(0, S + block
  LLR)``; ``S`` above ``incident_odds_threshold`` (9) opens an incident (signal ``label_odds``), its change point
  the block where that ``S`` last left 0; it is over once that group's labels have shown they agree with the scores
  again (a CUSUM of the reverse evidence past a third of the threshold) and no alarm came for
  ``incident_resume_after_events``. It sees what the rates cannot: a labeller broken for one segment, half of the
  positives lost, one kind of session all labelled positive — the labels disagree with the scores — while the data's
  own drift, which moves the features as well, moves the scores with it (clean bundled data in order, 5 shuffles and
  cycled 3 times stays below 6; 10 shuffles below 7). It judges from ``reference_min_events`` healthy events on, and
  starts afresh when another model serves (a promotion) or an operator declares a new normal.
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
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from monitor.prequential import meets_threshold
from streaming.config import GuardSettings, Settings

__all__ = [
    "ODDS_SIGNAL",
    "RATE_SIGNALS",
    "RUN_SIGNAL",
    "SignalEvent",
    "SignalWatch",
    "group_metrics",
    "run_log10_probability",
]

#: Rates of a block whose shift is a data-quality incident.
RATE_SIGNALS = ("label_rate", "pred_rate")
#: An improbable run of one label value (judged against the label rate's reference).
RUN_SIGNAL = "label_run"
#: Labels whose odds, given the model's scores, moved (the label-odds CUSUM, per group).
ODDS_SIGNAL = "label_odds"
_RECENT = 64  # blocks kept to locate a change point
#: a group's calibration (:meth:`SignalWatch.odds_factors`) is kept within odds ×e^±3 (about ×20)
CALIBRATION_MAX_LOG = 3.0
#: the calibration's half-life, in reference half-lives (``reference_half_life_events``)
CALIBRATION_HALF_LIVES = 5.0
#: a segment group is judged against its calibration once that has seen this many of its labelled events while
#: healthy (before, against the model's scores as they are)
CALIBRATION_MIN_EVENTS = 300.0


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
    group: str | None = None  # the label-odds rule's group (``all`` or ``<feature>=<value>``)
    upward: bool | None = None  # ...and its direction (the labels more often positive than the scores say)

    @property
    def scope(self) -> str:
        """What the signal watched, as the incident record keeps it: ``""`` (the stream), ``<group>:up|down``."""
        return "" if self.group is None else f"{self.group}:{'up' if self.upward else 'down'}"


@dataclasses.dataclass
class _Incident:
    signal: str
    change_point: int
    normal_since: int | None = None
    group: str | None = None  # a label-odds incident's group and direction (None: any, as after a restore)
    upward: bool | None = None
    # a segment's label-odds incident: over the calm run so far, that segment's positives and summed scores, then the
    # rest of the stream's (its labels are judged against the others', not against the held model's own scores)
    window: list[float] | None = None


OddsSums = tuple[float, float, float, float, float]


def block_odds(sample: dict[str, float]) -> dict[str, OddsSums]:
    """The block's label-odds sums per group, ``(events, positives, up, down, scores)`` (``BlockSignals``'
    ``odds:*``)."""
    groups: dict[str, list[float]] = {}
    for key, value in sample.items():
        if key.startswith("odds:"):
            group, _, stat = key[5:].rpartition(":")
            sums = groups.setdefault(group, [0.0, 0.0, 0.0, 0.0, 0.0])
            index = _ODDS_STATS.get(stat)
            if index is not None:
                sums[index] = float(value)
    return {group: (n, pos, up, down, p) for group, (n, pos, up, down, p) in groups.items()}


_ODDS_STATS = {"n": 0, "pos": 1, "up": 2, "down": 3, "p": 4}
#: The label-odds group of every labelled event.
ALL = "all"


def _clamp(value: float, bound: float) -> float:
    return min(max(value, -bound), bound)


def group_metrics(sample: dict[str, float], group: str) -> dict[str, float] | None:
    """One group's block figures from a metric sample's label-odds sums (``None``: no labelled event of it in the
    block): ``n``, ``label_rate``, ``pred_rate``, ``mean_score``, ``accuracy``, ``precision`` and ``recall`` (NaN
    where undefined; the prediction counts exist from 2026-12-07 on — without them only the first three rates).

    >>> sample = {"odds:all:n": 10, "odds:all:pos": 4, "odds:all:p": 3.5, "odds:all:pred": 3, "odds:all:hit": 7}
    >>> f = group_metrics(sample, "all")  # TP 2, FP 1, FN 2, TN 5
    >>> f["label_rate"], f["pred_rate"], f["accuracy"], round(f["precision"], 3), f["recall"]
    (0.4, 0.3, 0.7, 0.667, 0.5)
    >>> group_metrics(sample, "VisitorType=Other") is None
    True
    """
    n = sample.get(f"odds:{group}:n")
    if not n:
        return None
    positives, scores = sample.get(f"odds:{group}:pos", 0.0), sample.get(f"odds:{group}:p", math.nan)
    figures = {"n": n, "label_rate": positives / n, "mean_score": scores / n}
    predicted, right = sample.get(f"odds:{group}:pred"), sample.get(f"odds:{group}:hit")
    if predicted is not None and right is not None:
        true_positives = (right - n + positives + predicted) / 2
        figures |= {
            "pred_rate": predicted / n,
            "accuracy": right / n,
            "precision": true_positives / predicted if predicted else math.nan,
            "recall": true_positives / positives if positives else math.nan,
        }
    return figures


def _rates(sample: Mapping[str, float]) -> dict[str, float]:
    """The block's watched rates it has a number for (a block without labels has NaN rates)."""
    return {s: sample[s] for s in RATE_SIGNALS if s in sample and not math.isnan(sample[s])}


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

    #: Whether an incident it finds holds learning until the data is back. ``False`` (a rebuild, which learns every
    #: event it reads and does not exclude): it reports the incident and takes its rates as the new normal at once.
    #: Not part of the state.
    holds = True

    def __init__(self, settings: GuardSettings | Settings) -> None:
        self.guard = guard = GuardSettings.of(settings)
        self.bounds = {
            "label_rate": guard.incident_label_rate_bound,
            "pred_rate": guard.incident_prediction_rate_bound,
        }
        blocks = max(guard.reference_half_life_events / guard.history_every_events, 1.0)
        self.alpha = 1 - 0.5 ** (1 / blocks)
        #: the calibration sums' decay per block: CALIBRATION_HALF_LIVES reference half-lives (a chronic disagreement
        #: is slow; a short memory would make a small group's calibration noisy)
        self.calibration_keep = 0.5 ** (1 / (blocks * CALIBRATION_HALF_LIVES))
        self.reference: dict[str, float | None] = dict.fromkeys(RATE_SIGNALS)
        self.reference_events = 0  # healthy events the reference has seen
        self.runs: dict[str, int] = dict.fromkeys(RATE_SIGNALS, 0)
        self.recent: collections.deque[tuple[int, dict[str, float]]] = collections.deque(maxlen=_RECENT)
        self.incident: _Incident | None = None
        self.last_position: int | None = None
        self.suspect_since: int | None = None  # start of the current run of blocks off by half a bound
        #: why the newest block is suspect (its versions wait), in words; ``None``: it is not (not in the state: the
        #: next block says it again)
        self.hold_reason: str | None = None
        # the label-odds CUSUMs: group -> [S up, block start where it left 0, S down, where it left 0]
        self.odds_threshold = guard.incident_odds_threshold
        self.log_ratio = math.log(guard.incident_odds_ratio)
        self.odds: dict[str, list[Any]] = {}
        self.odds_from: int | None = None  # stream position from which the CUSUMs run (None: once the reference is)
        #: after an operator declared a new normal: the CUSUMs rest until the model's scores agree with the labels
        #: over a block within half the shift they look for (the model is learning the shifted data; until it has,
        #: its scores are no yardstick for the labels)
        self.calibrating = False
        #: every segment group the CUSUMs have watched (kept across their restarts: the bound does not drop then)
        self.segment_groups: set[str] = set()
        #: each group's long-run agreement of labels with scores, learned from the blocks without an incident once the
        #: reference rates are ready: group -> [events, positives, summed scores] (decayed, CALIBRATION_HALF_LIVES),
        #: and the events seen in all (not decayed)
        self.calibration: dict[str, list[float]] = {}

    @property
    def calm(self) -> bool:
        """No incident open and the newest block not suspect: versions up to here may be confirmed."""
        return self.incident is None and self.suspect_since is None

    def calm_with(self, partial: dict[str, float], *, odds: bool = True) -> bool:
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
        rates = _rates(partial)
        if any(self._off(s, v, 0.5) for s, v in rates.items()) or self._improbable_run(partial, 2 / 3):
            return False
        return (
            not any(
                max(self._odds_after(group, sums)[::2]) > self.odds_bound(group, block_odds(partial)) / 2
                for group, sums in block_odds(partial).items()
            )
            if odds and self.odds_threshold and self._odds_ready(self.last_position)
            else True
        )

    def partial_reason(self, partial: dict[str, float], *, odds: bool = True) -> str | None:
        """Why :meth:`calm_with` finds the block so far not calm, in words (``None``: it is calm, or the watch itself
        is not: :attr:`hold_reason` says why)."""
        if not self.calm or self.calm_with(partial, odds=odds):
            return None
        return (  # (the watch is calm: no CUSUM past half its bound, so what is left is the partial block's odds)
            self._suspect_reason(_rates(partial), partial)
            or "the labels' odds in the block so far run past half their bound against the model's scores"
        )

    def _ready(self) -> bool:
        return self.reference_events >= self.guard.reference_min_events

    # -- the label-odds rule --------------------------------------------------------------------------
    def _odds_ready(self, block_start: int | None) -> bool:
        """Whether the CUSUMs judge the block that starts at ``block_start`` (the same answer for the block so far
        and for the full block)."""
        return (
            self._ready() and not self.calibrating and (self.odds_from is None or (block_start or 0) >= self.odds_from)
        )

    def odds_bound(self, group: str, more: Iterable[str] = ()) -> float:
        """The CUSUM bound of ``group``: ``incident_odds_threshold`` for the stream (``all``); for a segment, that
        plus ln of the number of segment groups watched (with ``more``, groups a block brings): a Bonferroni bound,
        so the segments together raise false alarms about as often as one CUSUM does, however many they are.

        >>> from streaming.config import Settings
        >>> watch = SignalWatch(Settings())
        >>> watch.segment_groups = {"Browser=1", "Browser=2"}
        >>> watch.odds_bound("all"), round(watch.odds_bound("Browser=1"), 3), round(watch.odds_bound("x", ["x"]), 3)
        (9.0, 9.693, 10.099)
        """
        if group == ALL:
            return self.odds_threshold
        segments = self.segment_groups | {g for g in more if g != ALL}
        return self.odds_threshold + math.log(max(len(segments), 1))

    def _odds_after(self, group: str, sums: OddsSums) -> tuple[float, Any, float, Any]:
        """Group ``group``'s CUSUMs after a block with ``sums``: ``(S up, where it left 0, S down, where)``."""
        _, positives, up, down, _ = sums
        s_up, up_since, s_down, down_since = self.odds.get(group) or (0.0, None, 0.0, None)
        s_up = max(0.0, s_up + positives * self.log_ratio - up)
        s_down = max(0.0, s_down - positives * self.log_ratio - down)
        return s_up, up_since, s_down, down_since

    def _update_odds(self, since: int, sample: dict[str, float]) -> None:
        """The block's sums into the CUSUMs; one that leaves 0 now notes ``since`` as where the shift began (the start
        of the block before this one: a shift that began inside that block may have left it at 0)."""
        for group, sums in block_odds(sample).items():
            if group != ALL:
                self.segment_groups.add(group)
            s_up, up_since, s_down, down_since = self._odds_after(group, sums)
            up_since = None if s_up == 0.0 else since if up_since is None else up_since
            down_since = None if s_down == 0.0 else since if down_since is None else down_since
            self.odds[group] = [s_up, up_since, s_down, down_since]

    def _odds_alarm(
        self, fraction: float, only: tuple[str | None, bool | None] = (None, None)
    ) -> tuple[str, bool, float, int] | None:
        """The group whose CUSUM is highest above ``fraction`` of the threshold: ``(group, up?, S, change point)``
        (``only``: that group and direction; ``None``: any)."""
        if not self.odds_threshold:
            return None
        worst: tuple[str, bool, float, int] | None = None
        for group, (s_up, up_since, s_down, down_since) in self.odds.items():
            if only[0] is not None and group != only[0]:
                continue
            for upward, s, since in ((True, s_up, up_since), (False, s_down, down_since)):
                if only[1] is not None and upward != only[1]:
                    continue
                if s > self.odds_bound(group) * fraction and (worst is None or s > worst[2]):
                    worst = (group, upward, s, int(since if since is not None else self.last_position or 0))
        return worst

    def restart_odds(self, position: int | None = None, *, warm_up: bool = True) -> None:
        """Start the label-odds CUSUMs afresh (another model's scores serve now: a promoted challenger, or an older
        version after a rollback), judging again after ``reference_min_events`` more events from ``position``
        (``None``: the last sample's) — or at once (``warm_up=False``: the same kind of model, only older)."""
        self.odds = {}
        if warm_up:
            at = self.last_position if position is None else position
            self.odds_from = None if at is None else at + self.guard.reference_min_events

    def _learn_calibration(self, sample: dict[str, float]) -> None:
        """The block's labels and scores into each group's calibration sums, which decay per block. A block the odds
        rule finds suspect is learned too: the memory is long (``CALIBRATION_HALF_LIVES``), so the few blocks before
        a shift's alarm barely move it, while a calibration held still whenever its CUSUM rose would keep a value that
        noise had made wrong and push its own CUSUM on (measured: alarms on clean data in half the runs)."""
        keep = self.calibration_keep
        for sums in self.calibration.values():
            sums[0] *= keep
            sums[1] *= keep
            sums[2] *= keep
        for group, (n, positives, _up, _down, scores) in block_odds(sample).items():
            if n > 0 and 0.0 <= positives <= n and 0.0 <= scores <= n:
                sums = self.calibration.setdefault(group, [0.0, 0.0, 0.0, 0.0])
                sums[0] += n
                sums[1] += positives
                sums[2] += scores
                sums[3] += n  # (not decayed: how many it has seen in all)

    def _log_factor(self, group: str) -> float:
        """Group ``group``'s calibration in log odds: how far its labels' log odds ran above its scores' over the
        calibration sums (½ added to each count), kept within ±``CALIBRATION_MAX_LOG``; 0 (the scores as they are)
        until it has seen ``CALIBRATION_MIN_EVENTS`` of the group's labelled events while healthy — a young estimate
        is noisy, and one shrunk towards 0 would bias a chronically mis-scored group's CUSUM towards an alarm."""
        sums = self.calibration.get(group)
        if sums is None or sums[3] < CALIBRATION_MIN_EVENTS:
            return 0.0
        n, positives, scores, _seen = sums
        labels = math.log((positives + 0.5) / (max(n - positives, 0.0) + 0.5))
        said = math.log((scores + 0.5) / (max(n - scores, 0.0) + 0.5))
        return _clamp(labels - said, CALIBRATION_MAX_LOG)

    def odds_factors(self) -> dict[str, float]:
        """Each segment group's calibration (:attr:`BlockSignals.odds_factors`): the factor by which its labels' odds
        have run above what the model's scores say, while healthy. The stream's (``all``) is 1 by definition: its
        CUSUMs judge the labels against the scores as they are.

        >>> watch = SignalWatch(Settings())
        >>> watch.calibration = {"all": [2000.0, 300.0, 300.0, 5e3], "PageValues>0": [400.0, 200.0, 120.0, 1e3]}
        >>> {g: round(c, 2) for g, c in watch.odds_factors().items()}  # labels 1:1, scores 3:7
        {'PageValues>0': 2.33}
        """
        return {g: math.exp(self._log_factor(g)) for g in self.calibration if g != ALL}

    def odds_fields(self) -> dict[str, float]:
        """The highest CUSUM each way, for the metric sample (``label_odds_up``, ``label_odds_down``)."""
        ups = [s[0] for s in self.odds.values()]
        downs = [s[2] for s in self.odds.values()]
        return {"label_odds_up": max(ups, default=0.0), "label_odds_down": max(downs, default=0.0)}

    def _suspect_reason(self, rates: dict[str, float], sample: dict[str, float]) -> str | None:
        """What makes a block suspect, in words (the first of: a rate off by half its bound, a label run two-thirds
        of the way to improbable, a group's CUSUM past half its bound); ``None``: none of them."""
        for signal, value in rates.items():
            if self._off(signal, value, 0.5):
                reference, bound = self.reference[signal], self.bounds[signal]
                return (
                    f"the block's {signal} {value:.3f} is off its reference {reference:.3f} by more than half its "
                    f"bound ({bound / 2:.3f})"
                )
        if self._improbable_run(sample, 2 / 3):
            length, value = int(sample["label_run"]), int(sample["label_run_value"])
            log_p = run_log10_probability(sample, self.reference["label_rate"]) or 0.0
            return (
                f"{length} labels in a row were {value} (probability {10**log_p:.1e}: two-thirds of the way to an "
                "incident)"
            )
        alarm = self._odds_alarm(0.5)
        if alarm is not None:
            group, upward, s, _ = alarm
            return (
                f"the labels of {group} run {'above' if upward else 'below'} what the model's scores say "
                f"(CUSUM {s:.2f}, past half its bound {self.odds_bound(group) / 2:.2f})"
            )
        return None

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

    def open_incident(self, signal: str, change_point: int, *, scope: str = "") -> None:
        """Watch an incident recorded elsewhere (in Redis, when the watch was restored from before it); ``scope``:
        :attr:`SignalEvent.scope` (a label-odds incident's group and direction)."""
        group, _, direction = scope.rpartition(":") if scope else (None, "", None)
        self.incident = _Incident(
            signal, change_point, group=group or None, upward=direction == "up" if group else None
        )
        self.runs = dict.fromkeys(RATE_SIGNALS, 0)
        self.odds = {}  # the incident's recovery is judged by fresh CUSUMs

    def accept_new_normal(self) -> None:
        """An operator closed the incident: the shifted rates are the new normal. The watch forgets the incident
        and its reference, and learns a new one (``reference_min_events``) before it judges again."""
        self.incident, self.suspect_since = None, None
        self.reference = dict.fromkeys(RATE_SIGNALS)
        self.reference_events = 0
        self.runs = dict.fromkeys(RATE_SIGNALS, 0)
        self.recent.clear()
        self.odds, self.odds_from, self.calibrating = {}, None, True
        self.calibration = {}

    def _calibrated(self, sample: dict[str, float]) -> bool:
        """The block's labels agree with the model's scores over the stream: the odds of its labels within a factor
        √R of the odds its scores give (half the shift the CUSUMs look for; ½ added to each count).

        >>> watch = SignalWatch(Settings())  # R = 2
        >>> watch._calibrated({"odds:all:n": 100, "odds:all:pos": 100, "odds:all:p": 95.0})  # all bought; 0.95 said
        False
        >>> watch._calibrated({"odds:all:n": 100, "odds:all:pos": 17, "odds:all:p": 15.0})
        True
        """
        sums = block_odds(sample).get(ALL)
        if sums is None or not sums[0]:
            return False
        n, positives, _up, _down, scores = sums
        labels = math.log((positives + 0.5) / (n - positives + 0.5))
        said = math.log((scores + 0.5) / (n - scores + 0.5))
        return abs(labels - said) <= self.log_ratio / 2

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

    def observe(
        self, sample: dict[str, float], *, threshold: float | None = None, odds: bool = True
    ) -> list[SignalEvent]:
        """One metric sample, in stream order; the events it causes. ``threshold``: the guarded metric's current
        threshold (relative mode), which says whether the model is healthy enough to learn references from;
        ``odds``: whether the model's scores are probabilities the label-odds rule may judge by (a logistic
        regression's are; a passive-aggressive classifier's are not: the rule then rests)."""
        position = int(sample.get("stream_position", 0))
        block_start = self.last_position if self.last_position is not None else position
        self.last_position = position
        rates = _rates(sample)
        self.recent.append((block_start, rates))
        if self.calibrating and self.incident is None and self._calibrated(sample):
            self.calibrating = False  # the model has learned the new normal: the CUSUMs judge from the next block
            self.odds, self.odds_from = {}, position
        if not odds:
            self.odds = {}
        elif self.incident is None and self.odds_threshold and self._odds_ready(block_start):
            # (while an incident is open the model is held: its scores grow stale, and the CUSUMs start afresh at
            # its end; the shift that began may also have begun in the block before: a block start earlier)
            self._update_odds(self.recent[-2][0] if len(self.recent) > 1 else block_start, sample)
        suspect = (
            any(self._off(s, v, 0.5) for s, v in rates.items())
            or self._improbable_run(sample, 2 / 3)
            or self._odds_alarm(0.5) is not None
        )
        self.suspect_since = (
            (self.suspect_since if self.suspect_since is not None else block_start) if suspect else None
        )
        self.hold_reason = (self._suspect_reason(rates, sample) or "the block is suspect") if suspect else None
        events: list[SignalEvent] = []
        if self.incident is None and self._ready():
            events += self._detect(position, rates, sample)
        elif self.incident is not None:
            events += self._watch_recovery(position, block_start, rates, sample)
        # a block that is already off (or holds a suspect run) must not pull the reference along
        rates_calm = not any(self.runs.values()) and not self._improbable_run(sample, 2 / 3)
        if self.incident is None and rates_calm and meets_threshold(sample, self.guard, threshold):
            if self._odds_alarm(0.5) is None:
                self._learn_reference(rates)
            # the calibration learns once the reference rates are (an untrained model's agreement with the labels is
            # not its own), also through a promotion's warm-up (the new champion's) and a new normal's calibrating
            if self._ready():
                self._learn_calibration(sample)
        if self.incident is not None and not self.holds:
            self.accept_new_normal()
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
        alarm = self._odds_alarm(1.0)
        if alarm is not None:
            group, upward, s, change_point = alarm
            bound = self.odds_bound(group)  # (before the incident: opening it starts the CUSUMs afresh)
            self.open_incident(ODDS_SIGNAL, change_point, scope=f"{group}:{'up' if upward else 'down'}")
            ratio = math.exp(self.log_ratio if upward else -self.log_ratio)
            reason = (
                f"labels of {group} are {'more' if upward else 'less'} often positive than the model's scores say: "
                f"the odds ×{ratio:g} CUSUM is {s:.1f} (threshold {bound:.3g}); the shift began at "
                f"stream position {change_point}"
            )
            return [SignalEvent("incident_start", ODDS_SIGNAL, position, s, None, change_point, reason, group, upward)]
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
        # While an incident is open the model is held, so its scores grow stale as the data drifts on: the label-odds
        # CUSUMs would judge the model's age, not the labels. The rates' rule closes every incident; a segment's
        # label-odds incident also needs that segment's labels to agree with the rest of the stream's again, both
        # measured against the same held scores (over the calm run, "its odds moved by R the incident's way" is less
        # likely than "as the rest's": _agrees) — a stream-wide one cannot be told from the drift that way, and the
        # CUSUM that restarts when learning goes on catches it again if it was not over.
        if any(self._off(s, v, 1.0) for s, v in rates.items()) or self._improbable_run(sample, 1.0):
            incident.normal_since, incident.window = None, None
            return []
        segment = incident.signal == ODDS_SIGNAL and incident.group not in (None, ALL)
        if segment:
            groups = block_odds(sample)
            own, every = groups.get(str(incident.group)), groups.get(ALL)
            if own is not None and every is not None:
                window = incident.window or [0.0, 0.0, 0.0, 0.0]
                incident.window = [window[0] + own[1], window[1] + own[4], window[2] + every[1] - own[1],
                                   window[3] + every[4] - own[4]]  # fmt: skip
        incident.normal_since = block_start if incident.normal_since is None else incident.normal_since
        if position - incident.normal_since < self.guard.incident_resume_after_events:
            return []
        if segment and not self._agrees(incident.window, incident.upward, incident.group):
            incident.normal_since, incident.window = None, None  # not yet: judge the next run afresh
            return []
        self.incident = None
        # learning goes on from the model held since the change point: it has the data's drift since to catch up
        # with, which its scores would show as labels off them — the CUSUMs judge again after reference_min_events
        self.restart_odds(position)
        rate = "label_rate" if incident.signal == RUN_SIGNAL else incident.signal
        value, reference = rates.get(rate, math.nan), self.reference.get(rate)
        reason = (
            f"labels and predictions back to normal ({incident.signal} incident) for "
            f"{position - incident.normal_since} events (incident began at stream position {incident.change_point})"
        )
        return [SignalEvent("incident_end", incident.signal, position, value, reference, incident.change_point, reason)]

    def _agrees(self, window: list[float] | None, upward: bool | None, group: str | None = None) -> bool:
        """A segment's labels agree with the rest of the stream's again: over the calm run, the likelihood ratio of
        "its odds are ``R`` (``upward``; else ``1/R``; ``None``: either) times the rest's" against "the same as the
        rest's" favours the latter (its positives a Poisson count with mean its summed scores times the rest's
        positives per summed score, times how the two compared while healthy: :meth:`_relative_rate`). Too little of
        either to tell: it does."""
        if window is None:
            return True
        own_positives, own_scores, other_positives, other_scores = window
        if own_scores < 1.0 or other_scores < 1.0 or other_positives < 1.0:
            return True
        expected = own_scores * other_positives / other_scores * self._relative_rate(group)
        directions = (True, False) if upward is None else (upward,)
        for up in directions:
            log_ratio = self.log_ratio if up else -self.log_ratio
            if own_positives * log_ratio - expected * (math.exp(log_ratio) - 1.0) >= 0.0:
                return False
        return True

    def _relative_rate(self, group: str | None) -> float:
        """Positives per summed score of ``group`` over the rest of the stream's, in the calibration sums (1 when
        either has too little, as :meth:`_log_factor`): a group the model chronically scores low agrees with
        the rest when it runs that much above them, as it did while healthy."""
        own, every = self.calibration.get(group or ""), self.calibration.get(ALL)
        if own is None or every is None or own[3] < CALIBRATION_MIN_EVENTS:
            return 1.0
        rest_positives, rest_scores = every[1] - own[1], every[2] - own[2]
        if own[2] < 1.0 or rest_scores < 1.0 or rest_positives < 1.0:
            return 1.0
        ratio = ((own[1] + 0.5) / (own[2] + 0.5)) / ((rest_positives + 0.5) / (rest_scores + 0.5))
        return math.exp(_clamp(math.log(ratio), CALIBRATION_MAX_LOG))

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
            "odds": {group: list(state) for group, state in self.odds.items()},
            "odds_from": self.odds_from,
            **({"calibrating": True} if self.calibrating else {}),
            **({"segment_groups": sorted(self.segment_groups)} if self.segment_groups else {}),
            **({"calibration": {g: list(v) for g, v in self.calibration.items()}} if self.calibration else {}),
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
        self.odds = {str(g): [float(s[0]), s[1], float(s[2]), s[3]] for g, s in (doc.get("odds") or {}).items()}
        self.odds_from = doc.get("odds_from")  # (from 2026-12-07: a version before starts them afresh)
        self.calibrating = bool(doc.get("calibrating", False))
        self.segment_groups = set(doc.get("segment_groups") or ()) | {g for g in self.odds if g != ALL}
        self.calibration = {  # (from 2026-12-07: a version before learns it afresh; sums that cannot be, dropped)
            str(g): sums
            for g, v in (doc.get("calibration") or {}).items()
            if len(v) == 4
            for sums in [[float(x) for x in v]]
            if all(math.isfinite(x) and x >= 0.0 for x in sums) and sums[1] <= sums[0] and sums[2] <= sums[0]
        }
