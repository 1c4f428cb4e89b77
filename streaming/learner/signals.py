"""Signals of the data itself, block by block: what the guard watches besides the model's accuracy.

A stuck labeller (every label 1) makes the model look *better* — it learns "always buy" and agrees with
the labels — so accuracy alone cannot catch it. Each metric sample therefore also carries, over the block
of labelled events since the previous sample:

* ``label_rate`` — the share of positive labels,
* ``pred_rate`` — the share of positive predictions (``p > 0.5``), and ``mean_p`` — the mean score,
* ``label_run`` — the longest run of one label value reaching into the block (counted across blocks), its
  value ``label_run_value`` (1 or 0) and ``label_run_start``, the stream position just before its first
  event (a labeller stuck at 0 barely moves a low label rate, but makes an improbable run),
* ``feature:<name>`` — the mean raw value of each tracked numeric feature (the first
  ``drift_max_features`` numeric features seen, a fixed list kept in snapshots),
* ``odds:<group>:n``, ``:pos``, ``:up``, ``:down``, ``:p`` — for the label-odds rule, while it is on
  (:class:`monitor.signals.SignalWatch`): per group — ``all``, and each guard segment's groups
  (``LIVELEARN_GUARD_SEGMENTS``: ``<feature>=<value>``, the first ``guard_segment_values`` values seen, later ones
  ``<feature>=other``; a numeric cut's ``<feature>>X`` and ``<feature><=X``) — the labelled events, the positive
  labels, the sums of ``log(1 - p + R p)`` and ``log(1 - p + p / R)`` over the model's scores ``p`` (a segment
  group's with its odds times the group's calibration, :attr:`BlockSignals.odds_factors`), and of ``p``
  (``R``: ``incident_odds_ratio``): a block's log-likelihood ratio of "the odds of a positive label are ``R`` (or
  ``1/R``) times what the model says" is ``pos · log R - up`` (``pos · log(1/R) - down``); and ``:pred``, ``:hit``,
  the events predicted positive (``p > 0.5``, the served score) and predicted right — so each group's label rate,
  prediction rate, mean score, accuracy, precision and recall per block follow from its sums
  (:func:`monitor.signals.group_metrics`).

Blocks are counted in labelled events, so the signals are a function of the stream, not of the rate.

>>> block = BlockSignals(max_features=2)
>>> for at, (label, p, x) in enumerate([(True, 0.9, {"a": 1.0, "c": "x"}), (False, 0.2, {"a": 3.0, "b": 5})]):
...     block.add(label, p, x, {"p0": at + 1})
>>> signals = block.flush()
>>> {k: v for k, v in signals.items() if not k.startswith(("label_run", "odds:"))}
{'label_rate': 0.5, 'pred_rate': 0.5, 'mean_p': 0.55, 'feature:a': 2.0, 'feature:b': 5.0}
>>> signals["odds:all:n"], signals["odds:all:pos"], round(signals["odds:all:up"], 4)  # log(1.9) + log(1.2)
(2, 1, 0.824)
>>> for at, label in enumerate([False, False, False, True, False, False], start=2):  # the last block ended on 0
...     block.add(label, 0.1, {}, {"p0": at + 1})
>>> {k: v for k, v in block.flush().items() if k.startswith("label_run")}  # 4 zeros, the first at position 1
{'label_run': 4, 'label_run_value': 0, 'label_run_start': 1}
>>> block.flush()["label_rate"]  # an empty block (no labelled event since): nothing to say
nan
>>> block.add(True, 0.7, {}, {"p0": 9})
>>> block.peek()["label_rate"], block.count  # the block so far; it goes on
(1.0, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from monitor.signals import ALL
from streaming.config import Segment, parse_segments

__all__ = ["OTHER", "BlockSignals"]

_NAN = float("nan")
_NUMBERS = frozenset({int, float})
#: A guard segment's value past the first ``guard_segment_values``.
OTHER = "other"


class BlockSignals:
    """Accumulates one block of labelled events; :meth:`flush` returns its signals and starts the next."""

    def __init__(
        self,
        max_features: int,
        *,
        segments: Iterable[str] = (),
        segment_values: int = 8,
        odds_ratio: float | None = 2.0,
    ) -> None:
        self.max_features = max_features
        self.segments = parse_segments(segments)
        self.segment_values = segment_values
        # values kept, first seen, per categorical segment (a numeric cut has its two groups)
        self.seen: dict[str, dict[str, None]] = {s.feature: {} for s in self.segments if s.cut is None}
        #: each segment group's calibration for the label-odds sums: the factor by which its labels' odds have run
        #: above what the model's scores say (the watch's, as they stood when the block began:
        #: :meth:`monitor.signals.SignalWatch.odds_factors`), so a group the model chronically scores low is judged
        #: against its own long-run agreement with the scores, not against the scores as they are
        self.odds_factors: dict[str, float] = {}
        #: whether the label-odds sums are kept (``odds_ratio`` ``None``: the rule is off, nothing to keep)
        self.odds = odds_ratio is not None
        ratio = odds_ratio or 2.0
        self.up_slope, self.down_slope = ratio - 1.0, 1.0 / ratio - 1.0
        self.tracked: dict[str, None] = {}  # numeric features watched for drift, in first-seen order
        self.run_label: bool | None = None  # the current run of one label value, across blocks
        self.run_length = self.run_start = 0
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.positives = 0
        self.predicted = 0
        self.p_sum = 0.0
        self.totals: dict[str, list[Any]] = {}  # tracked feature -> [sum, count] over the block, in first-seen order
        # group -> [events, positives, sum log(1-p+Rp), sum log(1-p+p/R), sum p, predicted positive, predicted right]
        self.groups: dict[str, list[float]] = {}
        self.longest = (0, False, 0)  # (length, value, stream position before its first event)

    def add(
        self,
        label: bool,
        p: float,
        features: dict[str, Any],
        positions: Mapping[Any, int],
        odds_p: float | None = None,
    ) -> None:
        """One labelled event: its label, the score it got before learning, its features, and the consumer
        positions that already include it (their sum less one: the stream position just before it); ``odds_p``: the
        score the label-odds sums take instead of ``p`` (a label that came later: the model's score at label time)."""
        self.add_at(label, p, features, sum(positions.values()), odds_p)

    def add_at(
        self, label: bool, p: float, features: dict[str, Any], position: int, odds_p: float | None = None
    ) -> None:
        """:meth:`add` with the stream position that includes the event (the sum of the consumer positions)."""
        self._add_scalars(label, p, features, position, odds_p)
        self._add_drift(features)

    def add_many(
        self, labels: list[bool], ps: list[float], features: list[dict[str, Any]], positions: list[int]
    ) -> None:
        """:meth:`add_at` for each labelled event in order: the same state to the last bit. The feature means' sums
        of events with the same features in the same order are taken column by column (each value added in stream
        order, as one by one); a feature that would start being tracked within such a stretch is taken event by
        event (its place among the tracked features is its first event's).

        >>> one, many = BlockSignals(max_features=2), BlockSignals(max_features=2)
        >>> rows = [(True, 0.9, {"a": 1.5, "c": "x"}), (False, 0.2, {"a": 3, "c": 4.0}), (False, 0.4, {"a": 2, "c": 1})]
        >>> for at, (label, p, x) in enumerate(rows, start=1):
        ...     one.add_at(label, p, x, at)
        >>> many.add_many([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [1, 2, 3])
        >>> many.dump() == one.dump(), list(many.flush()) == list(one.flush())
        (True, True)
        """
        if self.segments or ALL in self.odds_factors:
            add = self._add_scalars
            for k in range(len(labels)):
                add(labels[k], ps[k], features[k], positions[k], None)
        else:
            self._add_scalars_all(labels, ps, positions)
        n, i = len(features), 0
        drift, totals, tracked = self._add_drift, self.totals, self.tracked
        while i < n:
            first = features[i]
            drift(first)  # (new features start being tracked here, in their order)
            names, end = tuple(first), i + 1
            while end < n and tuple(features[end]) == names:
                end += 1
            if end - i > 1:
                rest = features[i + 1 : end]
                columns = list(zip(*[tuple(f.values()) for f in rest], strict=True)) if names else []
                room = len(tracked) < self.max_features
                if any(
                    name not in totals and (room or name in tracked) and set(map(type, column)) != {str}
                    for name, column in zip(names, columns, strict=True)
                ):
                    for f in rest:  # a feature starts being tracked (or counted in this block) within the stretch
                        drift(f)
                else:
                    for name, column in zip(names, columns, strict=True):
                        total = totals.get(name)
                        if total is None:
                            continue  # strings only, or not tracked
                        acc, count = total[0], total[1]
                        if set(map(type, column)) <= _NUMBERS:
                            for value in column:  # in stream order: the same sum as one by one
                                acc += value
                            count += len(column)
                        else:
                            for value in column:
                                if not isinstance(value, str):
                                    acc += value
                                    count += 1
                        total[0], total[1] = acc, count
            i = end

    def _add_scalars(
        self, label: bool, p: float, features: dict[str, Any], position: int, odds_p: float | None
    ) -> None:
        """Everything of :meth:`add_at` but the feature means' sums."""
        self.count += 1
        if label == self.run_label:
            self.run_length += 1
        else:
            self.run_label, self.run_length, self.run_start = label, 1, position - 1
        if self.run_length > self.longest[0]:
            self.longest = (self.run_length, label, self.run_start)
        self.positives += label
        predicted = p > 0.5
        self.predicted += predicted
        self.p_sum += p
        q = p if odds_p is None else odds_p
        if self.odds and 0.0 <= q <= 1.0:  # (a NaN score says nothing of the odds)
            up_slope, down_slope = self.up_slope, self.down_slope
            up, down = math.log(1.0 + up_slope * q), math.log(1.0 + down_slope * q)
            groups, factors = self.groups, self.odds_factors
            for group in (ALL, *(self._segment(s, features) for s in self.segments)) if self.segments else (ALL,):
                if group is None:
                    continue
                sums = groups.get(group)
                if sums is None:
                    sums = groups[group] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
                sums[0] += 1.0
                sums[1] += label
                factor = factors.get(group)
                if factor is not None:  # the score with its odds times the group's calibration: q·c / (1 - q + q·c)
                    calibrated = q * factor / (1.0 - q + q * factor)
                    sums[2] += math.log(1.0 + up_slope * calibrated)
                    sums[3] += math.log(1.0 + down_slope * calibrated)
                else:
                    sums[2] += up
                    sums[3] += down
                sums[4] += q
                sums[5] += predicted
                sums[6] += predicted == label

    def _add_scalars_all(self, labels: list[bool], ps: list[float], positions: list[int]) -> None:
        """:meth:`_add_scalars` for each event in order, with no guard segments (one group, ``ALL``, which has no
        calibration factor: the watch gives none), on locals: the same operations in the same order, so the same
        sums to the last bit."""
        count, positives, predicted_count, p_sum = self.count, self.positives, self.predicted, self.p_sum
        run_label, run_length, run_start, longest = self.run_label, self.run_length, self.run_start, self.longest
        odds, log = self.odds, math.log
        if odds:
            up_slope, down_slope = self.up_slope, self.down_slope
            sums = self.groups.get(ALL)
        for k in range(len(labels)):
            label, p = labels[k], ps[k]
            count += 1
            if label == run_label:
                run_length += 1
            else:
                run_label, run_length, run_start = label, 1, positions[k] - 1
            if run_length > longest[0]:
                longest = (run_length, label, run_start)
            positives += label
            predicted = p > 0.5
            predicted_count += predicted
            p_sum += p
            if odds and 0.0 <= p <= 1.0:
                if sums is None:
                    sums = self.groups[ALL] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
                sums[0] += 1.0
                sums[1] += label
                sums[2] += log(1.0 + up_slope * p)
                sums[3] += log(1.0 + down_slope * p)
                sums[4] += p
                sums[5] += predicted
                sums[6] += predicted == label
        self.count, self.positives, self.predicted, self.p_sum = count, positives, predicted_count, p_sum
        self.run_label, self.run_length, self.run_start, self.longest = run_label, run_length, run_start, longest

    def _add_drift(self, features: dict[str, Any]) -> None:
        """The feature means' sums of one labelled event."""
        tracked, totals = self.tracked, self.totals
        for name, value in features.items():
            total = totals.get(name)
            if total is not None:  # tracked and seen in this block: the common case
                if not isinstance(value, str):
                    total[0] += value
                    total[1] += 1
                continue
            if isinstance(value, str):
                continue
            if name not in tracked:
                if len(tracked) >= self.max_features:
                    continue
                tracked[name] = None
            totals[name] = [0.0 + value, 1]

    def _segment(self, segment: Segment, features: Mapping[str, Any]) -> str | None:
        """The event's group for guard segment ``segment`` (``None``: it has no such feature, or no number for a
        cut)."""
        name = segment.feature
        value = features.get(name)
        if value is None:
            return None
        if segment.cut is not None:
            return segment.group(value)
        text, seen = str(value), self.seen[name]
        if text not in seen:
            if len(seen) >= self.segment_values or text == OTHER:
                return f"{name}={OTHER}"
            seen[text] = None
        return f"{name}={text}"

    def flush(self) -> dict[str, float]:
        """The block's signals (NaN rates for an empty block), then an empty block."""
        fields = self.peek()
        self._reset()
        return fields

    def peek(self) -> dict[str, float]:
        """The signals of the block so far, which goes on (a partial block: see :meth:`SignalWatch.calm_with`)."""
        n = self.count
        fields = {
            "label_rate": self.positives / n if n else _NAN,
            "pred_rate": self.predicted / n if n else _NAN,
            "mean_p": self.p_sum / n if n else _NAN,
        }
        length, value, start = self.longest
        if length:
            fields |= {"label_run": length, "label_run_value": int(value), "label_run_start": start}
        totals = self.totals
        for name in self.tracked:
            total = totals.get(name)
            if total is not None:
                fields[f"feature:{name}"] = total[0] / total[1]
        for group, (events, positives, up, down, scores, predicted, right) in self.groups.items():
            fields |= {f"odds:{group}:n": int(events), f"odds:{group}:pos": int(positives)}
            fields |= {f"odds:{group}:up": up, f"odds:{group}:down": down, f"odds:{group}:p": scores}
            fields |= {f"odds:{group}:pred": int(predicted), f"odds:{group}:hit": int(right)}
        return fields

    def dump(self) -> dict[str, Any]:
        return {
            "tracked": list(self.tracked),
            "count": self.count,
            "positives": self.positives,
            "predicted": self.predicted,
            "p_sum": self.p_sum,
            "sums": {name: total[0] for name, total in self.totals.items()},
            "counts": {name: total[1] for name, total in self.totals.items()},
            "run": [self.run_label, self.run_length, self.run_start, *self.longest],
            "seen": {name: list(values) for name, values in self.seen.items()},
            "groups": {group: list(sums) for group, sums in self.groups.items()},
            **({"odds_factors": dict(self.odds_factors)} if self.odds_factors else {}),
        }

    def load(self, doc: dict[str, Any] | None) -> None:
        """Restore :meth:`dump` output (``None``: nothing stored, e.g. a version from before 2026-11)."""
        if not doc:
            return
        self.tracked = dict.fromkeys(doc["tracked"])
        self.count, self.positives, self.predicted = int(doc["count"]), int(doc["positives"]), int(doc["predicted"])
        self.p_sum = float(doc["p_sum"])
        counts = doc["counts"]
        self.totals = {k: [float(v), int(counts[k])] for k, v in doc["sums"].items() if int(counts.get(k, 0))}
        label, length, start, longest, value, at = doc.get("run", [None, 0, 0, 0, False, 0])  # from 2026-11-28
        self.run_label, self.run_length, self.run_start = label, int(length), int(start)
        self.longest = (int(longest), bool(value), int(at))
        seen = doc.get("seen") or {}  # (from 2026-12-07; a segment added since starts with no values)
        self.seen = {name: dict.fromkeys(str(v) for v in seen.get(name, ())) for name in self.seen}
        self.odds_factors = {  # (from 2026-12-07; a factor no watch writes — not a positive number — is dropped)
            str(g): float(c) for g, c in (doc.get("odds_factors") or {}).items() if 0.0 < float(c) < math.inf
        }
        self.groups = {
            # (before 2026-12-07 without the predictions: counted from the restore on)
            str(g): [*(float(v) for v in sums), 0.0, 0.0][:7]
            for g, sums in (doc.get("groups") or {}).items()
            if len(sums) in (5, 7)
        }
