"""Calibrating the guard on clean data: what its rules would do to a stream that needed no rollback (pure, no I/O).

``livelearn calibrate`` replays clean labelled events offline (:func:`streaming.learner.offline.replay_samples`)
and hands the metric samples here. Only *judged* samples count: those whose rolling window holds at least
``monitor_min_samples``, as for the judge.

* :func:`distribution` — the guarded rolling metric over the judged samples, and where its worst value was;
* :func:`suggest_threshold` — the rule: the worst value minus ``margin`` (0.02), floored to 0.01 (for
  ``log_loss``, lower is better: the worst value plus the margin, ceiled). Every judged sample then meets it,
  so clean data like this confirms no breach;
* :func:`count_breaches` — the confirmed breaches (rollbacks) the :class:`~monitor.judge.Judge` orders at a
  threshold: ``monitor_patience`` breaching samples in a row (during an incident only reported). Offline nothing
  is rolled back, so cooldowns do not apply: an upper bound of the live count;
* :func:`relative_view` and :func:`signal_view` — the relative threshold's healthy level and the data signals.

>>> from streaming.config import GuardSettings, Settings
>>> settings = Settings(monitor_min_samples=100, monitor_patience=2)
>>> samples = [{"stream_position": 100 * i, "samples": 100, "accuracy": a} for i, a in enumerate([.9, .84, .83, .9])]
>>> distribution(samples, settings).worst, suggest_threshold(0.83, "accuracy")
(0.83, 0.81)
>>> count_breaches(samples, settings, 0.85).confirmed, count_breaches(samples, settings, 0.81).confirmed
(1, 0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence

from monitor.judge import Action, Decision, Judge
from monitor.prequential import LOWER_IS_BETTER, Threshold
from monitor.signals import ODDS_SIGNAL, RATE_SIGNALS, RUN_SIGNAL, SignalWatch, run_log10_probability
from streaming.config import GuardSettings, Settings

__all__ = [
    "MARGIN",
    "Breaches",
    "Distribution",
    "RelativeView",
    "RuleView",
    "SignalStats",
    "count_breaches",
    "distribution",
    "judge_samples",
    "relative_view",
    "rule_view",
    "signal_view",
    "suggest_threshold",
]

Sample = dict[str, float]
#: Safety margin between the worst clean value and a suggested threshold (or drop, or bound).
MARGIN = 0.02


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly between order statistics.

    >>> _percentile([4, 1, 3, 2], 50), _percentile([4, 1, 3, 2], 0), _percentile([1.0], 99)
    (2.5, 1.0, 1.0)
    """
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _step_away(value: float, lower_is_better: bool, step: float = 0.01) -> float:
    """``value`` rounded to ``step`` in the lenient direction: down, or up when lower is better.

    >>> _step_away(0.809, False), _step_away(0.3712, True), _step_away(0.81, False)
    (0.8, 0.38, 0.81)
    """
    steps = round(value / step, 6)  # 0.81 / 0.01 is 81.00000000000001: not a step more
    return round((math.ceil(steps) if lower_is_better else math.floor(steps)) * step, 10)


def suggest_threshold(worst: float, metric: str, margin: float = MARGIN) -> float:
    """The suggested absolute threshold: ``worst - margin`` floored to 0.01, not below 0 (``log_loss``: mirrored).

    >>> suggest_threshold(0.829, "accuracy"), suggest_threshold(0.31, "log_loss"), suggest_threshold(0.01, "f1")
    (0.8, 0.33, 0.0)
    """
    if metric in LOWER_IS_BETTER:
        return _step_away(worst + margin, True)
    return max(0.0, _step_away(worst - margin, False))


@dataclasses.dataclass(frozen=True)
class Distribution:
    """The guarded rolling metric over the judged samples (``undefined``: judged samples where it was NaN)."""

    metric: str
    count: int
    mean: float
    percentiles: dict[str, float]  # min, p1, p5, p50, p95, p99, max
    worst: float  # the minimum, or the maximum when lower is better
    worst_position: int  # stream position of the sample that held it
    undefined: int = 0


def distribution(samples: Sequence[Sample], settings: GuardSettings | Settings) -> Distribution | None:
    """The distribution of ``monitor_metric`` over the judged samples; ``None`` when no sample was judged."""
    guard = GuardSettings.of(settings)
    metric = guard.metric
    judged = [s for s in samples if s.get("samples", 0) >= guard.min_samples and metric in s]
    defined = [s for s in judged if not math.isnan(s[metric])]
    if not defined:
        return None
    values = [s[metric] for s in defined]
    pick = max if metric in LOWER_IS_BETTER else min
    worst = pick(defined, key=lambda s: s[metric])
    percentiles = {f"p{q}": _percentile(values, q) for q in (1, 5, 50, 95, 99)}
    percentiles = {"min": min(values), **percentiles, "max": max(values)}
    mean, position = sum(values) / len(values), int(worst.get("stream_position", 0))
    return Distribution(metric, len(values), mean, percentiles, worst[metric], position, len(judged) - len(defined))


@dataclasses.dataclass(frozen=True)
class Breaches:
    """What the judge would do over the samples at one threshold (``None``: the relative one, as configured)."""

    threshold: float | None
    breaching: int  # judged samples in breach
    confirmed: int  # confirmed breaches: each one a rollback
    suppressed: int = 0  # confirmed during a data-quality incident: only reported
    first_position: int | None = None  # where the first rollback would have been decided


def judge_samples(samples: Iterable[Sample], *, judge: Judge, rule: Threshold) -> Iterator[tuple[Sample, Decision]]:
    """Each sample judged as the monitor judges it (``monitor.guard``): ``rule`` (the threshold and the further
    rules) fed the sample first, then ``judge`` decides with the effective threshold, the incident the learner saw,
    the further rules it breaks and their shortfalls — offline, so nothing rolls back, nothing is frozen. Yields
    ``(sample, decision)`` for the samples the monitor judges (none while the relative threshold has no level yet),
    each before the next sample is fed: the caller keeps ``judge`` and ``rule`` (to reset the judge, read the rules
    as they judged that sample).

    >>> from streaming.config import Settings
    >>> s = Settings(monitor_patience=1, monitor_min_samples=10, monitor_also=[])
    >>> samples = [{"accuracy": a, "samples": 100, "stream_position": 100 * i} for i, a in enumerate([0.9, 0.7], 1)]
    >>> [(x["stream_position"], d.action.name) for x, d in judge_samples(samples, judge=Judge(s), rule=Threshold(s))]
    [(100, 'NONE'), (200, 'ROLLBACK')]
    """
    for sample in samples:
        rule.observe(sample)
        limit = rule.value()
        if limit is None:  # the relative threshold has no healthy level yet: the monitor does not judge
            continue
        position = int(sample.get("stream_position", 0))
        yield sample, judge.decide(
            sample, position=position, now=0.0, rollbacks=[], frozen=False, threshold=limit,
            incident=bool(sample.get("incident")), also=rule.breaches(sample), shortfalls=rule.shortfalls(sample),
        )  # fmt: skip


def count_breaches(
    samples: Sequence[Sample], settings: GuardSettings | Settings, threshold: float | None = None
) -> Breaches:
    """Feed the samples to a :class:`~monitor.judge.Judge` as the monitor does; count its verdicts.

    ``threshold``: an absolute threshold to try; ``None``: the configured rule (in relative mode the
    :class:`~monitor.prequential.Threshold` is fed each sample first, as the monitor does).

    >>> from streaming.config import GuardSettings, Settings
    >>> s = Settings(monitor_metric="log_loss", monitor_threshold=0.4, monitor_patience=2, monitor_min_samples=10)
    >>> losses = [(0.5, 100), (0.5, 5), (0.5, 100), (0.5, 100), (0.5, 100), (0.2, 100)]
    >>> count_breaches([{"log_loss": v, "samples": n} for v, n in losses], s)
    Breaches(threshold=0.4, breaching=4, confirmed=1, suppressed=0, first_position=0)
    """
    guard = GuardSettings.of(settings)
    if threshold is not None:
        guard = guard.model_copy(update={"threshold_mode": "absolute", "threshold": threshold})
    rule = Threshold(guard)
    breaching = confirmed = suppressed = 0
    first: int | None = None
    for sample, decision in judge_samples(samples, judge=Judge(guard), rule=rule):
        breaching += decision.action in (Action.WAIT, Action.ROLLBACK, Action.COOLDOWN)
        suppressed += decision.action is Action.COOLDOWN and decision.notify
        if decision.action is Action.ROLLBACK:
            confirmed += 1
            first = int(sample.get("stream_position", 0)) if first is None else first
    return Breaches(threshold if threshold is not None else rule.value(), breaching, confirmed, suppressed, first)


@dataclasses.dataclass(frozen=True)
class RelativeView:
    """Relative mode on these samples: the healthy level learned, the largest drop below it, a drop to use."""

    reference: float | None  # the healthy level at the end (None: never learned)
    largest_drop: float | None  # below the level (above, when lower is better), over the judged samples
    drop_position: int | None
    configured_drop: float
    confirmed: int  # rollbacks at the configured drop
    suggested_drop: float | None  # the largest drop plus the margin, ceiled to 0.01, checked: no rollback


def _drops(samples: Sequence[Sample], guard: GuardSettings) -> tuple[Threshold, list[tuple[float, int]]]:
    rule, sign = Threshold(guard), (-1.0 if guard.metric in LOWER_IS_BETTER else 1.0)
    drops = []
    for sample in samples:
        rule.observe(sample)  # the monitor's order: feed the sample, then judge it against the level
        value = sample.get(guard.metric)
        if rule.value() is None or rule.reference is None or value is None or math.isnan(value):
            continue
        if sample.get("samples", 0) >= guard.min_samples:
            drops.append((sign * (rule.reference - value), int(sample.get("stream_position", 0))))
    return rule, drops


def _rollbacks_at_drop(samples: Sequence[Sample], guard: GuardSettings, drop: float) -> int:
    return count_breaches(samples, guard.model_copy(update={"relative_drop": drop})).confirmed


def relative_view(samples: Sequence[Sample], settings: GuardSettings | Settings) -> RelativeView:
    """What ``monitor_threshold_mode="relative"`` with the configured drop would learn and do on the samples."""
    guard = GuardSettings.of(settings).model_copy(update={"threshold_mode": "relative"})
    rule, drops = _drops(samples, guard)
    confirmed = count_breaches(samples, guard).confirmed
    if not drops:
        return RelativeView(rule.reference, None, None, guard.relative_drop, confirmed, None)
    largest, position = max(drops)
    suggested = min(1.0, _step_away(max(largest, 0.0) + MARGIN, True))
    while suggested < 1.0 and _rollbacks_at_drop(samples, guard, suggested):
        suggested = round(suggested + 0.01, 10)  # a larger drop lets the level learn lower samples: check it
    return RelativeView(rule.reference, largest, position, guard.relative_drop, confirmed, suggested)


@dataclasses.dataclass(frozen=True)
class RuleView:
    """One further guarded metric (``monitor_also``) on these samples: its worst value against its bound."""

    rule: str  # as written: recall:drop=0.5
    level: float | None  # a relative rule's healthy level at the end (None: absolute, or never learned)
    worst: float | None  # the worst value judged (its bound known), and where
    worst_position: int | None
    largest_drop: float | None  # a relative rule: the largest fall below the level, as a share of it
    breaching: int  # judged samples in breach of this rule
    suggested: float | None  # a relative rule: the largest drop plus the margin, ceiled to 0.01 (below 1)


def rule_view(samples: Sequence[Sample], settings: GuardSettings | Settings) -> list[RuleView]:
    """Each further rule of ``monitor_also`` on the samples, fed as the monitor feeds them (sample, then judge).

    >>> from streaming.config import Settings
    >>> s = Settings(monitor_also=["recall:drop=0.5"], monitor_min_samples=10, reference_min_events=100)
    >>> samples = [{"stream_position": 100 * i, "samples": 100, "accuracy": .9, "recall": r}
    ...            for i, r in enumerate([.4, .4, .3, .15])]
    >>> view = rule_view(samples, s)[0]
    >>> view.rule, round(view.worst, 2), round(view.largest_drop, 3), view.breaching, view.suggested
    ('recall:drop=0.5', 0.15, 0.622, 1, 0.65)
    """
    guard = GuardSettings.of(settings)
    rule, judged = Threshold(guard), {r.metric: list[tuple[float, float, int]]() for r in guard.rules}
    breaching = dict.fromkeys(judged, 0)
    for sample in samples:
        rule.observe(sample)
        if sample.get("samples", 0) < guard.min_samples:
            continue
        limits, at = rule.limits(), int(sample.get("stream_position", 0))
        for r in guard.rules:
            value = sample.get(r.metric)
            if r.metric not in limits or value is None or math.isnan(value):
                continue
            level = rule.levels[r.metric][0] if r.relative else None
            drop = (value - level if r.lower_is_better else level - value) / level if level else 0.0
            judged[r.metric].append((drop, value, at))
            breaching[r.metric] += not r.healthy(value, limits[r.metric])
    views = []
    for r in guard.rules:
        level = rule.levels[r.metric][0] if r.relative else None
        if not judged[r.metric]:
            views.append(RuleView(r.describe(), level, None, None, None, 0, None))
            continue
        pick = max if r.lower_is_better else min
        _, worst, at = pick(judged[r.metric], key=lambda item: item[1])
        largest = max(drop for drop, _, _ in judged[r.metric]) if r.relative else None
        suggested = None if largest is None else min(0.99, _step_away(max(largest, 0.0) + MARGIN, True))
        views.append(RuleView(r.describe(), level, worst, at, largest, breaching[r.metric], suggested))
    return views


@dataclasses.dataclass(frozen=True)
class SignalStats:
    """One data signal's block rates, their largest deviation from the watch's reference, and its bound."""

    signal: str
    minimum: float
    maximum: float
    largest_deviation: float | None  # over the blocks the watch judged (its reference known)
    position: int | None
    bound: float
    incidents: int  # incidents the watch opened on this signal


def signal_view(samples: Sequence[Sample], settings: GuardSettings | Settings) -> list[SignalStats]:
    """Replay the learner's :class:`~monitor.signals.SignalWatch` over the samples (the learner's order: the
    threshold known before the sample) and measure each rate against the reference it is judged by.

    >>> from streaming.config import GuardSettings, Settings
    >>> blocks = [{"stream_position": 100 * i, "label_rate": r, "pred_rate": 0.1} for i, r in enumerate([.1, .2])]
    >>> label = signal_view(blocks, Settings())[0]
    >>> label.minimum, label.maximum, label.largest_deviation, label.bound, label.incidents
    (0.1, 0.2, None, 0.25, 0)
    """
    guard = GuardSettings.of(settings)
    watch, rule = SignalWatch(guard), Threshold(guard)
    deviations: dict[str, list[tuple[float, int]]] = {s: [] for s in (*RATE_SIGNALS, RUN_SIGNAL, ODDS_SIGNAL)}
    incidents = dict.fromkeys((*RATE_SIGNALS, RUN_SIGNAL, ODDS_SIGNAL), 0)
    cusums: list[float] = []
    for sample in samples:
        threshold = rule.value()
        rule.observe(sample)
        at = int(sample.get("stream_position", 0))
        if watch.reference_events >= guard.reference_min_events:
            for signal, reference in watch.reference.items():
                value = sample.get(signal)
                if reference is not None and value is not None and not math.isnan(value):
                    deviations[signal].append((abs(value - reference), at))
            log_p = run_log10_probability(sample, watch.reference["label_rate"])
            if log_p is not None:
                deviations[RUN_SIGNAL].append((-log_p, at))
        for event in watch.observe(sample, threshold=threshold):
            incidents[event.signal] += event.kind == "incident_start"
        if watch.odds:  # the label-odds CUSUMs after this block (the highest of every group, either way)
            highest = max(max(s[0], s[2]) for s in watch.odds.values())
            cusums.append(highest)
            deviations[ODDS_SIGNAL].append((highest, at))
    stats = []
    for signal in RATE_SIGNALS:
        values = [s[signal] for s in samples if signal in s and not math.isnan(s[signal])]
        low, high = (min(values), max(values)) if values else (math.nan, math.nan)
        largest, position = max(deviations[signal]) if deviations[signal] else (None, None)
        stats.append(SignalStats(signal, low, high, largest, position, watch.bounds[signal], incidents[signal]))
    runs = [float(s[RUN_SIGNAL]) for s in samples if s.get(RUN_SIGNAL)]  # deviation and bound in -log10 probability
    most, where = max(deviations[RUN_SIGNAL]) if deviations[RUN_SIGNAL] else (None, None)
    chance = guard.incident_label_run_probability
    bound = -math.log10(chance) if chance else math.inf  # 0: off
    low, high = (min(runs), max(runs)) if runs else (math.nan, math.nan)
    stats.append(SignalStats(RUN_SIGNAL, low, high, most, where, bound, incidents[RUN_SIGNAL]))
    most, where = max(deviations[ODDS_SIGNAL]) if deviations[ODDS_SIGNAL] else (None, None)
    low, high = (min(cusums), max(cusums)) if cusums else (math.nan, math.nan)
    odds_bound = guard.incident_odds_threshold or math.inf  # 0: off
    stats.append(SignalStats(ODDS_SIGNAL, low, high, most, where, odds_bound, incidents[ODDS_SIGNAL]))
    return stats
