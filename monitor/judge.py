"""The monitor's decision rule, free of I/O so it can be tested against a fake clock.

The monitor feeds it every metric sample the learner recorded (one per ``history_every_events``
labelled events), in stream order, with the time the sample was recorded; each sample is one *check*
on the rolling metric *and its sample count*:

* fewer than ``min_samples`` in the window: no judgement;
* below the threshold (above, for lower-is-better metrics) ``patience`` checks in a row: a confirmed
  breach. It becomes a rollback unless the model is cooling down (``cooldown`` after a rollback,
  doubled for each further rollback in the window), or a **freeze** when ``max_rollbacks`` rollbacks
  already happened in the window;
* while frozen: ``resume`` once the metric has been healthy for ``resume_after`` seconds.

>>> from streaming.config import Settings
>>> judge = Judge(Settings(monitor_patience=2, monitor_min_samples=10))
>>> bad = {"accuracy": 0.5, "samples": 100}
>>> judge.decide(bad, now=0.0, rollback_times=[], frozen=False).action
<Action.WAIT: 'wait'>
>>> judge.decide(bad, now=1.0, rollback_times=[], frozen=False).action
<Action.ROLLBACK: 'rollback'>
"""

from __future__ import annotations

import dataclasses
import enum

from monitor.prequential import is_healthy
from streaming.config import Settings

__all__ = ["Action", "Decision", "Judge", "JudgeState"]


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


@dataclasses.dataclass
class JudgeState:
    """What the judge remembers between checks; kept in Redis so monitors share it and survive restarts."""

    breaches: int = 0
    healthy_since: float | None = None


class Judge:
    """Turns a stream of (metric, samples) observations into actions."""

    def __init__(self, settings: Settings) -> None:
        self.metric = settings.monitor_metric
        self.threshold = settings.monitor_threshold
        self.min_samples = settings.monitor_min_samples
        self.patience = settings.monitor_patience
        self.cooldown = settings.monitor_cooldown_seconds
        self.max_rollbacks = settings.monitor_max_rollbacks
        self.resume_after = settings.monitor_resume_after_seconds
        self.state = JudgeState()

    def healthy(self, value: float) -> bool:
        return is_healthy(self.metric, value, self.threshold)

    def cooldown_until(self, rollback_times: list[float]) -> float:
        """End of the quiet period: ``cooldown * 2**(n-1)`` after the last of n recent rollbacks."""
        if not rollback_times:
            return float("-inf")
        return max(rollback_times) + self.cooldown * 2.0 ** (len(rollback_times) - 1)

    def reset(self) -> None:
        self.state = JudgeState()

    def decide(self, rolling: dict[str, float], *, now: float, rollback_times: list[float], frozen: bool) -> Decision:
        """One check. ``rollback_times``: rollbacks within the flap window (since the last resume)."""
        samples, value = rolling.get("samples", 0), rolling.get(self.metric)
        if value is None or samples < self.min_samples:
            self.reset()
            return Decision(Action.INSUFFICIENT, f"{samples} samples < {self.min_samples}", value)
        desc = f"rolling {self.metric} {value:.4f} vs threshold {self.threshold} over {samples} events"
        state = self.state
        if frozen:
            state.breaches = 0
            if not self.healthy(value):
                state.healthy_since = None
                return Decision(Action.NONE, f"frozen; {desc}", value)
            state.healthy_since = now if state.healthy_since is None else state.healthy_since
            if now - state.healthy_since >= self.resume_after:
                state.healthy_since = None
                return Decision(Action.RESUME, f"healthy for {self.resume_after:.0f}s while frozen: {desc}", value)
            return Decision(Action.NONE, f"frozen, healthy for {now - state.healthy_since:.1f}s; {desc}", value)
        state.healthy_since = None
        if self.healthy(value):
            state.breaches = 0
            return Decision(Action.NONE, desc, value)
        state.breaches += 1
        if state.breaches < self.patience:
            return Decision(Action.WAIT, f"breach {state.breaches}/{self.patience}: {desc}", value)
        if now < self.cooldown_until(rollback_times):
            return Decision(Action.COOLDOWN, f"breach confirmed but cooling down: {desc}", value)
        state.breaches = 0
        if len(rollback_times) >= self.max_rollbacks:
            return Decision(
                Action.FREEZE, f"{len(rollback_times)} rollbacks within the window and still: {desc}", value
            )
        return Decision(Action.ROLLBACK, f"breach for {self.patience} checks: {desc}", value)
