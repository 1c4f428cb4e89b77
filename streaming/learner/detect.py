"""How soon the guard catches label damage of given kinds and sizes, measured offline on clean data.

``livelearn calibrate --detect`` takes the clean events it replays and, for each shift of :data:`SHIFTS` and each
starting point (a quarter, half and three quarters into the data), relabels the events from there on as a broken
labeller would, replays them through the learner's own step (:func:`~streaming.learner.offline.replay_samples`:
its data-quality watch opens incidents at the exact block) and judges the samples as the monitor does (every
guarded metric, :class:`~monitor.judge.Judge`). The **delay** is the events from the shift's start to the sample
that opened an incident or confirmed a breach; ``None`` when neither came within ``horizon`` events. Delays are
counted in events of the stream (all sessions, labelled or not), in blocks of ``history_every_events``.

>>> from streaming.config import Settings
>>> from streaming.local.dataset import read_events
>>> events = list(read_events(limit=4000))
>>> found = time_to_detect(events, Settings(), shifts={"stuck at 1": SHIFTS["labels stuck at 1"]}, starts=(0.5,))
>>> found[0].shift, found[0].start, found[0].rule, found[0].delay is not None and found[0].delay <= 200
('stuck at 1', 2000, 'label_run', True)
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence

from monitor.calibration import judge_samples
from monitor.judge import Action, Judge
from monitor.prequential import Threshold
from monitor.signals import SignalEvent
from streaming.config import Settings
from streaming.events import Event
from streaming.learner.offline import replay_samples

__all__ = ["SHIFTS", "Detection", "Relabel", "time_to_detect"]

#: A broken labeller: the label it gives an event (``rng``: its own seeded generator).
Relabel = Callable[[Event, random.Random], bool | None]


def _lose(share: float) -> Relabel:
    return lambda e, rng: False if e.label and rng.random() < share else e.label


def _flip(share: float) -> Relabel:
    return lambda e, rng: (not e.label) if e.label is not None and rng.random() < share else e.label


def _invent(share: float) -> Relabel:
    return lambda e, rng: True if e.label is False and rng.random() < share else e.label


#: The shifts measured, by name: loud ones (a stuck labeller) and quiet ones (a share of labels lost or wrong).
SHIFTS: dict[str, Relabel] = {
    "labels stuck at 1": lambda e, _rng: True if e.label is not None else None,
    "labels stuck at 0": lambda e, _rng: False if e.label is not None else None,
    "75 % of positives lost": _lose(0.75),
    "50 % of positives lost": _lose(0.5),
    "25 % of positives lost": _lose(0.25),
    "20 % of labels flipped": _flip(0.2),
    "10 % of labels flipped": _flip(0.1),
    "10 % of negatives made positive": _invent(0.1),
}


@dataclasses.dataclass(frozen=True)
class Detection:
    """One shift from one start: how many events until the guard acted, and by which rule."""

    shift: str
    start: int  # the first relabelled event (a stream position)
    delay: int | None  # events from ``start`` to the deciding sample; None: not within the horizon
    rule: str | None  # the incident's signal (label_rate, label_run, label_odds, ...) or the breached metric(s)
    change_point: int | None  # where the guard placed the shift's start


def _judged(samples: Sequence[dict[str, float]], settings: Settings, start: int) -> tuple[int, str, int | None] | None:
    judge, rule = Judge(settings), Threshold(settings)
    for sample, decision in judge_samples(samples, judge=judge, rule=rule):  # as the monitor judges them
        at = int(sample["stream_position"])
        if decision.action is Action.ROLLBACK:
            if at > start:
                healthy = judge.healthy(decision.value or 0.0, rule.value())
                breached = [] if healthy else [settings.guard.metric]
                also = rule.breaches(sample)  # (the rule as it judged this sample: the generator waits here)
                return at, "+".join([*breached, *also]) or settings.guard.metric, decision.change_point
            judge.reset()  # a breach before the shift is the clean data's (calibrate counts those): go on
    return None


def time_to_detect(
    events: Sequence[Event],
    settings: Settings,
    *,
    shifts: Mapping[str, Relabel] = SHIFTS,
    starts: Sequence[float] = (0.25, 0.5, 0.75),
    horizon: int = 5000,
    seed: int = 0,
) -> list[Detection]:
    """Each shift of ``shifts`` from each start (a share of ``events``), replayed up to ``horizon`` events on.

    Parameters
    ----------
    events
        Clean labelled events, in stream order.
    settings
        The guard's settings (as configured: the rules, their bounds, the model).
    shifts
        Name -> relabelling (default :data:`SHIFTS`).
    starts
        Where each shift begins, as shares of ``events``.
    horizon
        Events replayed after the start (fewer if the data ends first); no detection within them: ``delay`` None.
    seed
        Seeds each relabelling's generator (the same seed for each shift and start).
    """
    found = []
    for name, relabel in shifts.items():
        for share in starts:
            start = int(len(events) * share)
            rng = random.Random(seed)
            shifted = [
                dataclasses.replace(e, label=relabel(e, rng)) if i >= start else e
                for i, e in enumerate(events[: start + horizon])
            ]
            opened: list[SignalEvent] = []
            samples = list(replay_samples(shifted, settings, opened))
            first = next(
                (e for e in opened if e.kind == "incident_start" and e.position > start), None
            )  # the watch's incidents: a clean prefix opens none (calibrate counts those)
            breach = _judged(samples, settings, start)
            if first is not None and (breach is None or first.position <= breach[0]):
                found.append(Detection(name, start, first.position - start, first.signal, first.change_point))
            elif breach is not None:
                found.append(Detection(name, start, breach[0] - start, breach[1], breach[2]))
            else:
                found.append(Detection(name, start, None, None, None))
    return found
