"""The compiled learning kernel: river's default pipeline as two numba functions over dense arrays.

What river does per event in dicts (``StandardScaler`` on numbers, ``OneHotEncoder`` on strings,
``LogisticRegression`` with SGD and L2), done here operation for operation over arrays, so that the
floating-point results are river's bit for bit:

* one event is one float64 array ``ev`` of three equal parts, its inputs in river's transformed order
  (one-hot keys first, then numbers, each in the event's order): the weight columns (``-1`` for an input
  without one), the scaler rows (``-1`` for a one-hot input) and the raw values (1 for a one-hot input) —
  one array because building a small numpy array from Python costs about as much as a whole step;
* the scaler's rows ``stats[j] = (count, mean, var)`` are updated with river's formulas and its order of
  operations; a number is scaled as ``(x - mean) / var ** 0.5`` (0 when the variance is 0). The
  exponent is a run-time value (``params[P_HALF]``): a constant 0.5 lets LLVM turn ``pow`` into
  ``sqrt``, which rounds differently from the ``pow`` Python calls in about 1 case in 1,000;
* ``learn`` updates the scaler *first* and scales with the new statistics (river's pipeline learns its
  unsupervised steps before transforming), then takes one SGD step: the logit is summed in the event's
  order, the log-loss gradient clipped, the intercept moved by its own learning rate (0.01, river's
  ``intercept_lr``) and each weight by ``lr * (x * g + l2 * w)``;
* weights come to exist when first learned (river inserts them then): ``created``/``order`` keep that
  order, which is the order of the weights in a snapshot.

A run of the champion's events stepped together (:mod:`streaming.learner.step`, ``EventStep.process_run``) is one
call, ``score_and_learn_many``: each event scored, then learned if it is learned, in order.

A challenger's labelled event (:mod:`streaming.learner.arms`) is one call, ``shadow`` — its score, the comparison with
the champion's score into a ``tally`` (``T_*``, :class:`monitor.compare.Comparison`'s state), its log loss into a
rolling window (``R_*``, :class:`monitor.rolling.RollingMean`'s), then ``learn`` — or one call for a run of them,
``shadow_many``; the Python classes do the same operations in the same order (the same bits, tested).

Numba compiles the functions once (``@njit(cache=True)``, on disk in the cache directory, see
:func:`load`), ~3–6 s the first time (with the challengers' functions) and ~0.1 s from the cache. With no
writable cache directory they are compiled in memory at every start (a warning says so).

>>> import numpy as np
>>> kernel = load()
>>> w, stats = np.zeros(4), np.zeros((4, 3))
>>> ev = np.array([0, 1, -1, 0, 1.0, 3.0])  # columns 0 and 1, scaler row of the 2nd, raw values
>>> created, order, row_order = np.zeros(4, np.bool_), np.zeros(4, np.int64), np.zeros(4, np.int64)
>>> counters = np.zeros(3, np.int64)
>>> params = np.array([0.0, 0.01, 0.01, 0.0, 0.5])
>>> kernel.predict(ev, w, stats, params)
0.5
>>> kernel.learn(ev, w, stats, created, order, row_order, counters, params, 1.0)
>>> round(kernel.predict(ev, w, stats, params), 6), order[: counters[C_CREATED]].tolist()
(0.5025, [0, 1])
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "C_CREATED",
    "C_ITERATIONS",
    "C_LEARNED",
    "P_HALF",
    "P_INTERCEPT",
    "ROLLING_SIZE",
    "R_ADDED",
    "R_COUNT",
    "R_HEAD",
    "R_TOTAL",
    "S_COMPARED",
    "S_RESUM",
    "TALLY_SIZE",
    "T_B",
    "T_C",
    "T_CHALLENGER_LOSS",
    "T_CHALLENGER_RIGHT",
    "T_CHAMPION_LOSS",
    "T_CHAMPION_RIGHT",
    "T_DIFFERENCE",
    "T_LAST_CHALLENGER",
    "T_LAST_CHAMPION",
    "T_M2",
    "T_MEAN",
    "T_N",
    "T_SKIPPED",
    "Kernel",
    "available",
    "load",
]

#: ``params``: intercept, learning rate, intercept learning rate, l2, the exponent 0.5
P_INTERCEPT, P_LR, P_INTERCEPT_LR, P_L2, P_HALF = range(5)
#: ``counters``: weights created, scaler rows learned, SGD steps
C_CREATED, C_LEARNED, C_ITERATIONS = range(3)
#: ``tally``, a challenger's comparison with the champion (:class:`monitor.compare.Comparison` keeps its state in it):
#: labels compared, the mean and summed squared deviations of the loss difference (Welford), both summed log losses,
#: both right counts, the events only the champion / only the challenger got right, then the last compared event's
#: difference, champion loss and challenger loss, and the events skipped (a NaN score). Counts are exact doubles.
(
    T_N, T_MEAN, T_M2, T_CHAMPION_LOSS, T_CHALLENGER_LOSS, T_CHAMPION_RIGHT, T_CHALLENGER_RIGHT, T_B, T_C,
    T_DIFFERENCE, T_LAST_CHAMPION, T_LAST_CHALLENGER, T_SKIPPED,
) = range(13)  # fmt: skip
TALLY_SIZE = 13
#: ``rolling``, a rolling mean over a ring of values (:class:`monitor.rolling.RollingMean` keeps its state in it):
#: the running sum, values added since the sum was last recounted exactly, the ring's next slot, values held
R_TOTAL, R_ADDED, R_HEAD, R_COUNT = range(4)
ROLLING_SIZE = 4
#: :func:`_shadow`'s result, bits: the event was compared (not skipped); the rolling sum is due its exact recount
S_COMPARED, S_RESUM = 1, 2
_LOW, _HIGH = 1e-15, 1 - 1e-15  # river's log loss clamps a probability to these (monitor.metric_set.log_loss_of)


def _predict(ev: Any, w: Any, stats: Any, params: Any) -> float:
    """river's ``predict_proba_one``: scale with the current statistics, dot in input order, sigmoid."""
    n = ev.shape[0] // 3
    acc = 0.0
    for k in range(n):
        c = int(ev[k])
        if c < 0:
            continue  # river has no weight for it: it adds nothing
        j = int(ev[n + k])
        if j < 0:
            acc += w[c] * ev[2 * n + k]
        else:
            v = stats[j, 2]
            acc += w[c] * ((ev[2 * n + k] - stats[j, 1]) / v ** params[P_HALF] if v != 0.0 else 0.0)
    z = acc + params[P_INTERCEPT]
    if z < -30.0:
        return 0.0
    if z > 30.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


def _learn(ev: Any, w: Any, stats: Any, created: Any, order: Any, row_order: Any,  # noqa: PLR0917
           counters: Any, params: Any, y: float) -> None:  # fmt: skip
    """river's ``Pipeline.learn_one``: scaler update, transform, one SGD step of the logistic regression."""
    n = ev.shape[0] // 3
    raw = ev[2 * n :]
    xs = raw.copy()
    for k in range(n):  # StandardScaler.learn_one (Welford, river's order of operations)
        j = int(ev[n + k])
        if j < 0:
            continue
        if stats[j, 0] == 0.0:  # first learned: river's counts and means get the feature now
            row_order[counters[C_LEARNED]] = j
            counters[C_LEARNED] += 1
        stats[j, 0] += 1.0
        count, old_mean, x = stats[j, 0], stats[j, 1], raw[k]
        stats[j, 1] = old_mean + (x - old_mean) / count
        stats[j, 2] = stats[j, 2] + ((x - old_mean) * (x - stats[j, 1]) - stats[j, 2]) / count
    acc = 0.0
    for k in range(n):  # transform with the new statistics, dot in input order (weights born here)
        c, j = int(ev[k]), int(ev[n + k])
        if j >= 0:
            v = stats[j, 2]
            xs[k] = (raw[k] - stats[j, 1]) / v ** params[P_HALF] if v != 0.0 else 0.0
        if c < 0:
            continue  # not encoded for learning: nothing to learn for it
        if not created[c]:
            created[c] = True
            order[counters[C_CREATED]] = c
            counters[C_CREATED] += 1
        acc += w[c] * xs[k]
    z = (acc + params[P_INTERCEPT]) * y  # optim.losses.Log.gradient, y = +1 or -1
    if z > 18.0:
        g = math.exp(-z) * -y
    elif z < -18.0:
        g = -y
    else:
        g = -y / (math.exp(z) + 1.0)
    g = max(-1e12, min(g, 1e12))  # clip_gradient
    params[P_INTERCEPT] = params[P_INTERCEPT] - params[P_INTERCEPT_LR] * g
    lr, l2 = params[P_LR], params[P_L2]
    for k in range(n):
        c = int(ev[k])
        if c < 0:
            continue
        gk = xs[k] * g
        if l2 != 0.0:
            gk = gk + w[c] * l2
        w[c] = w[c] - gk * lr
    counters[C_ITERATIONS] += 1


def _log_loss(label: bool, p: float) -> float:
    """river's log loss of one pair, as :func:`monitor.metric_set.log_loss_of` computes it (NaN kept)."""
    p = _HIGH if p > _HIGH else _LOW if p < _LOW else p
    return -math.log(p) if label else -math.log(1 - p)


def _compare(label: bool, p_champion: float, p: float, tally: Any) -> bool:
    """One labelled event into a comparison's ``tally``, operation for operation as
    :meth:`monitor.compare.Comparison.update` does it; ``False``: skipped (a NaN score)."""
    if p_champion != p_champion or p != p:  # noqa: PLR0124 — NaN, the only value unequal to itself
        tally[T_SKIPPED] += 1.0
        return False
    champion_loss = _log_loss(label, p_champion)
    challenger_loss = _log_loss(label, p)
    difference = champion_loss - challenger_loss
    n = tally[T_N] + 1.0
    mean = tally[T_MEAN]
    delta = difference - mean
    mean += delta / n
    tally[T_N] = n
    tally[T_MEAN] = mean
    tally[T_M2] += delta * (difference - mean)
    tally[T_CHAMPION_LOSS] += champion_loss
    tally[T_CHALLENGER_LOSS] += challenger_loss
    champion_right = (p_champion > 0.5) == label
    challenger_right = (p > 0.5) == label
    if champion_right:
        tally[T_CHAMPION_RIGHT] += 1.0
    if challenger_right:
        tally[T_CHALLENGER_RIGHT] += 1.0
    if champion_right != challenger_right:
        tally[T_B if champion_right else T_C] += 1.0
    tally[T_DIFFERENCE] = difference
    tally[T_LAST_CHAMPION] = champion_loss
    tally[T_LAST_CHALLENGER] = challenger_loss
    return True


def _roll(value: float, ring: Any, rolling: Any) -> bool:
    """``value`` into a rolling mean's ``ring``, as :meth:`monitor.rolling.RollingMean.add` does it; ``True``: its sum
    is due an exact recount (``math.fsum``, in Python)."""
    size = ring.shape[0]
    head = int(rolling[R_HEAD])
    if rolling[R_COUNT] == size:
        rolling[R_TOTAL] -= ring[head]  # the oldest value, overwritten now
    else:
        rolling[R_COUNT] += 1.0
    ring[head] = value
    rolling[R_TOTAL] += value
    rolling[R_HEAD] = (head + 1) % size
    rolling[R_ADDED] += 1.0
    due: bool = rolling[R_ADDED] >= size
    return due


def _shadow(ev: Any, w: Any, stats: Any, created: Any, order: Any, row_order: Any,  # noqa: PLR0917
            counters: Any, params: Any, y: float, p_champion: float, p: float, scored: bool,
            tally: Any, ring: Any, rolling: Any) -> int:  # fmt: skip
    """A challenger's labelled event in one call: its score (``p`` when ``scored``, from when the event waited; else
    :func:`_predict` now), the comparison's ``tally`` and its rolling loss take it, then :func:`_learn`. The same
    operations as the four Python calls, so the same bits; returns :data:`S_COMPARED` | :data:`S_RESUM` bits."""
    if not scored:
        p = _predict(ev, w, stats, params)
    flags = 0
    if _compare(y > 0.0, p_champion, p, tally):
        flags = S_COMPARED
        if _roll(tally[T_LAST_CHALLENGER], ring, rolling):
            flags |= S_RESUM
    _learn(ev, w, stats, created, order, row_order, counters, params, y)
    return flags


def _shadow_many(xs: Any, offsets: Any, ys: Any, p_champions: Any, given: Any, scored: Any,  # noqa: PLR0917
                 w: Any, stats: Any, created: Any, order: Any, row_order: Any, counters: Any, params: Any,
                 tally: Any, ring: Any, rolling: Any, out: Any, start: int) -> int:  # fmt: skip
    """:func:`_shadow` over events ``start, start + 1, ...`` in order (event ``i`` is ``xs[offsets[i]:offsets[i + 1]]``
    with ``ys[i]``, ``p_champions[i]``, and ``given[i]`` when ``scored[i]``); ``out[i]`` = (compared, the loss
    difference, the champion's loss). Returns the index after the last event done: early, right after an event whose
    rolling sum is due its exact recount (done in Python; then call again from there)."""
    n: int = offsets.shape[0] - 1
    for i in range(start, n):
        flags = _shadow(
            xs[offsets[i] : offsets[i + 1]], w, stats, created, order, row_order, counters, params, ys[i],
            p_champions[i], given[i], scored[i], tally, ring, rolling,
        )  # fmt: skip
        if flags & S_COMPARED:
            out[i, 0], out[i, 1], out[i, 2] = 1.0, tally[T_DIFFERENCE], tally[T_LAST_CHAMPION]
        if flags & S_RESUM:
            return i + 1
    return n


def _score_and_learn_many(xs: Any, offsets: Any, ys: Any, learn: Any, w: Any, stats: Any,  # noqa: PLR0917
                          created: Any, order: Any, row_order: Any, counters: Any, params: Any,
                          out: Any) -> None:  # fmt: skip
    """A run of events in order, each scored (:func:`_predict`) and then, where ``learn[i]``, learned (:func:`_learn`,
    ``ys[i]`` = +1 or -1): event ``i`` is ``xs[offsets[i]:offsets[i + 1]]``, its score goes to ``out[i]``. The same
    operations in the same order as the two calls per event, so the same bits (prequential: each event is scored by
    the model that learned every event before it)."""
    n: int = offsets.shape[0] - 1
    for i in range(n):
        ev = xs[offsets[i] : offsets[i + 1]]
        out[i] = _predict(ev, w, stats, params)
        if learn[i]:
            _learn(ev, w, stats, created, order, row_order, counters, params, ys[i])


@dataclasses.dataclass(frozen=True)
class Kernel:
    """The compiled functions and where they were cached (``None``: in memory only)."""

    predict: Callable[..., float]
    learn: Callable[..., None]
    cache_dir: Path | None
    shadow: Callable[..., int]
    shadow_many: Callable[..., int]
    score_and_learn_many: Callable[..., None]


_LOADED: Kernel | None = None


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/livelearn`` or ``~/.cache/livelearn``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livelearn"


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def _pick_cache_dir(wanted: str | None) -> Path | None:
    candidates = [Path(wanted)] if wanted else [default_cache_dir(), Path(tempfile.gettempdir()) / "livelearn-cache"]
    for candidate in candidates:
        if _writable(candidate / "numba"):
            return candidate / "numba"
    log.warning(
        "no writable cache directory for the compiled kernel (tried %s): compiling in memory at every start; "
        "set LIVELEARN_CACHE_DIR to a writable directory to keep the compiled code",
        ", ".join(str(c) for c in candidates),
    )
    return None


def available() -> bool:
    """Whether numba can be imported (the compiled engine needs it)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def load(cache_dir: str | None = None) -> Kernel:
    """The compiled kernel, compiled (or read from the on-disk cache) on the first call of the process.

    ``cache_dir`` (``LIVELEARN_CACHE_DIR``) is where numba keeps the compiled code; by default
    ``$XDG_CACHE_HOME/livelearn``, then the temporary directory. It is set before numba is imported.
    """
    global _LOADED  # noqa: PLW0603 — one compiled kernel per process
    if _LOADED is not None:
        return _LOADED
    where = _pick_cache_dir(cache_dir)
    if where is not None:
        os.environ["NUMBA_CACHE_DIR"] = str(where)
    import numba

    config: Any = numba.config
    if where is not None and str(where) != config.CACHE_DIR:
        config.reload_config()  # numba was imported before: make it read the directory set above
    from numba.extending import register_jitable

    for inlined in (_predict, _learn, _log_loss, _compare, _roll, _shadow):  # callable from _shadow(_many) (compiled
        # with it, in the same cache entry; numba calls them, it does not inline them)
        register_jitable(inlined)
    cache = where is not None
    arrays = "(float64[::1], float64[::1], float64[:, ::1]"
    learning = f"{arrays}, boolean[::1], int64[::1], int64[::1], int64[::1], float64[::1], float64"
    predict = numba.njit(f"float64{arrays}, float64[::1])", cache=cache)(_predict)
    learn = numba.njit(f"void{learning})", cache=cache)(_learn)
    judging = "float64[::1], float64[::1], float64[::1]"
    shadow = numba.njit(f"int64{learning}, float64, float64, boolean, {judging})", cache=cache)(_shadow)
    shadow_many = numba.njit(
        "int64(float64[::1], int64[::1], float64[::1], float64[::1], float64[::1], boolean[::1], float64[::1], "
        "float64[:, ::1], boolean[::1], int64[::1], int64[::1], int64[::1], float64[::1], "
        f"{judging}, float64[:, ::1], int64)",
        cache=cache,
    )(_shadow_many)
    score_and_learn_many = numba.njit(
        "void(float64[::1], int64[::1], float64[::1], boolean[::1], float64[::1], float64[:, ::1], boolean[::1], "
        "int64[::1], int64[::1], int64[::1], float64[::1], float64[::1])",
        cache=cache,
    )(_score_and_learn_many)
    _LOADED = Kernel(predict, learn, where, shadow, shadow_many, score_and_learn_many)
    return _LOADED
