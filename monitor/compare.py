"""Champion/challenger comparison: is a challenger's log loss lower than the serving model's, checked at every event?

A challenger learns in shadow from the same labelled events as the champion (the serving model); on every labelled
event both score *before* either learns it. :class:`Comparison` keeps, per event, the paired difference of river's
log loss (:func:`~monitor.metric_set.log_loss_of`) ``d = loss_champion - loss_challenger`` (positive: the challenger
is better) and decides from its running mean.

**Anytime-valid.** The comparison is read after every ~100 events for as long as the challenger runs, so a
fixed-sample interval (mean ± 1.96 σ/√t) checked that often promotes a twin of the champion far more often than
5 % of the time (the tests and ``bench/compare.py`` measure it). The interval here is the asymptotic confidence
sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2021, *Time-uniform central limit theory and asymptotic
confidence sequences*: its Gaussian-mixture AsympCS), two-sided at level ``alpha`` for every event count ``t`` at
once::

    mean_t ± sigma_t * sqrt( 2 (t rho² + 1) / (t² rho²) * log( sqrt(t rho² + 1) / alpha ) )

``mean_t`` and ``sigma_t²`` (the variance over ``t``, not ``t - 1``, as in the paper) are running statistics kept by
Welford's update (numerically stable over millions of events); ``rho`` makes it tightest at ``t* = horizon`` labels:
``rho = sqrt((-2 log alpha + log(-2 log alpha + 1)) / t*)`` (:func:`tuned_rho`). It is Robbins' normal mixture
boundary with the variance estimated, the mixture of the mSPRT of Johari, Koomen, Pekelis & Walsh (2017, *Peeking
at A/B tests*), chosen over that because it gives an interval — a bound on the *relative gain* that ``min_gain`` is
compared with — rather than a p-value only, and needs no variance known in advance. Being asymptotic, it is not
exact for the first events, where ``sigma_t`` rests on a handful of differences: ``min_labels`` (1,000 by default)
keeps the decision away from them.
A promotion needs the interval's lower end above ``min_gain``, one of its two ends: the false-promotion rate of a
challenger no better than the champion is at most ``alpha`` (about ``alpha / 2`` for the symmetric difference of an
A/A comparison). The differences are taken as draws from one distribution: the comparison judges the events it has
seen, and a challenger that learns faster from a cold start can lead early and fall behind later (the real case of
``bench/compare.py``).

**Relative gain** is ``mean d / mean loss_champion``; its interval is the interval of ``d`` divided by the champion's
running mean loss, which is treated as known (its own sampling error is left out: with ``min_gain = 0`` the
decision is the sign of the lower end of ``d``, which the division does not change).

**The decision** (:attr:`ComparisonResult.decision`):

* ``"promote"``: ``labels >= min_labels``, the lower end of the relative gain ``> min_gain`` (strictly: identical
  twins, whose interval is exactly ``[0, 0]``, are never promoted), and no segment with ``segment_min_labels`` labels
  or more has a point relative gain below ``-segment_margin``;
* ``"worse"``: ``labels >= min_labels`` and the upper end of the relative gain ``< 0``: the challenger is confidently
  worse (an operator may remove it);
* ``"undecided"`` otherwise; ``reason`` says which condition holds it back.

**Segments** (e.g. ``"VisitorType=New_Visitor"``): each event counts in each segment it names. Per segment the
interval is at level ``alpha / k`` (Bonferroni over the ``k`` segments reported then, at most ``max_segments + 1``),
so the chance that any of them is wrong stays below ``alpha``. At most ``max_segments`` names are kept, the first
ones seen; events of later names are counted once under :data:`OTHER` (which also blocks a promotion: its events
are real ones the challenger would serve). A segment named ``"other"`` is that same bucket.

**McNemar** (reported, never used to decide) on the events the arms classify differently at 0.5 (``p > 0.5`` is
the positive label, river's rule): ``b`` events only the champion got right, ``c`` only the challenger; the two-sided
p-value is the exact binomial one while ``b + c <= 100``, the chi-square with continuity correction above, where
the two agree within 0.001 (and the exact sum would cost more than the rest of :meth:`Comparison.result`).

**Inputs**: a NaN probability skips the event (counted in ``skipped``); infinities are clamped by river's log loss
like any probability outside ``[1e-15, 1 - 1e-15]``.

:func:`first_promotions` applies the same rule, vectorised with numpy, to many simulated streams at once (the
benchmark's calibration); it shares :func:`gain_bounds` with :meth:`Comparison.result`.

>>> comparison = Comparison(min_labels=30)
>>> for label in [True, False, False] * 20:  # the champion always says 1/3; the challenger knows better
...     _ = comparison.update(label, 1 / 3, 0.6 if label else 0.2)
>>> result = comparison.result()
>>> result.decision, result.labels, round(result.relative_gain, 3)
('promote', 60, 0.499)
>>> result.reason
'relative log-loss gain +49.88% (at least +5.20%, above min_gain 0.00%) over 60 labels'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from monitor.metric_set import log_loss_of
from streaming.errors import SnapshotCorruptError
from streaming.kernel import (
    T_B,
    T_C,
    T_CHALLENGER_LOSS,
    T_CHALLENGER_RIGHT,
    T_CHAMPION_LOSS,
    T_CHAMPION_RIGHT,
    T_DIFFERENCE,
    T_LAST_CHAMPION,
    T_M2,
    T_MEAN,
    T_N,
    T_SKIPPED,
    TALLY_SIZE,
)

__all__ = [
    "OTHER",
    "Bounds",
    "Comparison",
    "ComparisonResult",
    "SegmentResult",
    "confidence_radius",
    "first_promotions",
    "gain_bounds",
    "mcnemar_p_value",
    "tuned_rho",
]

#: The segment that counts the events of the names past ``max_segments``.
OTHER = "other"
#: The layout of :meth:`Comparison.dump`.
LAYOUT = 1
#: McNemar's exact binomial p-value up to this many discordant events, the chi-square above.
EXACT_MCNEMAR_UP_TO = 100
_TINY = 1e-300  # the smallest champion loss divided by: only an empty comparison has a mean loss of 0

Decision = Literal["promote", "worse", "undecided"]
FloatArray = npt.NDArray[np.float64]


class Bounds(NamedTuple):
    """An estimate and its confidence interval (numpy arrays: one value per stream and event, or 0-d)."""

    estimate: FloatArray
    lower: FloatArray
    upper: FloatArray


def tuned_rho(alpha: float, horizon: float) -> float:
    """The mixture's ``rho`` that makes the confidence sequence tightest at ``horizon`` labels.

    >>> round(tuned_rho(0.05, 10_000), 5)
    0.02817
    """
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / horizon)


def confidence_radius(labels: npt.ArrayLike, variance: npt.ArrayLike, *, alpha: float, rho: float) -> FloatArray:
    """Half the width of the asymptotic confidence sequence after ``labels`` events of the given ``variance``.

    Infinite below 2 labels (no variance yet); ``0`` when the variance is ``0``.

    >>> confidence_radius([1, 2, 1000], [1.0, 0.0, 1.0], alpha=0.05, rho=tuned_rho(0.05, 1000)).round(4)
    array([  inf, 0.   , 0.096])
    """
    t = np.asarray(labels, dtype=np.float64)
    counted = np.maximum(t, 1.0)
    rho2 = rho * rho
    scaled = counted * rho2 + 1.0
    margin = np.sqrt(2.0 * scaled / (counted * counted * rho2) * np.log(np.sqrt(scaled) / alpha))
    spread = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))  # a running sum may dip below 0
    radius: FloatArray = np.where(t >= 2, spread * margin, np.inf)
    return radius


def gain_bounds(
    labels: npt.ArrayLike,
    mean_difference: npt.ArrayLike,
    variance: npt.ArrayLike,
    mean_champion: npt.ArrayLike,
    *,
    alpha: float,
    rho: float,
) -> tuple[Bounds, Bounds]:
    """The loss difference's mean and confidence sequence, and the same divided by the champion's mean loss.

    >>> difference, gain = gain_bounds(1000, 0.01, 0.04, 0.5, alpha=0.05, rho=tuned_rho(0.05, 1000))
    >>> round(float(difference.lower), 4), round(float(gain.estimate), 4), round(float(gain.lower), 4)
    (-0.0092, 0.02, -0.0184)
    """
    mean = np.asarray(mean_difference, dtype=np.float64)
    radius = confidence_radius(labels, variance, alpha=alpha, rho=rho)
    difference = Bounds(mean, mean - radius, mean + radius)
    scale = np.maximum(np.asarray(mean_champion, dtype=np.float64), _TINY)
    return difference, Bounds(mean / scale, difference.lower / scale, difference.upper / scale)


def first_promotions(
    champion_losses: npt.ArrayLike,
    challenger_losses: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    min_gain: float = 0.0,
    min_labels: int = 1000,
    horizon: int = 10_000,
) -> npt.NDArray[np.int64]:
    """The labels after which :class:`Comparison` first says ``"promote"`` on each stream (a row), or ``0``: never.

    The per-event log losses of both arms, one row per stream (a 1-D array: one stream), judged after every event by
    the rule of :class:`Comparison` without segments (through the same :func:`gain_bounds`). The running mean and
    variance come from cumulative sums rather than Welford's update: the same values to about 1e-12.

    Two streams where the challenger halves the champion's loss: the second one's difference never varies, so its
    interval is a point from the second label on and only ``min_labels`` holds it back; a twin is never promoted.

    >>> champion = np.array([[0.7, 0.3] * 50, [0.5, 0.5] * 50])
    >>> first_promotions(champion, champion * 0.5, min_labels=10), first_promotions(champion, champion, min_labels=10)
    (array([35, 10]), array([0, 0]))
    """
    champion = np.atleast_2d(np.asarray(champion_losses, dtype=np.float64))
    difference = champion - np.atleast_2d(np.asarray(challenger_losses, dtype=np.float64))
    t = np.arange(1, champion.shape[1] + 1, dtype=np.float64)
    # The variance does not depend on a constant shift; centring each stream on its own mean keeps the running sum of
    # squares close to the variance times t, so subtracting the squared mean cancels few digits.
    shift = difference.mean(axis=1, keepdims=True)
    centred = difference - shift
    mean_centred = np.cumsum(centred, axis=1) / t
    variance = np.cumsum(centred * centred, axis=1) / t - mean_centred * mean_centred
    mean_champion = np.cumsum(champion, axis=1) / t
    rho = tuned_rho(alpha, horizon)
    _, gain = gain_bounds(t, mean_centred + shift, variance, mean_champion, alpha=alpha, rho=rho)
    promote = (t >= min_labels) & (gain.lower > min_gain)
    first: npt.NDArray[np.int64] = np.where(promote.any(axis=1), promote.argmax(axis=1) + 1, 0)
    return first


def mcnemar_p_value(b: int, c: int) -> float:
    """McNemar's two-sided p-value for ``b`` and ``c`` discordant events: exact binomial while ``b + c <= 100``,
    else chi-square (1 degree of freedom) with continuity correction.

    >>> mcnemar_p_value(0, 0), round(mcnemar_p_value(2, 10), 4), round(mcnemar_p_value(120, 80), 4)
    (1.0, 0.0386, 0.0057)
    """
    n = b + c
    if n == 0:
        return 1.0
    if n <= EXACT_MCNEMAR_UP_TO:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))  # exact integers: the division rounds once
        return min(1.0, 2 * tail / (1 << n))
    statistic = max(abs(b - c) - 1, 0) ** 2 / n
    return math.erfc(math.sqrt(statistic / 2))


@dataclasses.dataclass(frozen=True)
class SegmentResult:
    """One segment's comparison: its labels, mean loss difference and relative gain with its interval (at level
    ``alpha / segments``)."""

    name: str
    labels: int
    loss_difference: float
    relative_gain: float
    gain_lower: float
    gain_upper: float


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
    """What :meth:`Comparison.result` finds: both arms' figures, the intervals, McNemar, segments and the decision.

    Intervals are infinite until 2 labels; ``mcnemar_b``: events only the champion classified right, ``mcnemar_c``:
    only the challenger.
    """

    labels: int
    skipped: int
    champion_log_loss: float
    challenger_log_loss: float
    loss_difference: float
    difference_std: float
    difference_lower: float
    difference_upper: float
    relative_gain: float
    gain_lower: float
    gain_upper: float
    champion_accuracy: float
    challenger_accuracy: float
    mcnemar_b: int
    mcnemar_c: int
    mcnemar_p: float
    segments: tuple[SegmentResult, ...]
    decision: Decision
    reason: str
    blocking_segments: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (msgpack- and JSON-able but for infinite bounds before 2 labels)."""
        return {
            **dataclasses.asdict(self),
            "segments": [dataclasses.asdict(segment) for segment in self.segments],
            "blocking_segments": list(self.blocking_segments),
        }


class _Segment:
    """Running statistics of one segment: labels, the difference's mean and sum of squared deviations (Welford), the
    champion's summed loss."""

    __slots__ = ("champion", "m2", "mean", "n")

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0, champion: float = 0.0) -> None:
        self.n, self.mean, self.m2, self.champion = n, mean, m2, champion

    def add(self, difference: float, champion_loss: float) -> None:
        self.n += 1
        delta = difference - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (difference - self.mean)
        self.champion += champion_loss

    def merge(self, other: _Segment) -> None:
        """Add another segment's events (Chan et al.'s pairwise update of the mean and squared deviations)."""
        n = self.n + other.n
        if n == 0:
            return
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.mean += delta * other.n / n
        self.n = n
        self.champion += other.champion

    def dump(self) -> list[Any]:
        return [self.n, self.mean, self.m2, self.champion]

    @classmethod
    def load(cls, row: Any) -> _Segment:
        n, mean, m2, champion = row
        return cls(_count(n), _real(mean), _nonnegative(m2), _nonnegative(champion))


class Comparison:
    """The running comparison of a challenger with the champion on the same labelled events.

    Feed it every labelled event both arms scored before learning it (:meth:`update`, a few µs); read
    :meth:`result` whenever a decision is wanted (every ~100 events is cheap). Its state is plain values
    (:meth:`dump`, :meth:`load`), stored with the learner's versions. The statistics and the rule are in the module's
    docstring.

    Parameters
    ----------
    alpha
        Error rate of the two-sided confidence sequence (default ``0.05``), valid however often it is read.
    min_gain
        A promotion needs the lower end of the relative log-loss gain above this (default ``0.0``; ``0.01``: at
        least 1 % lower log loss).
    min_labels
        Labels before any decision (default ``1000``).
    segment_margin
        A segment of ``segment_min_labels`` labels or more whose point relative gain is below ``-segment_margin``
        blocks a promotion (default ``0.02``: 2 % worse).
    segment_min_labels
        Labels a segment needs before it can block (default ``200``).
    max_segments
        Distinct segment names kept, first come (default ``16``); later names count under :data:`OTHER`.
    horizon
        The label count at which the confidence sequence is tightest (default ``10_000``): it is valid at every
        count, a little wider far from this one.

    Examples
    --------
    A twin of the champion (the same probabilities) is never promoted: its interval is exactly ``[0, 0]``.

    >>> twin = Comparison(min_labels=2)
    >>> for label, p in [(True, 0.8), (False, 0.3), (True, 0.4)]:
    ...     _ = twin.update(label, p, p, ("VisitorType=New_Visitor",))
    >>> result = twin.result()
    >>> result.decision, (result.gain_lower, result.gain_upper), result.mcnemar_p
    ('undecided', (0.0, 0.0), 1.0)
    >>> result.reason
    'relative log-loss gain +0.00% in [+0.00%, +0.00%]: its lower end is not above min_gain 0.00%'
    >>> result.segments[0].name, result.segments[0].labels
    ('VisitorType=New_Visitor', 3)

    A NaN probability skips the event; the state round-trips through plain values.

    >>> twin.update(True, float("nan"), 0.5)
    >>> twin.labels, twin.result().skipped
    (3, 1)
    >>> Comparison.load(twin.dump(), min_labels=2).result() == twin.result()
    True
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        min_gain: float = 0.0,
        min_labels: int = 1000,
        segment_margin: float = 0.02,
        segment_min_labels: int = 200,
        max_segments: int = 16,
        horizon: int = 10_000,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
        if min_labels < 1 or segment_min_labels < 1 or horizon < 1 or max_segments < 0 or segment_margin < 0:
            raise ValueError(
                "min_labels, segment_min_labels and horizon must be at least 1, max_segments and segment_margin at "
                f"least 0 (got {min_labels}, {segment_min_labels}, {horizon}, {max_segments}, {segment_margin})"
            )
        self.alpha, self.min_gain, self.min_labels, self.horizon = alpha, min_gain, min_labels, horizon
        self.segment_margin, self.segment_min_labels = segment_margin, segment_min_labels
        self.max_segments = max_segments
        self.rho = tuned_rho(alpha, horizon)
        # The overall statistics live in one array of doubles (counts exact), laid out by streaming.kernel's T_*
        # indices: a compiled challenger's kernel updates it in place by the same operations as update does here.
        self.tally = np.zeros(TALLY_SIZE)
        self._segments: dict[str, _Segment] = {}
        self._other = _Segment()

    @property
    def labels(self) -> int:
        """Labelled events compared (NaN ones skipped)."""
        return int(self.tally[T_N])

    @property
    def skipped(self) -> int:
        """Labelled events skipped (a NaN score)."""
        return int(self.tally[T_SKIPPED])

    def update(
        self, label: bool, p_champion: float, p_challenger: float, segments: tuple[str, ...] = ()
    ) -> float | None:
        """One labelled event: both arms' probabilities of the positive label, scored before either learned it, and
        the segments the event belongs to (e.g. ``("VisitorType=Returning_Visitor",)``). Returns the challenger's log
        loss on it (``None``: skipped), for the caller's own rolling figures."""
        tally = self.tally
        # NaN, the only value unequal to itself (cheaper than two math.isnan calls): a broken score says nothing
        if p_champion != p_champion or p_challenger != p_challenger:  # noqa: PLR0124
            tally[T_SKIPPED] += 1.0
            return None
        champion_loss = log_loss_of(label, p_champion)
        challenger_loss = log_loss_of(label, p_challenger)
        difference = champion_loss - challenger_loss
        overall = tally[:T_DIFFERENCE].tolist()
        n, mean, m2, champion_sum, challenger_sum, champion_rights, challenger_rights, b, c = overall
        n += 1.0
        delta = difference - mean
        mean += delta / n
        m2 += delta * (difference - mean)
        champion_right = (p_champion > 0.5) == label
        challenger_right = (p_challenger > 0.5) == label
        if champion_right != challenger_right:
            if champion_right:
                b += 1.0
            else:
                c += 1.0
        tally[:T_SKIPPED] = (
            n, mean, m2, champion_sum + champion_loss, challenger_sum + challenger_loss,
            champion_rights + champion_right, challenger_rights + challenger_right, b, c,
            difference, champion_loss, challenger_loss,
        )  # fmt: skip
        if segments:
            self._update_segments(segments, difference, champion_loss)
        return challenger_loss

    def update_segments(self, segments: tuple[str, ...]) -> None:
        """The segments of the event compared last (by :meth:`update` or a kernel on :attr:`tally`)."""
        self._update_segments(segments, float(self.tally[T_DIFFERENCE]), float(self.tally[T_LAST_CHAMPION]))

    def add_segments(self, segments: tuple[str, ...], difference: float, champion_loss: float) -> None:
        """The segments of an event a kernel compared on :attr:`tally` (its loss difference and champion loss)."""
        self._update_segments(segments, difference, champion_loss)

    def _update_segments(self, names: Iterable[str], difference: float, champion_loss: float) -> None:
        table, overflow = self._segments, False
        for name in names:
            segment = table.get(name)
            if segment is None:
                if len(table) >= self.max_segments or name == OTHER:
                    overflow = True  # counted once below, however many unkept names the event has
                    continue
                segment = table[name] = _Segment()
            segment.add(difference, champion_loss)
        if overflow:
            self._other.add(difference, champion_loss)

    def result(self) -> ComparisonResult:
        """The comparison so far and its decision."""
        n, mean, m2, champion_loss, challenger_loss, champion_right, challenger_right, b, c = self._overall()
        counted = max(n, 1)
        difference, gain = gain_bounds(n, mean, m2 / counted, champion_loss / counted, alpha=self.alpha, rho=self.rho)
        segments = self._segment_results()
        decision, reason, blocking = self._decide(n, gain, segments)
        return ComparisonResult(
            labels=n,
            skipped=self.skipped,
            champion_log_loss=champion_loss / counted,
            challenger_log_loss=challenger_loss / counted,
            loss_difference=mean,
            difference_std=math.sqrt(m2 / counted),
            difference_lower=float(difference.lower),
            difference_upper=float(difference.upper),
            relative_gain=float(gain.estimate),
            gain_lower=float(gain.lower),
            gain_upper=float(gain.upper),
            champion_accuracy=champion_right / counted,
            challenger_accuracy=challenger_right / counted,
            mcnemar_b=b,
            mcnemar_c=c,
            mcnemar_p=mcnemar_p_value(b, c),
            segments=segments,
            decision=decision,
            reason=reason,
            blocking_segments=blocking,
        )

    def _overall(self) -> tuple[int, float, float, float, float, int, int, int, int]:
        """The tally's overall statistics, counts as ints."""
        n, mean, m2, champion_loss, challenger_loss, champion_right, challenger_right, b, c = self.tally[
            :T_DIFFERENCE
        ].tolist()
        return (
            int(n),
            mean,
            m2,
            champion_loss,
            challenger_loss,
            int(champion_right),
            int(challenger_right),
            int(b),
            int(c),
        )

    def _segment_results(self) -> tuple[SegmentResult, ...]:
        kept = [*self._segments.items(), *([(OTHER, self._other)] if self._other.n else [])]
        if not kept:
            return ()
        alpha = self.alpha / len(kept)  # Bonferroni: every segment's interval holds at once with 1 - alpha
        n = np.array([segment.n for _, segment in kept], dtype=np.float64)
        counted = np.maximum(n, 1.0)
        _, gain = gain_bounds(
            n,
            [segment.mean for _, segment in kept],
            np.array([segment.m2 for _, segment in kept]) / counted,
            np.array([segment.champion for _, segment in kept]) / counted,
            alpha=alpha,
            rho=tuned_rho(alpha, self.horizon),
        )
        return tuple(
            SegmentResult(name, segment.n, segment.mean, float(estimate), float(lower), float(upper))
            for (name, segment), estimate, lower, upper in zip(kept, gain.estimate, gain.lower, gain.upper, strict=True)
        )

    def _decide(
        self, n: int, gain: Bounds, segments: tuple[SegmentResult, ...]
    ) -> tuple[Decision, str, tuple[str, ...]]:
        blocking = tuple(
            segment.name
            for segment in segments
            if segment.labels >= self.segment_min_labels and segment.relative_gain < -self.segment_margin
        )
        estimate, lower, upper = float(gain.estimate), float(gain.lower), float(gain.upper)
        if n < self.min_labels:
            return "undecided", f"{n} labels of the {self.min_labels} needed before deciding", blocking
        if lower > self.min_gain:
            if blocking:
                return (
                    "undecided",
                    f"better overall (relative gain at least {lower:+.2%}) but more than {self.segment_margin:.2%} "
                    f"worse in {', '.join(blocking)}",
                    blocking,
                )
            return (
                "promote",
                f"relative log-loss gain {estimate:+.2%} (at least {lower:+.2%}, above min_gain {self.min_gain:.2%}) "
                f"over {n} labels",
                blocking,
            )
        if upper < 0:
            return "worse", f"relative log-loss gain {estimate:+.2%}, at most {upper:+.2%}: confidently worse", blocking
        return (
            "undecided",
            f"relative log-loss gain {estimate:+.2%} in [{lower:+.2%}, {upper:+.2%}]: its lower end is not above "
            f"min_gain {self.min_gain:.2%}",
            blocking,
        )

    # -- state, as plain msgpack-able values (never pickled) ----------------------------------------
    def dump(self) -> dict[str, Any]:
        """The running statistics as plain values (ints, floats, strings, lists): :meth:`load` continues exactly."""
        n, mean, m2, champion_loss, challenger_loss, champion_right, challenger_right, b, c = self._overall()
        return {
            "layout": LAYOUT,
            "skipped": self.skipped,
            "overall": [n, mean, m2, champion_loss],
            "challenger_loss": challenger_loss,
            "right": [champion_right, challenger_right],
            "discordant": [b, c],
            "segments": [[name, *segment.dump()] for name, segment in self._segments.items()],
            "other": self._other.dump(),
        }

    @classmethod
    def load(cls, doc: dict[str, Any] | None, **params: Any) -> Comparison:
        """A comparison with ``params`` (those of the constructor) and the state of :meth:`dump` (``None``: a fresh
        one). Segments past a lower ``max_segments`` than the dump's are merged into :data:`OTHER` (an event that
        was counted in one of them and in :data:`OTHER` already then counts twice there).

        A malformed document raises :class:`~streaming.errors.SnapshotCorruptError`.
        """
        new = cls(**params)
        if doc is None:
            return new
        try:
            if doc["layout"] != LAYOUT:
                raise ValueError(f"layout {doc['layout']!r}, not {LAYOUT}")
            overall = _Segment.load(doc["overall"])
            tally = new.tally
            tally[T_N], tally[T_MEAN], tally[T_M2], tally[T_CHAMPION_LOSS] = (
                overall.n, overall.mean, overall.m2, overall.champion
            )  # fmt: skip
            tally[T_CHALLENGER_LOSS] = _nonnegative(doc["challenger_loss"])
            tally[T_SKIPPED] = _count(doc["skipped"])
            tally[T_CHAMPION_RIGHT], tally[T_CHALLENGER_RIGHT] = (_count(value) for value in doc["right"])
            tally[T_B], tally[T_C] = (_count(value) for value in doc["discordant"])
            new._other = _Segment.load(doc["other"])
            for name, *row in doc["segments"]:
                if not isinstance(name, str) or name in new._segments:
                    raise ValueError(f"segment name {name!r}")
                if len(new._segments) < new.max_segments and name != OTHER:
                    new._segments[name] = _Segment.load(row)
                else:
                    new._other.merge(_Segment.load(row))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SnapshotCorruptError(f"comparison state is malformed ({exc!r}); start it afresh") from None
        return new


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def _nonnegative(value: Any) -> float:
    number = _real(value)
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number
