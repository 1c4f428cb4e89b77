"""The ``auto`` policy: promotions and canary steps decided from the comparison, as an operator would make them.

With ``LIVELEARN_CHALLENGER_POLICY=auto`` the active learner acts on its challengers' verdicts (:mod:`monitor.compare`)
between batches, through the same audited scripts an operator uses (actor ``learner (auto)``), never while learning
is held:

* **no canary**: a challenger whose verdict has been ``promote`` for ``compare_confirm_labels`` labels in a row is
  promoted (the ``champion`` alias moves; the learner applies it at once);
* **a canary on a challenger** (``livelearn canary set fast 5``) is advanced Flagger-style: each step is held until
  the verdict has been ``promote`` for ``compare_confirm_labels`` labels since the step began, then the next step
  is taken (5 → 25 → 50 → 100 % by default); at its last step the challenger is promoted (which ends the canary).
  A verdict of ``worse`` aborts the canary at once (everyone back on the champion; the abort alerts). While a canary
  runs, no challenger is promoted past it.

An operator's move always wins: every script call is a compare-and-set on what the learner read (the champion it
saw, the canary's ``at``), and a refusal is logged, not retried.
"""

from __future__ import annotations

import dataclasses
import logging

from snapshotter.challengers import ArmControl
from snapshotter.control import Canary, ControlPlane
from snapshotter.store import VersionStore
from streaming.config import ChallengerSettings
from streaming.errors import ControlError
from streaming.learner.arms import Arm
from streaming.learner.state import LearnerState

__all__ = ["ACTOR", "AutoPolicy"]

log = logging.getLogger(__name__)

#: Who the audit says acted.
ACTOR = "learner (auto)"


@dataclasses.dataclass
class _Step:
    """Where the canary step the learner watches began: the canary's ``at`` and the arm's labels then."""

    at: str
    labels: int


class AutoPolicy:
    """Decides the ``auto`` policy's next move (see the module docstring).

    Parameters
    ----------
    store
        The model's version store (its client and keys: the canary and the alias).
    settings
        The challengers' settings (policy, ``compare_confirm_labels``).
    """

    def __init__(self, store: VersionStore, settings: ChallengerSettings) -> None:
        self.store, self.settings = store, settings
        self._step: _Step | None = None

    def decide(self, state: LearnerState) -> str | None:
        """The arm to make the champion now (it was just promoted through the alias), or ``None``; advances or
        aborts a canary on the way."""
        if self.settings.policy != "auto" or state.arms is None or not state.learning:
            return None
        canary = ControlPlane(self.store).canary()
        if canary is not None and not canary.aborted and canary.percent > 0:
            return self._canary(state, canary)
        self._step = None
        ready = state.arms.ready(self.settings.confirm_labels)
        return self._promote(state, ready[0]) if ready else None

    def _canary(self, state: LearnerState, canary: Canary) -> str | None:
        assert state.arms is not None
        arm = next((a for a in state.arms.arms if a.name == canary.arm), None)
        if arm is None:
            return None  # a canary on an arm this learner does not have: the operator's to end
        result = arm.comparison.result()
        if result.decision == "worse":
            self._abort(canary, f"auto: {arm.name}'s verdict is worse ({result.reason})")
            return None
        if self._step is None or self._step.at != canary.at:
            self._step = _Step(canary.at, result.labels)  # a new step (or a learner that just took over): from here
        if not self._held(arm, self._step.labels):
            return None
        if canary.next_percent is None:  # the last step held: promoted (the script ends the canary)
            return self._promote(state, arm.name)
        try:
            moved = ControlPlane(self.store).advance_canary(actor=ACTOR, reason=self._reason(arm, "held"))
        except ControlError as exc:
            log.warning("the auto policy could not advance the canary of %s: %s", arm.name, exc)
            return None
        log.warning("auto: the canary of %s goes to %s %%", arm.name, moved.percent)
        self._step = _Step(moved.at, result.labels)
        return None

    def _held(self, arm: Arm, since: int) -> bool:
        """The verdict has been ``promote`` for ``compare_confirm_labels`` labels since ``since`` (and since it
        became ``promote``)."""
        if arm.promote_since is None:
            return False
        return arm.comparison.labels - max(since, arm.promote_since) >= self.settings.confirm_labels

    def _reason(self, arm: Arm, what: str) -> str:
        result = arm.comparison.result()
        return f"auto: {result.reason}; {what} for {self.settings.confirm_labels:,} labels"

    def _promote(self, state: LearnerState, name: str) -> str | None:
        assert state.arms is not None
        arm = next(a for a in state.arms.arms if a.name == name)
        try:
            ArmControl(self.store).promote(
                name, actor=ACTOR, reason=self._reason(arm, "the verdict held"), current=state.arm_name
            )
        except ControlError as exc:
            log.warning("the auto promotion of %s was refused: %s", name, exc)
            return None
        self._step = None
        return name

    def _abort(self, canary: Canary, reason: str) -> None:
        try:
            ControlPlane(self.store).abort_canary(actor=ACTOR, reason=reason)
        except ControlError as exc:
            log.warning("the auto policy could not abort the canary of %s: %s", canary.arm, exc)
            return
        log.warning("auto: the canary of %s aborted: %s", canary.arm, reason)
        self._step = None
