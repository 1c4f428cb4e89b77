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
  ``drift_max_features`` numeric features seen, a fixed list kept in snapshots).

Blocks are counted in labelled events, so the signals are a function of the stream, not of the rate.

>>> block = BlockSignals(max_features=2)
>>> for at, (label, p, x) in enumerate([(True, 0.9, {"a": 1.0, "c": "x"}), (False, 0.2, {"a": 3.0, "b": 5})]):
...     block.add(label, p, x, {"p0": at + 1})
>>> signals = block.flush()
>>> {k: v for k, v in signals.items() if not k.startswith("label_run")}
{'label_rate': 0.5, 'pred_rate': 0.5, 'mean_p': 0.55, 'feature:a': 2.0, 'feature:b': 5.0}
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

from collections.abc import Mapping
from typing import Any

__all__ = ["BlockSignals"]

_NAN = float("nan")


class BlockSignals:
    """Accumulates one block of labelled events; :meth:`flush` returns its signals and starts the next."""

    def __init__(self, max_features: int) -> None:
        self.max_features = max_features
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
        self.longest = (0, False, 0)  # (length, value, stream position before its first event)

    def add(self, label: bool, p: float, features: dict[str, Any], positions: Mapping[Any, int]) -> None:
        """One labelled event: its label, the score it got before learning, its features, and the consumer
        positions that already include it (their sum less one: the stream position just before it)."""
        self.count += 1
        if label == self.run_label:
            self.run_length += 1
        else:
            self.run_label, self.run_length, self.run_start = label, 1, sum(positions.values()) - 1
        if self.run_length > self.longest[0]:
            self.longest = (self.run_length, label, self.run_start)
        self.positives += label
        self.predicted += p > 0.5
        self.p_sum += p
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
