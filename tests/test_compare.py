"""The champion/challenger comparison (:mod:`monitor.compare`): its running statistics, its state, its decision rule
and the rule's anytime validity, on simulated streams (pure: no servers)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from scipy import stats

from monitor.compare import (
    OTHER,
    Comparison,
    confidence_radius,
    first_promotions,
    gain_bounds,
    mcnemar_p_value,
    tuned_rho,
)
from monitor.metric_set import log_loss_of
from streaming.errors import SnapshotCorruptError

ROOT = Path(__file__).resolve().parent.parent
Event = tuple[bool, float, float, tuple[str, ...]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def arms(rng: np.random.Generator, n: int, *, champion_noise: float, challenger_noise: float) -> tuple[np.ndarray, ...]:
    """Labels and both arms' probabilities: each arm sees the true log-odds blurred by its own noise (less: better)."""
    logit = rng.normal(-1.0, 1.5, n)
    labels = rng.random(n) < sigmoid(logit)
    champion = sigmoid(logit + rng.normal(0.0, champion_noise, n))
    challenger = sigmoid(logit + rng.normal(0.0, challenger_noise, n))
    return labels, champion, challenger


def events(seed: int, n: int, *, champion_noise: float = 1.0, challenger_noise: float = 1.0) -> list[Event]:
    labels, champion, challenger = arms(np.random.default_rng(seed), n, champion_noise=champion_noise,
                                        challenger_noise=challenger_noise)  # fmt: skip
    segments = [f"Month={month}" for month in np.random.default_rng(seed + 1).choice(["Feb", "Mar", "May"], n)]
    return [
        (bool(y), float(a), float(b), (segment,))
        for y, a, b, segment in zip(labels, champion, challenger, segments, strict=True)
    ]


def losses(labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    """River's clamped log loss, vectorised (as :func:`~monitor.metric_set.log_loss_of`)."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return np.where(labels, -np.log(p), -np.log(1 - p))


def feed(comparison: Comparison, stream: list[Event]) -> None:
    for label, p_champion, p_challenger, segments in stream:
        comparison.update(label, p_champion, p_challenger, segments)


def first_promotion_of(comparison: Comparison, stream: list[Event]) -> int:
    """The labels after which the class first says promote, checked after every event (0: never)."""
    for label, p_champion, p_challenger, _ in stream:
        comparison.update(label, p_champion, p_challenger)
        if comparison.labels >= comparison.min_labels and comparison.result().decision == "promote":
            return comparison.labels
    return 0


def is_plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(is_plain(item) for item in value)
    return type(value) in (int, float, str)


# -- running statistics ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [False, True])
def test_running_mean_and_variance_match_numpy(offset):
    """Welford's update against numpy's two-pass figures; with ``offset`` the champion is confidently wrong on every
    event (loss ~29.9), so the difference's mean is ~500 times its spread: a sum-of-squares variance loses digits."""
    rng = np.random.default_rng(7)
    n = 20_000
    labels, champion, challenger = arms(rng, n, champion_noise=1.0, challenger_noise=0.5)
    if offset:
        labels, champion = np.ones(n, dtype=bool), np.full(n, 1e-13)
        challenger = rng.uniform(0.45, 0.55, n)
    else:
        champion[:3] = [np.inf, -np.inf, 1.0]  # clamped like any probability
    segments = rng.choice(["a", "b"], n)
    comparison = Comparison()
    for y, a, b, segment in zip(labels, champion, challenger, segments, strict=True):
        comparison.update(bool(y), float(a), float(b), (str(segment),))
    loss_a = np.array([log_loss_of(bool(y), float(p)) for y, p in zip(labels, champion, strict=True)])
    loss_b = np.array([log_loss_of(bool(y), float(p)) for y, p in zip(labels, challenger, strict=True)])
    d = loss_a - loss_b
    result = comparison.result()
    assert result.labels == n
    assert result.loss_difference == pytest.approx(np.mean(d), rel=1e-12)
    assert result.difference_std**2 == pytest.approx(np.var(d), rel=1e-12)
    assert result.champion_log_loss == pytest.approx(np.mean(loss_a), rel=1e-12)
    assert result.challenger_log_loss == pytest.approx(np.mean(loss_b), rel=1e-12)
    assert result.relative_gain == pytest.approx(np.mean(d) / np.mean(loss_a), rel=1e-12)
    for segment in result.segments:
        inside = segments == segment.name
        assert segment.labels == inside.sum()
        assert segment.loss_difference == pytest.approx(np.mean(d[inside]), rel=1e-12)
        assert segment.relative_gain == pytest.approx(np.mean(d[inside]) / np.mean(loss_a[inside]), rel=1e-12)
    right_a, right_b = (champion > 0.5) == labels, (challenger > 0.5) == labels
    assert (result.champion_accuracy, result.challenger_accuracy) == (right_a.mean(), right_b.mean())
    assert (result.mcnemar_b, result.mcnemar_c) == ((right_a & ~right_b).sum(), (~right_a & right_b).sum())


def test_the_confidence_sequence_is_the_paper_s_formula():
    alpha, horizon, t, variance = 0.05, 10_000, 2500, 0.09
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / horizon)
    expected = math.sqrt(variance) * math.sqrt(
        2 * (t * rho**2 + 1) / (t**2 * rho**2) * math.log(math.sqrt(t * rho**2 + 1) / alpha)
    )
    assert tuned_rho(alpha, horizon) == pytest.approx(rho, rel=1e-15)
    assert float(confidence_radius(t, variance, alpha=alpha, rho=rho)) == pytest.approx(expected, rel=1e-14)
    # tightest at the horizon: rho tuned for another count gives a wider interval there
    assert float(confidence_radius(t, variance, alpha=alpha, rho=tuned_rho(alpha, t))) < float(
        confidence_radius(t, variance, alpha=alpha, rho=rho)
    )
    assert float(confidence_radius(1, 1.0, alpha=alpha, rho=rho)) == math.inf  # one label: no variance yet


# -- state ------------------------------------------------------------------------------------------------------------
def test_dump_and_load_give_the_same_result_and_continue_identically():
    stream = events(3, 4000, challenger_noise=0.8)
    stream[10] = (True, math.nan, 0.5, ("Month=Feb",))  # skipped, and counted so
    stream[11] = (True, 0.5, 0.5, ("Month=Feb", "Month=Jun", "Month=Jul"))  # past max_segments: "other", once
    params = {"max_segments": 3, "min_labels": 100}
    comparison = Comparison(**params)
    feed(comparison, stream[:2000])
    doc = comparison.dump()
    assert is_plain(doc)
    restored = Comparison.load(msgpack.unpackb(msgpack.packb(doc)), **params)
    assert restored.result() == comparison.result()
    assert restored.labels == comparison.labels == 1999
    feed(comparison, stream[2000:])
    feed(restored, stream[2000:])
    assert restored.result().to_dict() == comparison.result().to_dict()  # exactly: the same floats
    assert restored.dump() == comparison.dump()
    assert Comparison.load(None, **params).dump() == Comparison(**params).dump()


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("layout", 2),
        ("overall", [10, 0.1, 0.2]),  # a field short
        ("overall", [-1, 0.1, 0.2, 3.0]),  # a negative count
        ("overall", [10, "0.1", 0.2, 3.0]),
        ("overall", [10, math.inf, 0.2, 3.0]),
        ("overall", [10, 0.1, -0.2, 3.0]),  # a negative sum of squares
        ("overall", [10.5, 0.1, 0.2, 3.0]),
        ("right", [True, 3]),
        ("discordant", None),
        ("segments", [["a", 1, 0.1, 0.0]]),
        ("segments", [[7, 1, 0.1, 0.0, 0.5]]),
        ("segments", [["a", 1, 0.1, 0.0, 0.5], ["a", 1, 0.1, 0.0, 0.5]]),
        ("other", {}),
        ("challenger_loss", None),
        ("skipped", None),
    ],
)
def test_a_malformed_dump_is_a_snapshot_corrupt_error(change, value):
    comparison = Comparison()
    feed(comparison, events(1, 50))
    doc = comparison.dump()
    doc[change] = value
    with pytest.raises(SnapshotCorruptError) as error:
        Comparison.load(doc)
    assert "\n" not in str(error.value) and "comparison state is malformed" in str(error.value)
    with pytest.raises(SnapshotCorruptError):
        Comparison.load({key: item for key, item in comparison.dump().items() if key != change})


# -- decisions --------------------------------------------------------------------------------------------------------
def test_a_twin_is_never_promoted():
    comparison = Comparison(min_labels=2)
    for label, p, _, segments in events(5, 3000):
        comparison.update(label, p, p, segments)
        if comparison.labels >= 2 and (comparison.labels < 100 or comparison.labels % 25 == 0):
            result = comparison.result()
            assert result.decision == "undecided", result.reason
            assert (result.difference_lower, result.difference_upper) == (0.0, 0.0)
            assert (result.gain_lower, result.gain_upper) == (0.0, 0.0)
            assert (result.mcnemar_b, result.mcnemar_c, result.mcnemar_p) == (0, 0, 1.0)
            assert "not above min_gain" in result.reason
    result = comparison.result()
    assert not result.blocking_segments and {s.gain_lower for s in result.segments} == {0.0}


def test_a_better_challenger_is_promoted_and_a_worse_one_is_worse():
    stream = events(11, 6000, champion_noise=1.2, challenger_noise=0.6)
    better, worse = Comparison(), Comparison()
    promoted_at, decisions = None, set()
    for label, p_champion, p_challenger, segments in stream:
        better.update(label, p_champion, p_challenger, segments)
        worse.update(label, p_challenger, p_champion, segments)  # the arms swapped
        if better.labels % 50 == 0:
            if promoted_at is None and better.result().decision == "promote":
                promoted_at = better.labels
            decisions.add(worse.result().decision)
    assert promoted_at is not None and 1000 <= promoted_at < 6000
    assert better.result().gain_lower > 0 and better.result().mcnemar_c > better.result().mcnemar_b
    assert "promote" not in decisions
    assert worse.result().decision == "worse" and worse.result().gain_upper < 0
    assert "confidently worse" in worse.result().reason
    early = Comparison()
    feed(early, stream[:999])
    assert early.result().decision == "undecided" and early.result().reason.startswith("999 labels of the 1000")
    slightly = Comparison()  # a little worse, not yet confidently: its interval still holds 0
    feed(slightly, events(46, 1500, champion_noise=1.0, challenger_noise=1.1))
    result = slightly.result()
    assert result.relative_gain < -0.05 and result.gain_upper > 0 and result.decision == "undecided"


def test_min_gain_is_a_strict_lower_bound_on_the_relative_gain():
    stream = events(11, 6000, champion_noise=1.2, challenger_noise=0.6)
    comparison = Comparison()
    feed(comparison, stream)
    lower = comparison.result().gain_lower
    at_the_bound = Comparison.load(comparison.dump(), min_gain=lower)
    below = Comparison.load(comparison.dump(), min_gain=lower * 0.99)
    assert at_the_bound.result().decision == "undecided" and below.result().decision == "promote"


def test_the_class_and_the_vectorised_rule_promote_at_the_same_event():
    rng = np.random.default_rng(17)
    found = []
    for stream_seed, noise in enumerate([1.0, 1.0, 1.0, 0.85, 0.8, 0.75, 0.7, 0.6]):
        stream = events(100 + stream_seed, 2000, champion_noise=1.0, challenger_noise=noise)
        params = {"min_labels": int(rng.integers(20, 200)), "min_gain": float(rng.choice([0.0, 0.01])), "horizon": 500}
        loss_a = [log_loss_of(y, a) for y, a, _, _ in stream]
        loss_b = [log_loss_of(y, b) for y, _, b, _ in stream]
        vectorised = int(first_promotions(np.array(loss_a), np.array(loss_b), **params)[0])
        assert first_promotion_of(Comparison(**params), stream) == vectorised
        found.append(vectorised)
    assert any(found) and not all(found)  # both outcomes compared
    twin = np.array([log_loss_of(y, a) for y, a, _, _ in events(99, 300)])
    assert first_promotions(twin, twin, min_labels=2)[0] == 0  # the interval [0, 0] is not above min_gain 0


def test_checking_after_every_event_keeps_false_promotions_under_alpha():
    """A/A: 200 streams of 2,000 events whose arms are equally good (independent noise of the same size), judged
    after every event from 50 labels on, the sequence tuned to the stream's length: the confidence sequence promotes
    at most alpha of them, either arm as the challenger (its two sides); a fixed-sample 95 % interval judged as often
    promotes far more, so this test can tell a rule that is not anytime-valid."""
    rng = np.random.default_rng(2026)
    streams, n, min_labels = 200, 2000, 50
    labels, champion, challenger = arms(rng, streams * n, champion_noise=1.0, challenger_noise=1.0)
    loss_a = losses(labels, champion).reshape(streams, n)
    loss_b = losses(labels, challenger).reshape(streams, n)
    promoted = first_promotions(loss_a, loss_b, min_labels=min_labels, horizon=n) > 0
    swapped = first_promotions(loss_b, loss_a, min_labels=min_labels, horizon=n) > 0
    assert (promoted | swapped).mean() <= 0.05

    d = loss_a - loss_b
    t = np.arange(1, n + 1)
    mean = np.cumsum(d, axis=1) / t
    fixed_lower = mean - 1.96 * np.sqrt(np.maximum(np.cumsum(d * d, axis=1) / t - mean**2, 0) / t)
    naive = ((fixed_lower > 0) & (t >= min_labels)).any(axis=1)
    assert naive.mean() > 0.05 + 0.05  # well above: the check measures what it claims
    assert naive.mean() > 3 * promoted.mean()


# -- segments ---------------------------------------------------------------------------------------------------------
def segmented(seed: int, n: int) -> list[Event]:
    """The challenger is better on returning visitors, much worse on new ones (15 % of the events)."""
    rng = np.random.default_rng(seed)
    new = rng.random(n) < 0.15
    logit = rng.normal(-1.0, 1.5, n)
    labels = rng.random(n) < sigmoid(logit)
    champion = sigmoid(logit + rng.normal(0.0, 1.0, n))
    challenger = sigmoid(logit + rng.normal(0.0, np.where(new, 1.4, 0.5), n))
    return [
        (bool(y), float(a), float(b), ("VisitorType=New_Visitor" if is_new else "VisitorType=Returning_Visitor",))
        for y, a, b, is_new in zip(labels, champion, challenger, new, strict=True)
    ]


def test_a_challenger_much_worse_in_one_segment_is_blocked_naming_it():
    stream = segmented(23, 8000)
    comparison, overall_only = Comparison(), Comparison()
    feed(comparison, stream)
    feed(overall_only, [(y, a, b, ()) for y, a, b, _ in stream])
    result = comparison.result()
    assert overall_only.result().decision == "promote"  # better overall: only the segment holds it back
    assert result.gain_lower > 0 and result.decision == "undecided"
    assert result.blocking_segments == ("VisitorType=New_Visitor",)
    assert "VisitorType=New_Visitor" in result.reason and "Returning" not in result.reason
    by_name = {segment.name: segment for segment in result.segments}
    assert (
        by_name["VisitorType=New_Visitor"].relative_gain < -0.02 < by_name["VisitorType=Returning_Visitor"].gain_lower
    )
    few = Comparison(segment_min_labels=5000)  # too few new visitors to block
    feed(few, stream)
    assert few.result().decision == "promote" and few.result().blocking_segments == ()
    lenient = Comparison(segment_margin=1.0)
    feed(lenient, stream)
    assert lenient.result().decision == "promote"


def test_names_past_max_segments_count_once_under_other():
    comparison = Comparison(max_segments=2)
    comparison.update(True, 0.9, 0.8, ("a",))
    comparison.update(True, 0.9, 0.8, ("b", "c", "d"))  # c and d: not kept, the event counts once in "other"
    comparison.update(False, 0.2, 0.3, ("c",))
    comparison.update(False, 0.2, 0.3, (OTHER,))  # "other" is that same bucket
    comparison.update(False, 0.2, 0.3, ("a", "b"))
    labels = {segment.name: segment.labels for segment in comparison.result().segments}
    assert labels == {"a": 2, "b": 2, OTHER: 3}
    merged = Comparison.load(comparison.dump(), max_segments=1)  # b's events join "other"
    result = merged.result()
    assert {segment.name: segment.labels for segment in result.segments} == {"a": 2, OTHER: 5}
    # the second event was in b and in "other" (for c and d): merged, it counts twice
    d = [log_loss_of(y, a) - log_loss_of(y, b) for y, a, b in [(True, 0.9, 0.8)] * 2 + [(False, 0.2, 0.3)] * 3]
    assert result.segments[1].loss_difference == pytest.approx(np.mean(d), rel=1e-12)


def test_segment_intervals_are_bonferroni_corrected():
    stream = events(31, 3000, challenger_noise=0.9)
    one, two = Comparison(), Comparison()
    feed(one, [(y, a, b, ("all",)) for y, a, b, _ in stream])
    feed(two, [(y, a, b, ("all", "again")) for y, a, b, _ in stream])
    overall = one.result()
    alone = one.result().segments[0]
    assert (alone.gain_lower, alone.gain_upper) == (overall.gain_lower, overall.gain_upper)  # k = 1: alpha itself
    halved = two.result().segments[0]
    _, gain = gain_bounds(
        overall.labels,
        overall.loss_difference,
        overall.difference_std**2,
        overall.champion_log_loss,
        alpha=0.025,
        rho=tuned_rho(0.025, 10_000),
    )
    assert halved.gain_lower == pytest.approx(float(gain.lower), rel=1e-9) and halved.gain_lower < alone.gain_lower


# -- inputs and McNemar -----------------------------------------------------------------------------------------------
def test_nan_is_skipped_and_infinities_are_clamped():
    comparison = Comparison()
    comparison.update(True, math.nan, 0.5)
    comparison.update(False, 0.5, math.nan)
    comparison.update(True, math.inf, -math.inf)
    result = comparison.result()
    assert (result.labels, result.skipped) == (1, 2)
    assert result.loss_difference == log_loss_of(True, 1 - 1e-15) - log_loss_of(True, 1e-15)
    assert (result.champion_accuracy, result.challenger_accuracy, result.mcnemar_b) == (1.0, 0.0, 1)
    assert (result.gain_lower, result.gain_upper) == (-math.inf, math.inf)  # one label: no interval yet
    assert Comparison().result().labels == 0 and Comparison().result().decision == "undecided"


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (3, 9), (50, 50), (40, 60), (51, 50), (300, 250), (10, 2000)])
def test_mcnemar_p_value_is_exact_for_few_discordant_events_and_chi_square_above(b, c):
    if b + c <= 100:
        expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    else:
        expected = stats.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1)
    assert mcnemar_p_value(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_p_value(b, c) == mcnemar_p_value(c, b)


@pytest.mark.parametrize(
    "params",
    [{"alpha": 0.0}, {"alpha": 1.0}, {"min_labels": 0}, {"horizon": 0}, {"max_segments": -1}, {"segment_margin": -0.1}],
)
def test_invalid_parameters_are_refused(params):
    with pytest.raises(ValueError):
        Comparison(**params)


def test_the_bench_runs_and_writes_its_figures(tmp_path):
    """A smoke test of ``bench/compare.py`` with tiny loads (the figures belong to the bench)."""
    out = tmp_path / "compare.json"
    command = [sys.executable, str(ROOT / "bench" / "compare.py"), "--limit", "3000", "--streams", "20"]
    command += ["--events", "3000", "--power-streams", "10", "--power-events", "3000", "--cost-events", "2000"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import json

    result = json.loads(out.read_text())
    assert set(result) >= {"machine", "losses", "aa", "power", "real", "cost"}
    assert result["aa"]["swap"]["streams"] == 20 and result["cost"]["ns_per_update"]["no_segment"] > 0
