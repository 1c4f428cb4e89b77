"""Why candidate versions wait: the data watch names what makes a block suspect (:attr:`SignalWatch.hold_reason`), and
the learner's status says, for the candidates past the confirmed position, how many wait, from where, and why
(:meth:`LearnerState.held`: frozen, an incident, the suspect block, the threshold, or not judged yet)."""

from __future__ import annotations

from monitor.signals import SignalWatch
from streaming.config import Settings
from streaming.learner.state import LearnerState, spec_from_settings

SETTINGS = Settings(reference_min_events=0, history_every_events=100, incident_odds_threshold=0)


def block(position: int, label_rate: float, *, run: int = 3, run_value: int = 0) -> dict[str, float]:
    return {
        "stream_position": position,
        "accuracy": 0.9,
        "samples": 500,
        "label_rate": label_rate,
        "pred_rate": 0.15,
        "label_run": run,
        "label_run_value": run_value,
        "label_run_start": position - run,
    }


def test_the_watch_names_what_makes_a_block_suspect_and_forgets_it_when_calm():
    watch = SignalWatch(SETTINGS)
    for position in range(100, 1100, 100):
        watch.observe(block(position, 0.15))
    assert watch.calm and watch.hold_reason is None
    bound = SETTINGS.guard.incident_label_rate_bound
    watch.observe(block(1100, 0.15 + 0.6 * bound))  # past half the bound, within it: suspect, no incident
    assert not watch.calm and watch.incident is None
    assert watch.hold_reason is not None and "label_rate" in watch.hold_reason and "half its bound" in watch.hold_reason
    watch.observe(block(1200, 0.15))
    assert watch.calm and watch.hold_reason is None
    watch.observe(block(1300, 0.15, run=100, run_value=0))  # 0.85^100: two-thirds of the way to improbable, not past
    assert not watch.calm and watch.incident is None
    assert "100 labels in a row were 0" in (watch.hold_reason or "")


def test_the_status_says_which_candidates_wait_and_why():
    state = LearnerState.fresh(spec_from_settings(SETTINGS), SETTINGS)
    assert state.held() is None
    state.unconfirmed = [1000]
    assert "miss their threshold" in state.held()["reason"]  # type: ignore[index]  (nothing scored yet)
    state.metrics.update_many([True] * 300, [0.9] * 300)
    state.unconfirmed, state.confirmed = [1000, 2000, 3000], 1000
    held = state.held()
    assert held is not None and held["candidates"] == 2 and held["from_position"] == 2000
    assert held["confirmed_to"] == 1000 and "not judged yet" in held["reason"]
    for position in range(100, 1100, 100):  # a reference label rate of 0.15 learned
        state.watch.observe(block(position, 0.15))
    for _ in range(30):  # the block so far: 30 labels, all 1
        state.signals.add_at(True, 0.2, {}, 1100)
    assert "in the block so far, the block's label_rate 1.000 is off its reference 0.150" in state.held()["reason"]  # type: ignore[index]
    state.signals.flush()
    state.watch.hold_reason = "the block's label_rate 0.400 is off its reference"
    assert state.held()["reason"] == state.watch.hold_reason  # type: ignore[index]
    state.watch.open_incident("label_rate", 1500)
    assert "data incident is open (label_rate, from stream position 1500)" in state.held()["reason"]  # type: ignore[index]
    state.frozen = True
    assert "frozen" in state.held()["reason"]  # type: ignore[index]
    state.confirmed = 3000
    assert state.held() is None
