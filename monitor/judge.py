"""The monitor's decision rule, free of I/O: a function of the metric samples, counted in events.

The monitor feeds it every metric sample the learner recorded (one per ``history_every_events`` labelled
events), in stream order, with the sample's stream position; each sample is one *check* on the rolling
metric *and its sample count*. Every span is counted in events, so the same stream gives the same decisions
at any rate (seconds remain available as an additional bound, off by default):

* fewer than ``monitor_min_samples`` in the window: no judgement (after a rollback the window restarts);
* below the threshold (above, for lower-is-better metrics) ``patience`` checks in a row: a confirmed
  breach. It becomes a rollback, unless the model is cooling down — ``cooldown_events`` after a rollback,
  doubled for each further rollback in the flap window (``rollback_window_events``) — in which case it is
  **suppressed**, and reported once per cooldown (the monitor logs, audits and alerts it); a breach that
  outlasts the cooldown acts then. With ``max_rollbacks`` rollbacks in the window it is a **freeze**;
* while frozen: ``resume`` once the metric has been healthy for ``resume_after_events`` events;
* during a data-quality incident (the learner holds learning itself): a confirmed breach is suppressed and
  reported once, nothing else.

>>> from streaming.config import GuardSettings, Settings
>>> judge = Judge(Settings(monitor_patience=2, monitor_min_samples=10))
>>> bad = {"accuracy": 0.5, "samples": 100}
>>> judge.decide(bad, position=100, now=0.0, rollbacks=[], frozen=False).action
<Action.WAIT: 'wait'>
>>> judge.decide(bad, position=200, now=1.0, rollbacks=[], frozen=False).action
<Action.ROLLBACK: 'rollback'>
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from monitor.prequential import is_healthy
from streaming.config import GuardSettings, Settings

__all__ = ["Action", "Decision", "Judge", "JudgeState", "Rollback"]

#: A past rollback as the judge sees it: (stream position it was decided at, or None if unknown; unix time).
Rollback = tuple[int | None, float]


class Action(enum.StrEnum):
    """What one check asks the monitor to do."""

    NONE = "none"  # healthy, or nothing to do
    INSUFFICIENT = "insufficient"  # too few samples in the window to judge
    WAIT = "wait"  # a breach, not yet confirmed (patience)
    COOLDOWN = "cooldown"  # a confirmed breach while cooling down after a rollback
    ROLLBACK = "rollback"
    FREEZE = "freeze"  # flapping: stop learning
    RESUME = "resume"  # frozen and healthy long enough


@dataclasses.dataclass(frozen=True)
class Decision:
    """One check's outcome: the action, why, and the judged value."""

    action: Action
    reason: str
    value: float | None = None
    notify: bool = False  # a suppressed breach to report (the first of its cooldown)
    #: a rollback's estimate of where the degradation began: the last sample at every metric's healthy level
    change_point: int | None = None


@dataclasses.dataclass
class JudgeState:
    """What the judge remembers between checks; kept in Redis so monitors share it and survive restarts."""

    breaches: int = 0  # consecutive breaching checks
    healthy_since: int | None = None  # stream position where the frozen model became healthy
    healthy_since_time: float | None = None
    suppressed: bool = False  # a confirmed breach of this cooldown was reported already
    #: each guarded metric's rolling-window start at its last sample near its healthy level (no shortfall)
    at_level: dict[str, int] = dataclasses.field(default_factory=dict)
    #: the window start of the first sample judged since the judge was reset (a breaching metric never near its
    #: level since: its degradation began before it at the latest)
    first: int | None = None
    #: recent samples' (scored, stream position): where a window of ``samples`` scored events began on the stream
    #: (positions also count unlabelled events and other partitions: ``position - samples`` would be too late)
    marks: list[list[int]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JudgeState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


class Judge:
    """Turns the stream of metric samples into actions.

    The rule of the module's docstring, one :meth:`decide` per metric sample: it reads only its arguments and its
    :attr:`state` (:class:`JudgeState`, which the monitor keeps in Redis between checks), so the same samples give
    the same decisions wherever they are judged.

    Parameters
    ----------
    settings
        The settings or their ``guard`` group: the metric and threshold (``monitor_metric``,
        ``monitor_threshold``), ``monitor_min_samples``, ``monitor_patience``, the cooldown
        (``monitor_cooldown_events``, ``monitor_cooldown_seconds``), the flap window and its freeze
        (``monitor_max_rollbacks``, ``monitor_rollback_window_events``, ``monitor_rollback_window_seconds``) and the
        resume (``monitor_resume_after_events``, ``monitor_resume_after_seconds``).

    Examples
    --------
    >>> from streaming.config import Settings
    >>> judge = Judge(Settings(monitor_patience=1, monitor_min_samples=10, monitor_cooldown_events=1000))
    >>> bad = {"accuracy": 0.5, "samples": 100}
    >>> judge.decide(bad, position=100, now=0.0, rollbacks=[], frozen=False).action
    <Action.ROLLBACK: 'rollback'>

    The breach goes on after the rollback at position 100: suppressed (reported once) until the cooldown is over.

    >>> for position in (300, 400, 1200):
    ...     decision = judge.decide(bad, position=position, now=0.0, rollbacks=[(100, 0.0)], frozen=False)
    ...     print(position, decision.action.value, decision.notify)
    300 cooldown True
    400 cooldown False
    1200 rollback False
    >>> judge.decide({"accuracy": 0.5, "samples": 5}, position=1300, now=0.0, rollbacks=[], frozen=False).reason
    '5 samples < 10'
    """

    def __init__(self, settings: GuardSettings | Settings) -> None:
        guard = GuardSettings.of(settings)
        self.metric = guard.metric
        self.threshold = guard.threshold
        self.min_samples = guard.min_samples
        self.patience = guard.patience
        self.cooldown_events = guard.cooldown_events
        self.cooldown_seconds = guard.cooldown_seconds
        self.max_rollbacks = guard.max_rollbacks
        self.window_events = guard.rollback_window_events
        self.window_seconds = guard.rollback_window_seconds
        self.resume_after_events = guard.resume_after_events
        self.resume_after_seconds = guard.resume_after_seconds
        self.state = JudgeState()

    def healthy(self, value: float, threshold: float | None = None) -> bool:
        return is_healthy(self.metric, value, self.threshold if threshold is None else threshold)

    def recent(self, rollbacks: Sequence[Rollback], *, position: int, now: float) -> list[Rollback]:
        """The rollbacks inside the flap window (in events; and in seconds, when that bound is set)."""
        return [
            (at, when)
            for at, when in rollbacks
            if (at is None or position - at <= self.window_events)
            and (not self.window_seconds or now - when <= self.window_seconds)
        ]

    def cooling_down(self, recent: Sequence[Rollback], *, position: int, now: float) -> bool:
        """Within ``cooldown * 2**(n-1)`` after the last of the ``n`` recent rollbacks (events, or seconds)."""
        if not recent:
            return False
        (at, when), factor = recent[-1], 2.0 ** (len(recent) - 1)
        in_events = at is not None and position < at + self.cooldown_events * factor
        in_seconds = bool(self.cooldown_seconds) and now < when + self.cooldown_seconds * factor
        return in_events or in_seconds

    def reset(self) -> None:
        self.state = JudgeState(marks=self.state.marks)  # (where windows began on the stream stays known)

    def window_start(self, rolling: dict[str, float], position: int) -> int:
        """The stream position where the rolling window of ``rolling`` (its ``samples`` scored events, up to its
        ``scored``) began, from the samples seen (``marks``); at the latest ``position - samples``.

        >>> judge = Judge(Settings())
        >>> for scored, at in ((100, 250), (200, 480), (300, 700)):
        ...     judge.mark({"scored": scored, "samples": 200}, at)
        >>> judge.window_start({"scored": 300, "samples": 200}, 700)  # labelled every other event: not 500
        250
        """
        marks, start = self.state.marks, int(rolling.get("scored", position)) - int(rolling.get("samples", 0))
        before = [at for scored, at in marks if scored <= start]
        return max(before) if before else position - int(rolling.get("samples", 0))

    def mark(self, rolling: dict[str, float], position: int) -> None:
        """Note where this sample's ``scored`` events ended on the stream; forget marks older than its window."""
        scored, samples = int(rolling.get("scored", position)), int(rolling.get("samples", 0))
        marks = self.state.marks
        if marks and marks[-1][0] >= scored:  # a replay, or another lineage's count: start the marks again
            marks.clear()
        marks.append([scored, position])
        start = scored - samples
        while len(marks) > 1 and marks[1][0] <= start:  # keep the newest mark at or before the window's start
            del marks[0]

    def decide(
        self,
        rolling: dict[str, float],
        *,
        position: int,
        now: float,
        rollbacks: Sequence[Rollback],
        frozen: bool,
        threshold: float | None = None,
        incident: bool = False,
        also: Mapping[str, str] | None = None,
        shortfalls: Mapping[str, float] | None = None,
        settled: int | None = None,
    ) -> Decision:
        """One check at stream ``position``. ``rollbacks``: since the last resume (the window is applied here);
        ``threshold``: the effective one (relative mode), else the configured one; ``incident``: a data-quality
        incident holds learning (the learner rolled back and froze already): a confirmed breach is suppressed
        and reported, nothing resumes; ``also``: the further rules (``monitor_also``) this sample breaks, metric ->
        in words (:meth:`~monitor.prequential.Threshold.breaches`): a breach of any is a breach; ``shortfalls``:
        each metric's shortfall from its healthy level less half its margin
        (:meth:`~monitor.prequential.Threshold.shortfalls`): a rollback's change point is the start of the rolling
        window at the breaching metrics' last sample without one, the earliest of them (the newest stable version at
        or before it is the target); ``settled``: the stream position where an operator declared a new normal
        (closed an incident; learning went on there): the model learns the shifted data from there, so for
        ``cooldown_events`` after it a confirmed breach is reported, not acted on, as after a rollback (not counted
        as one)."""
        samples, value = rolling.get("samples", 0), rolling.get(self.metric)
        limit = self.threshold if threshold is None else threshold
        self.mark(rolling, position)
        if value is None or samples < self.min_samples:
            self.reset()
            return Decision(Action.INSUFFICIENT, f"{samples} samples < {self.min_samples}", value)
        also = also or {}
        desc = "; ".join(
            [f"rolling {self.metric} {value:.4f} vs threshold {limit:.4f} over {samples} events", *also.values()]
        )
        state = self.state
        window_from = self.window_start(rolling, position)
        if state.first is None:
            state.first = window_from
        for metric, shortfall in (shortfalls or {}).items():
            if shortfall <= 0.0:  # near its level over this window: a change shown later began after its start
                state.at_level[metric] = window_from
        healthy = self.healthy(value, limit) and not also
        if frozen and not incident:
            return self._frozen(state, value, healthy=healthy, position=position, now=now, desc=desc)
        state.healthy_since = state.healthy_since_time = None
        if healthy:
            state.breaches, state.suppressed = 0, False
            return Decision(Action.NONE, desc, value)
        state.breaches += 1
        if state.breaches < self.patience:
            return Decision(Action.WAIT, f"breach {state.breaches}/{self.patience}: {desc}", value)
        if incident:
            first, state.suppressed = not state.suppressed, True
            return Decision(
                Action.COOLDOWN,
                f"breach confirmed during a data-quality incident (learning held): {desc}",
                value,
                first,
            )
        recent = self.recent(rollbacks, position=position, now=now)
        last = recent[-1][0] if recent else None
        adapting = (
            settled is not None and position < settled + self.cooldown_events and (last is None or settled >= last)
        )
        if adapting or self.cooling_down(recent, position=position, now=now):
            first, state.suppressed = not state.suppressed, True
            why = "cooling down" if not adapting else f"learning the new normal declared at stream position {settled}"
            return Decision(Action.COOLDOWN, f"breach confirmed but {why}: {desc}", value, notify=first)
        state.breaches, state.suppressed = 0, False
        if len(recent) >= self.max_rollbacks:
            return Decision(Action.FREEZE, f"{len(recent)} rollbacks within the window and still: {desc}", value)
        # every guarded metric's last point near its level, the earliest (a metric that drifted first may not be the
        # one that broke its bound first); a breaching one never near its level since the reset: the first window
        breaching = [*([] if self.healthy(value, limit) else [self.metric]), *also]
        points = list(state.at_level.values())
        if any(metric not in state.at_level for metric in breaching) and state.first is not None:
            points.append(state.first)
        change = min(points) if points else None
        where = "" if change is None else f" (degradation after stream position {change})"
        reason = f"breach for {self.patience} checks: {desc}{where}"
        return Decision(Action.ROLLBACK, reason, value, change_point=change)

    def _frozen(
        self, state: JudgeState, value: float, *, healthy: bool, position: int, now: float, desc: str
    ) -> Decision:
        state.breaches, state.suppressed = 0, False
        if not healthy:
            state.healthy_since = state.healthy_since_time = None
            return Decision(Action.NONE, f"frozen; {desc}", value)
        if state.healthy_since is None:
            state.healthy_since, state.healthy_since_time = position, now
        events = position - state.healthy_since
        seconds = now - (state.healthy_since_time or now)
        if events >= self.resume_after_events and seconds >= self.resume_after_seconds:
            state.healthy_since = state.healthy_since_time = None
            return Decision(Action.RESUME, f"healthy for {events} events while frozen: {desc}", value)
        return Decision(Action.NONE, f"frozen, healthy for {events} events; {desc}", value)
