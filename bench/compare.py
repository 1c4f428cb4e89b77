"""The champion/challenger comparison (:mod:`monitor.compare`): are its false promotions within ``alpha`` when it is
read after every event, how many labels does it need to find a better challenger, and what does an update cost?

Everything starts from per-event log losses of the bundled dataset (:func:`~streaming.local.dataset.read_events`,
12,330 sessions in file order): two plain river pipelines (:func:`~streaming.model.build_pipeline`), the champion
with learning rate 0.01 (the default model) and a challenger with 0.05, each scoring an event before learning it.

1. **A/A calibration**: ``--streams`` simulated streams of ``--events`` events whose challenger is as good as the
   champion, judged after *every* event by the rule of :class:`~monitor.compare.Comparison` with its defaults
   (:func:`~monitor.compare.first_promotions`, the same rule vectorised; also with ``min_labels`` 100); the rate of
   streams ever promoted, with its 95 % Wilson interval, against the same streams judged by a fixed-sample 95 %
   interval (mean ± 1.96 σ/√t) read as often. Two null constructions, each event a bootstrap draw of the dataset's
   events (independent, with replacement):

   * ``swap``: the event's two real losses (lr 0.01, lr 0.05), assigned to champion and challenger by a fair coin —
     the per-event difference is ± the real one (as noisy as two real arms are different, symmetric, mean 0);
   * ``independent``: the champion's loss of one drawn event against the champion's loss of another, independent
     draw — a much noisier difference (two unrelated events), the construction the brief names first.

2. **Power**: ``--power-streams`` streams of up to ``--power-events`` events built like ``swap``, then the
   challenger's loss multiplied by ``1 - gain``: the expected relative log-loss gain is exactly ``gain`` (1 % and
   5 %). The labels at which each stream is first promoted (default rule): the median, and the 80th percentile — the
   labels needed for 80 % power. And the **real case**: the two pipelines in dataset order through
   :class:`~monitor.compare.Comparison` (defaults, segments by ``VisitorType``), judged after every event: the first
   event the rule says promote or worse, and where it stands at the end.

3. **Cost**: :meth:`~monitor.compare.Comparison.update` per event (the real events, cycled), without segments and
   with one; :meth:`~monitor.compare.Comparison.result` per call. Best of 3 rounds.

Prints the figures and writes JSON (``--out``, default ``bench/results/compare.json``). ``--limit`` reads fewer
events (the smoke test). Run: ``.venv/bin/python bench/compare.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.compare import Comparison, first_promotions
from monitor.metric_set import log_loss_of
from streaming.local.dataset import read_events
from streaming.model import build_pipeline
from streaming.vocabulary import ModelSpec

CHAMPION_LR, CHALLENGER_LR = 0.01, 0.05
SEGMENT_FEATURE = "VisitorType"
GAINS = (0.01, 0.05)
CELLS_PER_CHUNK = 2_000_000  # streams x events simulated at once: 16 MB per array


@dataclass
class Scored:
    """Each event of the dataset, scored by both pipelines before they learned it."""

    labels: list[bool]
    champion: list[float]
    challenger: list[float]
    segments: list[tuple[str, ...]]

    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([log_loss_of(y, p) for y, p in zip(self.labels, self.champion, strict=True)]),
            np.array([log_loss_of(y, p) for y, p in zip(self.labels, self.challenger, strict=True)]),
        )


def score_dataset(limit: int | None) -> Scored:
    champion, _, _ = build_pipeline(ModelSpec(learning_rate=CHAMPION_LR))
    challenger, _, _ = build_pipeline(ModelSpec(learning_rate=CHALLENGER_LR))
    scored = Scored([], [], [], [])
    for event in read_events(limit=limit):
        x, y = event.features, bool(event.label)
        scored.labels.append(y)
        scored.champion.append(champion.predict_proba_one(x).get(True, 0.0))
        scored.challenger.append(challenger.predict_proba_one(x).get(True, 0.0))
        scored.segments.append((f"{SEGMENT_FEATURE}={x[SEGMENT_FEATURE]}",))
        champion.learn_one(x, y)
        challenger.learn_one(x, y)
    return scored


def simulate(
    rng: np.random.Generator, loss_a: np.ndarray, loss_b: np.ndarray, shape: tuple[int, int], construction: str
) -> tuple[np.ndarray, np.ndarray]:
    """Champion and challenger losses of ``shape`` (streams, events) under the null (see the module docstring)."""
    drawn = rng.integers(0, len(loss_a), shape)
    if construction == "independent":
        return loss_a[drawn], loss_a[rng.integers(0, len(loss_a), shape)]
    coin = rng.random(shape) < 0.5
    a, b = loss_a[drawn], loss_b[drawn]
    return np.where(coin, a, b), np.where(coin, b, a)


def fixed_sample_promotions(champion: np.ndarray, challenger: np.ndarray, min_labels: int) -> np.ndarray:
    """Whether each stream is ever promoted by a fixed-sample 95 % interval of the difference read after every event."""
    d = champion - challenger
    t = np.arange(1, d.shape[1] + 1)
    shift = d.mean(axis=1, keepdims=True)
    mean = np.cumsum(d - shift, axis=1) / t
    variance = np.maximum(np.cumsum((d - shift) ** 2, axis=1) / t - mean**2, 0.0)
    lower = mean + shift - 1.96 * np.sqrt(variance / t)
    return ((lower > 0) & (t >= min_labels)).any(axis=1)


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The 95 % Wilson score interval of a binomial proportion ``k / n``."""
    p, z2 = k / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(centre - half, 0.0), 4), round(min(centre + half, 1.0), 4)]


def calibrate(rng: np.random.Generator, loss_a: np.ndarray, loss_b: np.ndarray, args: argparse.Namespace) -> dict:
    result: dict[str, Any] = {}
    chunk = max(1, CELLS_PER_CHUNK // args.events)
    for construction in ("swap", "independent"):
        promoted = {1000: 0, 100: 0}
        naive = 0
        for start in range(0, args.streams, chunk):
            shape = (min(chunk, args.streams - start), args.events)
            champion, challenger = simulate(rng, loss_a, loss_b, shape, construction)
            for min_labels in promoted:
                promoted[min_labels] += int((first_promotions(champion, challenger, min_labels=min_labels) > 0).sum())
            naive += int(fixed_sample_promotions(champion, challenger, 1000).sum())
        figures = {
            "streams": args.streams,
            "events": args.events,
            "false_promotions": promoted[1000],
            "rate": promoted[1000] / args.streams,
            "rate_95": wilson(promoted[1000], args.streams),
            "min_labels_100": {"false_promotions": promoted[100], "rate_95": wilson(promoted[100], args.streams)},
            "fixed_sample_interval": {"false_promotions": naive, "rate_95": wilson(naive, args.streams)},
        }
        result[construction] = figures
        print(
            f"A/A {construction:<11}: {promoted[1000]}/{args.streams} streams falsely promoted, rate "
            f"{figures['rate']:.2%} (95 % {figures['rate_95'][0]:.2%}–{figures['rate_95'][1]:.2%}); with min_labels "
            f"100: {promoted[100]}; fixed-sample 95 % interval read as often: {naive} "
            f"({naive / args.streams:.1%})"
        )
    return result


def power(rng: np.random.Generator, loss_a: np.ndarray, loss_b: np.ndarray, args: argparse.Namespace) -> dict:
    result: dict[str, Any] = {}
    chunk = max(1, CELLS_PER_CHUNK // args.power_events)
    for gain in GAINS:
        firsts = []
        for start in range(0, args.power_streams, chunk):
            shape = (min(chunk, args.power_streams - start), args.power_events)
            champion, challenger = simulate(rng, loss_a, loss_b, shape, "swap")
            firsts.append(first_promotions(champion, challenger * (1 - gain)))
        first = np.concatenate(firsts).astype(np.float64)
        first[first == 0] = np.inf  # never within the stream: counted as later than any
        # the labels by which half (80 %) of the streams were promoted: an observed count, never interpolated
        median, p80 = (float(np.percentile(first, q, method="inverted_cdf")) for q in (50, 80))
        figures = {
            "streams": args.power_streams,
            "max_events": args.power_events,
            "promoted": float(np.isfinite(first).mean()),
            "median_labels": None if math.isinf(median) else round(median),
            "labels_for_80pct_power": None if math.isinf(p80) else round(p80),
        }
        result[f"{gain:.0%}"] = figures
        print(
            f"power, {gain:.0%} relative gain: promoted in {figures['promoted']:.0%} of {args.power_streams} streams "
            f"within {args.power_events:,} labels; median {_labels(median)}, 80 % power at {_labels(p80)} labels"
        )
    return result


def _labels(value: float) -> str:
    return "never" if math.isinf(value) else f"{round(value):,}"


def real_case(scored: Scored) -> dict:
    """The two pipelines in dataset order, judged after every event."""
    comparison = Comparison()
    first: dict[str, int | None] = {"promote": None, "worse": None}
    for y, a, b, segments in zip(scored.labels, scored.champion, scored.challenger, scored.segments, strict=True):
        comparison.update(y, a, b, segments)
        decision = comparison.result().decision
        if decision in first and first[decision] is None:
            first[decision] = comparison.labels
    final = comparison.result()
    print(
        f"real case, lr {CHAMPION_LR} vs lr {CHALLENGER_LR} in dataset order ({final.labels:,} events): first promote "
        f"at {first['promote'] or 'never'}, first worse at {first['worse'] or 'never'}; at the end {final.decision}: "
        f"{final.reason}"
    )
    return {
        "champion_lr": CHAMPION_LR,
        "challenger_lr": CHALLENGER_LR,
        "first_promote_at": first["promote"],
        "first_worse_at": first["worse"],
        "final": final.to_dict(),
    }


def cost(scored: Scored, events: int) -> dict:
    """ns per update (no segment, one segment) and µs per result, best of 3 rounds over the real events cycled."""
    n = len(scored.labels)
    rows = [
        (scored.labels[i % n], scored.champion[i % n], scored.challenger[i % n], scored.segments[i % n])
        for i in range(events)
    ]
    per_update: dict[str, float] = {}
    per_result: dict[str, float] = {}
    for name, with_segment in (("no_segment", False), ("one_segment", True)):
        best = math.inf
        for _ in range(3):
            comparison = Comparison()
            update = comparison.update
            started = time.perf_counter_ns()
            if with_segment:
                for y, a, b, segments in rows:
                    update(y, a, b, segments)
            else:
                for y, a, b, _ in rows:
                    update(y, a, b)
            best = min(best, (time.perf_counter_ns() - started) / events)
        per_update[name] = round(best, 1)
        calls = 2000
        started = time.perf_counter_ns()
        for _ in range(calls):
            comparison.result()
        per_result[name] = round((time.perf_counter_ns() - started) / calls / 1000, 1)
    print(
        f"cost: update {per_update['no_segment']:.0f} ns/event without segments, {per_update['one_segment']:.0f} ns "
        f"with one; result() {per_result['no_segment']:.1f} µs (with {SEGMENT_FEATURE}'s segments "
        f"{per_result['one_segment']:.1f} µs)"
    )
    return {"events": events, "ns_per_update": per_update, "us_per_result": per_result}


def describe(loss_a: np.ndarray, loss_b: np.ndarray) -> dict:
    d = loss_a - loss_b
    figures = {
        "events": len(d),
        "champion_mean": round(float(loss_a.mean()), 5),
        "challenger_mean": round(float(loss_b.mean()), 5),
        "difference_std": round(float(d.std()), 5),
        "correlation": round(float(np.corrcoef(loss_a, loss_b)[0, 1]), 4),
        "relative_gain": round(float(d.mean() / loss_a.mean()), 5),
    }
    print(
        f"per-event log loss, {len(d):,} events: champion (lr {CHAMPION_LR}) {figures['champion_mean']:.4f}, "
        f"challenger (lr {CHALLENGER_LR}) {figures['challenger_mean']:.4f} (relative gain "
        f"{figures['relative_gain']:+.2%}); difference σ {figures['difference_std']:.4f}, correlation "
        f"{figures['correlation']:.3f}"
    )
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    scored = score_dataset(args.limit)
    loss_a, loss_b = scored.losses()
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "note": "shared 2-core VM: the per-update cost is noisy; the statistics are seeded (--seed)",
        },
        "settings": {
            "seed": args.seed,
            "rule": {"alpha": 0.05, "min_gain": 0.0, "min_labels": 1000, "horizon": 10_000},
            "dataset_events": len(scored.labels),
        },
        "losses": describe(loss_a, loss_b),
    }
    sections = (
        ("aa", lambda: calibrate(rng, loss_a, loss_b, args)),
        ("power", lambda: power(rng, loss_a, loss_b, args)),
        ("real", lambda: real_case(scored)),
        ("cost", lambda: cost(scored, args.cost_events)),
    )
    for name, section in sections:
        began = time.perf_counter()
        result[name] = section()
        result[name]["seconds"] = round(time.perf_counter() - began, 2)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="A/A streams per null construction")
    parser.add_argument("--events", type=int, default=20_000, help="events per A/A stream, each one a check")
    parser.add_argument("--power-streams", type=int, default=200, help="streams per gain")
    parser.add_argument("--power-events", type=int, default=400_000, help="the longest a power stream runs")
    parser.add_argument("--cost-events", type=int, default=300_000, help="updates per timing round")
    parser.add_argument("--limit", type=int, default=None, help="read only this many events of the dataset")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results/compare.json"))
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['seconds']} s; written to {args.out}")


if __name__ == "__main__":
    main()
