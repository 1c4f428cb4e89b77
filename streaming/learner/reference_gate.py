"""The reference-set gate: a candidate version must score on a fixed, known-good labelled set before it may be stable.

Rolling metrics judge a model on the stream it learns from; when that stream is wrong in a way the model
can learn (labels inverted, a feature's meaning changed), the model and the stream agree and the rolling
metric looks fine. A fixed reference set — e.g. a known-good day, exported as a CSV in the dataset's
format, or kept as an offset range of the events topic (``kafka:TOPIC:PARTITION:FROM-TO``), named by
``reference_set`` — does not move. Every version that meets the threshold is scored
on it (the guarded metric, computed over the whole set), and compared with the best of the version serving now and
the newest ``reference_best_of`` stable versions: more than ``reference_tolerance`` worse and it is **kept but never
stable** (never promoted, never a rollback target). Against the serving version alone, a slow poisoning would pass
version by version, each a little worse than the last one promoted; against the best recent one it cannot fall more
than the tolerance within any ``reference_best_of`` stable versions. The outcome is recorded in the version's
metadata (``extra.reference``: its score, the version it was compared with and that one's score) and counted
(``livelearn_reference_gate_failures_total``).

A compared version's own reference score comes from its metadata when it was gated too, else it is loaded and
scored once.

>>> from streaming.config import GuardSettings, Settings
>>> from streaming.local.dataset import read_events
>>> from streaming.model import OnlineModel
>>> from streaming.learner.state import spec_from_settings
>>> settings = Settings()
>>> gate = ReferenceGate(settings, list(read_events(limit=300)))
>>> model = OnlineModel(spec_from_settings(settings))
>>> for event in read_events(limit=2000):
...     model.learn_one(event.features, event.label)
>>> round(gate.score(model), 3)
0.963
>>> gate.judge(model, against=None, against_score=None)["passed"]  # nothing to compare with yet
True
>>> gate.judge(model, against=3, against_score=0.99)["passed"]  # more than 0.02 below version 3's score
False
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from monitor.prequential import LOWER_IS_BETTER, PrequentialMetrics
from streaming.config import GuardSettings, Settings
from streaming.engines import LearningModel
from streaming.errors import EventError, InputError
from streaming.events import Event

__all__ = ["ReferenceGate", "load_reference_set"]

log = logging.getLogger(__name__)


def load_reference_set(settings: Settings) -> list[Event] | None:
    """The labelled events of ``settings.reference_set``: a CSV in the dataset's format, or a fixed range of a
    topic partition, ``kafka:TOPIC:PARTITION:FROM-TO`` (``None`` when no set is configured)."""
    if settings.reference_set is None:
        return None
    from streaming.topic_range import is_topic_range, parse_topic_range, read_topic_range

    if is_topic_range(settings.reference_set):
        rng = parse_topic_range(settings.reference_set)
        if rng.end is None:
            raise InputError(f"the reference range {rng} has no end offset; a reference set is fixed: name FROM-TO")
        from streaming.events import EventLimits

        limits = EventLimits.from_settings(settings.limits)
        events = [e for e in read_topic_range(settings.kafka, limits, rng) if e.label is not None]
    else:
        from streaming.events import EventLimits, decode_event, encode_event
        from streaming.local.dataset import check_columns, is_parquet, read_events

        check_columns(settings.reference_set)
        limits = EventLimits.from_settings(settings)  # each row as the learner sees it: through the event contract
        events = []
        parquet = is_parquet(settings.reference_set)  # (its rows counted from 1; a CSV's lines after the header)
        for index, event in enumerate(read_events(settings.reference_set)):
            try:
                checked = decode_event(encode_event(event), "msgpack", limits)
            except EventError as exc:
                where = f"row {index + 1}" if parquet else f"line {index + 2}"
                raise InputError(f"{settings.reference_set} {where} breaks the event contract: {exc}") from exc
            if checked.label is not None:
                events.append(checked)
    if not events:
        raise InputError(f"the reference set {settings.reference_set} holds no labelled event; name a labelled one")
    return events


class ReferenceGate:
    """Scores models on the reference set and says whether a candidate may become stable."""

    def __init__(self, settings: GuardSettings | Settings, events: Sequence[Event]) -> None:
        guard = GuardSettings.of(settings)
        self.metric, self.tolerance = guard.metric, guard.reference_tolerance
        self.events = list(events)
        self._scores: dict[int, float] = {}  # version -> its reference score (versions are immutable)

    def score(self, model: LearningModel) -> float:
        """The guarded metric of ``model`` over the whole reference set (the model is not changed)."""
        metrics = PrequentialMetrics(window=len(self.events), names=(self.metric,))
        for event in self.events:
            metrics.update(bool(event.label), model.predict_proba_one(event.features))
        return metrics.cumulative_values()[self.metric]

    def remember(self, version: int, score: float) -> None:
        self._scores[version] = score

    def known(self, version: int) -> float | None:
        return self._scores.get(version)

    def judge(self, model: LearningModel, *, against: int | None, against_score: float | None) -> dict[str, Any]:
        """The gate's verdict on ``model`` against version ``against`` (the best compared one) and its score: what
        the metadata records."""
        score = self.score(model)
        verdict: dict[str, Any] = {"metric": self.metric, "score": score, "rows": len(self.events)}
        if against is None or against_score is None:
            return {**verdict, "passed": True, "against": None}
        worse = score - against_score if self.metric in LOWER_IS_BETTER else against_score - score
        verdict.update(against=against, against_score=against_score, tolerance=self.tolerance)
        return {**verdict, "passed": worse <= self.tolerance}

    def best(self, scores: dict[int, float | None]) -> tuple[int | None, float | None]:
        """The best-scoring version of ``scores`` (version -> reference score; ``None``: not known), or nothing.

        >>> from streaming.config import Settings
        >>> ReferenceGate(Settings(), []).best({4: 0.91, 7: 0.93, 9: None}), ReferenceGate(Settings(), []).best({})
        ((7, 0.93), (None, None))
        """
        known = [(score, number) for number, score in scores.items() if score is not None]
        if not known:
            return None, None
        pick = min if self.metric in LOWER_IS_BETTER else max
        score, number = pick(known, key=lambda item: (item[0], item[1]))
        return number, score
