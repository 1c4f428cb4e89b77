"""The compiled engine: :class:`CompiledModel`, river's default pipeline on the numba kernel.

Same interface, vocabulary, caps and state document as :class:`~streaming.model.OnlineModel`; the
learning happens in :mod:`streaming.kernel` over dense arrays. Python keeps the index maps (input name
→ weight column, numeric feature → scaler row) and turns one event into three small arrays
(:meth:`CompiledModel.encode`). An event whose features are all known takes one dict lookup per feature.

A state dumped by either engine restores into the other bit for bit (weights in the order river created
them, scaler statistics in river's dict orders), so versions written by one are read by the other.

>>> model = CompiledModel(ModelSpec())
>>> model.predict_proba_one({"pages": 3, "month": "Feb"})
0.5
>>> model.learn_one({"pages": 3, "month": "Feb"}, True)
>>> round(model.predict_proba_one({"pages": 3, "month": "Feb"}), 6)
0.5025
>>> model.dump_state()["weights"]
{'month_Feb': 0.005, 'pages': 0.0}
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from streaming import kernel as kernels
from streaming.errors import SnapshotCorruptError
from streaming.slots import NO_WEIGHT, NUMERIC, SlotFinder, names_agree, stored_columns
from streaming.vocabulary import ModelSpec, Vocabulary
from streaming.weights import PackedWeights

__all__ = ["CompiledModel", "Encoded"]

#: one event for the kernel: weight columns, scaler rows, raw values in one array (see :mod:`streaming.kernel`)
Encoded = npt.NDArray[np.float64]
_NONE: dict[str, int] = {}
_PLAIN = frozenset({int, float})  # the numbers :meth:`CompiledModel._encode_known` takes as they are
_WINDOW = 16  # events :meth:`CompiledModel._encode_known` looks at first (doubled while whole stretches are known)
_INTERCEPT_LR = 0.01  # river's LogisticRegression(intercept_lr=0.01), whatever the weights' learning rate


class CompiledModel(Vocabulary):
    """The default pipeline (scaler + one-hot + logistic regression) compiled with numba.

    River's ``StandardScaler`` on the numbers and ``OneHotEncoder`` on the strings, into ``LogisticRegression``
    with plain SGD, learned one event at a time: the probabilities, weights (and their order), intercept and
    scaler statistics are river's bit for bit (:mod:`streaming.kernel`), and :meth:`dump_state` writes the
    document :class:`~streaming.model.OnlineModel` writes, so either engine restores the other's versions.

    Parameters
    ----------
    spec
        What the model is: ``learning_rate``, ``l2``, the features it selects and the vocabulary's size caps
        (:class:`~streaming.vocabulary.ModelSpec`; the kind must be ``logistic_regression``).
    cache_dir
        The directory numba keeps the compiled kernel under (``LIVELEARN_CACHE_DIR``, in ``<cache_dir>/numba``);
        ``None``: ``$XDG_CACHE_HOME/livelearn``, then the temporary directory (:func:`streaming.kernel.load`). The
        first model of a process compiles the kernel or reads it from there; later ones reuse it.

    Examples
    --------
    >>> model = CompiledModel(ModelSpec(learning_rate=0.1))
    >>> events = [
    ...     ({"pages": 3, "month": "Feb"}, True),
    ...     ({"pages": 1, "month": "Mar"}, False),
    ...     ({"pages": 5, "month": "Feb"}, True),
    ... ]
    >>> for features, label in events:
    ...     model.predict_proba_one(features)  # test, then train: scored before it is learned
    ...     model.learn_one(features, label)
    0.5
    0.50124...
    0.54992...
    >>> model.predict_proba_one({"pages": 4, "month": "Feb"})
    0.54191...
    >>> model.steps, model.inputs, list(model.dump_state()["weights"])
    (3, 3, ['month_Feb', 'pages', 'month_Mar'])
    """

    engine = "compiled"

    def __init__(self, spec: ModelSpec, cache_dir: str | None = None) -> None:
        if spec.kind != "logistic_regression":
            raise ValueError(f"unknown model kind {spec.kind!r}; supported: logistic_regression")
        super().__init__(spec)
        self.kernel = kernels.load(cache_dir)
        self._columns: dict[str, int] | None = {}  # river's input name (feature, or feature_value) -> column
        self.column_names: list[str] = []
        self.rows: dict[str, int] = {}  # numeric feature -> scaler row, in river's ``vars`` order
        self.row_names: list[str] = []
        self.w = np.zeros(64)
        self.created = np.zeros(64, np.bool_)
        self.order = np.zeros(64, np.int64)  # columns in the order their weights were created
        self.stats = np.zeros((64, 3))  # count, mean, var per row
        self.row_order = np.zeros(64, np.int64)  # rows in the order they were first learned
        self.counters = np.zeros(3, np.int64)
        self.params = np.array([0.0, spec.learning_rate, _INTERCEPT_LR, spec.l2, 0.5])
        # fast path: vocabulary entries with a column (and row), name -> value -> column / name -> (row, column)
        self._categorical: dict[str, dict[str, int]] = {}
        self._numeric: dict[str, tuple[int, int]] = {}
        self._cached_columns: set[int] = set()
        self._collisions = False  # two inputs share one river name (e.g. feature "a_b" and a="b"): slow path
        # the last event encoded took the fast path: every input known, nothing in the model changed (a challenger
        # that encodes like this model may take that encoding: :meth:`encodes_like`)
        self.encoded_fast = False
        self._scaler_order: list[int] = []  # scaler rows of the last slow-path event, in the event's order
        self._slots = SlotFinder()  # where each vocabulary entry's weight is stored, kept between snapshots

    def encodes_like(self, other: object) -> bool:
        """Whether ``other`` encodes every event exactly as this model does: the same engine, feature selection and
        caps, the same vocabulary in the same columns and scaler rows. It stays so while both encode the same events
        with ``learn`` (the vocabulary only grows there, the same way in both), so one's encoded event is the other's
        (the challengers share the champion's: :mod:`streaming.learner.arms`)."""
        if not isinstance(other, CompiledModel) or self._collisions or other._collisions:
            return False
        a, b = self.spec, other.spec
        return (
            a.structure() == b.structure()
            and (a.max_categories_per_feature, a.max_inputs, a.max_vocabulary_bytes)
            == (b.max_categories_per_feature, b.max_inputs, b.max_vocabulary_bytes)
            and self.column_names == other.column_names
            and self.row_names == other.row_names
            and self.dump_vocabulary() == other.dump_vocabulary()
        )

    # -- index maps ------------------------------------------------------------------------------------
    @property
    def columns(self) -> dict[str, int]:
        """River's input name (a feature, or ``feature_value``) → weight column; after a restore, built when first
        needed (an input the fast path does not know): the vocabulary's stored slots fill the fast path."""
        columns = self._columns
        if columns is None:
            names = self.column_names
            columns = self._columns = dict(zip(names, range(len(names)), strict=True))
        return columns

    def _column(self, name: str) -> int:
        column = self.columns.get(name)
        if column is None:
            column = self.columns[name] = len(self.column_names)
            self.column_names.append(name)
            if column == len(self.w):
                self.w = np.concatenate([self.w, np.zeros(column)])
                self.created = np.concatenate([self.created, np.zeros(column, np.bool_)])
                self.order = np.concatenate([self.order, np.zeros(column, np.int64)])
        return column

    def _row(self, name: str) -> int:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = len(self.row_names)
            self.row_names.append(name)
            if row == len(self.stats):
                self.stats = np.concatenate([self.stats, np.zeros((row, 3))])
                self.row_order = np.concatenate([self.row_order, np.zeros(row, np.int64)])
        return row

    def _cache(self, column: int | None) -> bool:
        if column is None:
            return False
        if column in self._cached_columns:
            self._collisions = True
        self._cached_columns.add(column)
        return True

    def _remember(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """Put the vocabulary's entries among ``pairs`` (feature, value) that have a column on the fast path."""
        for name, value in pairs:
            if isinstance(value, str):
                if value in self.categories.get(name, ()) and value not in self._categorical.get(name, _NONE):
                    column = self.columns.get(f"{name}_{value}")
                    if self._cache(column):
                        self._categorical.setdefault(name, {})[value] = column  # type: ignore[assignment]
            elif name in self.numeric and name in self.rows and name not in self._numeric:
                column = self.columns.get(name)
                if self._cache(column):
                    self._numeric[name] = (self.rows[name], column)  # type: ignore[assignment]

    # -- one event -------------------------------------------------------------------------------------
    def encode(self, features: dict[str, Any], *, learn: bool = False) -> Encoded:  # type: ignore[override]
        """The event as the kernel's arrays, in river's order (one-hot inputs first, then numbers).

        With ``learn``, new features and categories within the caps join the vocabulary and get a
        column (call it once per event, before scoring, as with the river engine); without it nothing gets a
        column or a scaler row (an unlearned number is dropped, as :meth:`Vocabulary.encode` does).
        """
        if not self._collisions:
            selected = self.select(features)
            cat_cols: list[int] = []
            num_cols: list[int] = []
            num_rows: list[int] = []
            num_raw: list[Any] = []
            categorical, numeric = self._categorical, self._numeric
            for name, value in selected.items():
                if isinstance(value, str):
                    column = categorical.get(name, _NONE).get(value)
                    if column is None:
                        break
                    cat_cols.append(column)
                else:
                    known = numeric.get(name)
                    if known is None:
                        break
                    num_rows.append(known[0])
                    num_cols.append(known[1])
                    num_raw.append(value)
            else:
                k = len(cat_cols)
                try:
                    x = np.array(cat_cols + num_cols + [-1] * k + num_rows + [1.0] * k + num_raw, np.float64)
                    self.encoded_fast = True
                    return x
                except (TypeError, ValueError):
                    pass  # not a plain number: the general path decides as river does
        self.encoded_fast = False
        return self._encode_slow(features, learn)

    def _encode_slow(self, features: dict[str, Any], learn: bool) -> Encoded:
        x = Vocabulary.encode(self, features, learn=learn)
        inputs: dict[str, tuple[int, float]] = {}  # river's TransformerUnion: one-hot dict, then numbers over it
        for name, value in x.items():
            if isinstance(value, str):
                inputs.setdefault(f"{name}_{value}", (-1, 1.0))
        scaler_order = []  # the numbers' own order: where a number took a one-hot input's place, it differs
        for name, value in x.items():
            if not isinstance(value, str) and isinstance(value, numbers.Number):
                if not learn and name not in self.rows:  # never learned (a vocabulary from an odd state): no row,
                    inputs[name] = (-1, 0.0)  # river scales it to 0 (its variance is 0): weight x 0, as river
                    continue
                inputs[name] = (self._row(name), float(value))  # type: ignore[arg-type]
                scaler_order.append(self.rows[name])
        self._scaler_order = scaler_order
        cols: list[float] = []
        for name in inputs:
            column = self._column(name) if learn else self.columns.get(name)
            cols.append(-1 if column is None else column)
        if learn:
            self._remember(x.items())
        values = list(inputs.values())
        return np.array(cols + [row for row, _ in values] + [raw for _, raw in values], np.float64)

    @property
    def steps(self) -> int:
        """SGD steps taken: events this model's weights learned from."""
        return int(self.counters[kernels.C_ITERATIONS])

    def predict_encoded(self, x: Encoded) -> float:
        """Probability of the positive class for an event from :meth:`encode`."""
        return self.kernel.predict(x, self.w, self.stats, self.params)

    def learn_encoded(self, x: Encoded, label: bool) -> None:
        """One SGD step on an event from :meth:`encode` with ``learn=True`` (the last one encoded)."""
        before = int(self.counters[kernels.C_LEARNED]) if self._collisions else 0
        self.kernel.learn(
            x, self.w, self.stats, self.created, self.order, self.row_order, self.counters, self.params,
            1.0 if label else -1.0,
        )  # fmt: skip
        if self._collisions:
            self._order_new_rows(before)

    def step_run(self, features: list[dict[str, Any]], labels: list[bool | None], learn: list[bool]) -> list[float]:
        """A run of events, in order: each encoded (``learn[i]``: as :meth:`encode` with ``learn``), scored, and then
        learned where ``learn[i]`` (its label ``labels[i]``); returns their scores. One kernel call for the run
        (:func:`streaming.kernel._score_and_learn_many`): the same operations in the same order as :meth:`encode`,
        :meth:`predict_encoded` and :meth:`learn_encoded` event by event, so the same bits. Consecutive events with
        the same features, in the same order, whose inputs all have columns are encoded together
        (:meth:`_encode_known`: the arrays :meth:`encode` builds for each, column by column); any other event
        alone, by :meth:`encode`.

        >>> a, b = CompiledModel(ModelSpec()), CompiledModel(ModelSpec())
        >>> events = [({"pages": 3, "month": "Feb"}, True), ({"pages": 1, "month": "Mar"}, False)] * 3
        >>> one_by_one = []
        >>> for features, label in events:
        ...     x = a.encode(features, learn=True)
        ...     one_by_one.append(a.predict_encoded(x))
        ...     a.learn_encoded(x, label)
        >>> together = b.step_run([f for f, _ in events], [y for _, y in events], [True] * 6)
        >>> together == one_by_one, a.dump_state() == b.dump_state()
        (True, True)
        """
        n = len(features)
        out = np.empty(n)
        pieces: list[Encoded] = []
        lengths: list[int] = []
        # (a feature selection, or two inputs sharing one river name: each event by encode)
        together = not (self._include or self._exclude)
        i, window = 0, _WINDOW
        while i < n:
            done = self._encode_known(features, i, window, pieces, lengths) if together and not self._collisions else 0
            # (a stretch cut short by an event with a new input is looked at again after it: from a short window, so
            # a stream of new values costs a bounded share of each event, not the rest of the run each time)
            window = min(2 * window, n) if done >= window else _WINDOW
            if done:
                i += done
                continue
            x = self.encode(features[i], learn=learn[i])
            if self._collisions:  # the scaler rows' order is put right after each event's step: one by one from here
                self._run(pieces, lengths, labels, learn, out)
                for k in range(i, n):
                    if k > i:
                        x = self.encode(features[k], learn=learn[k])
                    out[k] = self.predict_encoded(x)
                    if learn[k]:
                        self.learn_encoded(x, bool(labels[k]))
                return out.tolist()
            pieces.append(x)
            lengths.append(len(x))
            i += 1
        self._run(pieces, lengths, labels, learn, out)
        return out.tolist()

    def _encode_known(
        self, features: list[dict[str, Any]], start: int, window: int, pieces: list[Encoded], lengths: list[int]
    ) -> int:
        """Encodes ``features[start]`` and the events after it (``window`` at most) that have the same features in the
        same order, as far as every input has a column (a category, or a number's row and column) and every number is
        a plain ``int`` or ``float``; appends their arrays (one piece) and each length; returns how many (0: not even
        the first, found before the others are looked at)."""
        first = features[start]
        categorical, numeric = self._categorical, self._numeric
        for name, value in first.items():
            if isinstance(value, str):
                if categorical.get(name, _NONE).get(value) is None:
                    return 0
            elif type(value) not in _PLAIN or name not in numeric:
                return 0
        names = tuple(first)
        end, n = start + 1, min(len(features), start + window)
        while end < n and tuple(features[end]) == names:
            end += 1
        rows = [tuple(f.values()) for f in features[start:end]]
        columns = list(zip(*rows, strict=True)) if names else []
        count = end - start
        cat_columns: list[list[int | None]] = []
        num_positions: list[int] = []
        num_slots: list[tuple[int, int]] = []
        for j, name in enumerate(names):
            if isinstance(rows[0][j], str):
                known = categorical.get(name)
                if known is None:
                    return 0
                looked = list(map(known.get, columns[j]))  # (a number here is no key of strings: None)
                if None in looked:
                    count = min(count, looked.index(None))
                cat_columns.append(looked)
            else:
                slot = numeric.get(name)
                if slot is None:
                    return 0
                num_positions.append(j)
                num_slots.append(slot)
        if num_positions:
            kinds = set(map(type, itertools.chain.from_iterable(columns[j] for j in num_positions)))
            if not kinds <= _PLAIN:  # a string (or anything else) where the first event had a number: those before it
                bad = next(r for r, row in enumerate(rows) if any(type(row[j]) not in _PLAIN for j in num_positions))
                count = min(count, bad)
        if not count:
            return 0
        k, m = len(cat_columns), len(num_positions)
        width = k + m
        block = np.empty((count, 3 * width))
        if k:
            block[:, :k] = np.array([looked[:count] for looked in cat_columns], np.float64).T
        block[:, k:width] = [column for _, column in num_slots]
        block[:, width : width + k] = -1.0
        block[:, width + k : 2 * width] = [row for row, _ in num_slots]
        block[:, 2 * width : 2 * width + k] = 1.0
        if m:
            block[:, 2 * width + k :] = np.array([columns[j][:count] for j in num_positions], np.float64).T
        pieces.append(block.ravel())
        lengths.extend([3 * width] * count)
        return count

    def _run(
        self,
        pieces: list[Encoded],
        lengths: list[int],
        labels: list[bool | None],
        learn: list[bool],
        out: npt.NDArray[np.float64],
    ) -> None:
        n = len(lengths)
        if not n:
            return
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ys = np.array([1.0 if labels[i] else -1.0 for i in range(n)])
        self.kernel.score_and_learn_many(
            np.concatenate(pieces), offsets, ys, np.array(learn[:n], np.bool_), self.w, self.stats, self.created,
            self.order, self.row_order, self.counters, self.params, out,
        )  # fmt: skip

    def learn_judged(
        self, x: Encoded, label: bool, p_champion: float, p: float | None, *, tally: Any, ring: Any, rolling: Any
    ) -> int:
        """A challenger's labelled event in one kernel call (:func:`streaming.kernel._shadow`): scored now (or ``p``,
        its score from when it waited), compared with ``p_champion`` into a comparison's ``tally``, its log loss into
        a rolling window's ``ring`` and ``rolling``, then learned as :meth:`learn_encoded` learns it. The same bits as
        those calls one by one; returns the kernel's ``S_*`` bits."""
        before = int(self.counters[kernels.C_LEARNED]) if self._collisions else 0
        flags: int = self.kernel.shadow(
            x, self.w, self.stats, self.created, self.order, self.row_order, self.counters, self.params,
            1.0 if label else -1.0, p_champion, 0.0 if p is None else p, p is not None, tally, ring, rolling,
        )  # fmt: skip
        if self._collisions:
            self._order_new_rows(before)
        return flags

    def learn_judged_many(
        self,
        xs: list[Encoded],
        labels: list[bool],
        p_champions: list[float],
        given: list[float | None] | None,
        *,
        tally: Any,
        ring: Any,
        rolling: Any,
        resum: Callable[[], None],
    ) -> npt.NDArray[np.float64]:
        """:meth:`learn_judged` over many events in order, in one kernel call (a few when the rolling window's sum is
        due its exact recount: ``resum`` does it between them); ``given``: each event's score from when it waited, or
        ``None`` (``None``: none has one). Returns one row per event: compared (1.0 or 0.0), the loss difference, the
        champion's loss."""
        n = len(xs)
        out = np.zeros((n, 3))
        if self._collisions:  # (the scaler rows' order is put right after each event: one by one)
            given = [None] * n if given is None else given
            for i in range(n):
                flags = self.learn_judged(
                    xs[i], labels[i], p_champions[i], given[i], tally=tally, ring=ring, rolling=rolling
                )
                if flags & kernels.S_RESUM:
                    resum()
                if flags & kernels.S_COMPARED:
                    out[i] = (1.0, tally[kernels.T_DIFFERENCE], tally[kernels.T_LAST_CHAMPION])
            return out
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum([len(x) for x in xs], out=offsets[1:])
        flat = np.concatenate(xs)
        ys = np.where(np.array(labels, np.bool_), 1.0, -1.0)
        if given is None:
            scored, probabilities = np.zeros(n, np.bool_), np.zeros(n)
        else:
            scored = np.array([p is not None for p in given], np.bool_)
            probabilities = np.array([0.0 if p is None else p for p in given])
        champions = np.array(p_champions, np.float64)
        done = 0
        while done < n:
            done = self.kernel.shadow_many(
                flat, offsets, ys, champions, probabilities, scored, self.w, self.stats, self.created, self.order,
                self.row_order, self.counters, self.params, tally, ring, rolling, out, done,
            )  # fmt: skip
            if rolling[kernels.R_ADDED] >= ring.shape[0]:  # (the kernel stops right after such an event)
                resum()
        return out

    def _order_new_rows(self, before: int) -> None:
        after = int(self.counters[kernels.C_LEARNED])
        if after - before > 1:
            # A number under a one-hot input's name sits at that input's place in the event, ahead of the
            # numbers before it: put the rows first learned now in the numbers' order, as river's scaler saw them.
            new = set(self.row_order[before:after].tolist())
            self.row_order[before:after] = [row for row in self._scaler_order if row in new]

    def predict_proba_one(self, features: dict[str, Any]) -> float:
        """Probability of the positive class (the session buys)."""
        return self.predict_encoded(self.encode(features))

    def learn_one(self, features: dict[str, Any], label: bool) -> None:
        """One SGD step on one labelled event."""
        self.learn_encoded(self.encode(features, learn=True), label)

    # -- learned state: the river engine's document ---------------------------------------------------
    @classmethod
    def restore(cls, spec: ModelSpec, state: dict[str, Any], cache_dir: str | None = None) -> CompiledModel:
        """A model built from ``spec`` holding the learned numbers of ``state`` (either engine's)."""
        model = cls(spec, cache_dir)
        model.load_state(state)
        return model

    def dump_state(self) -> dict[str, Any]:
        """The document :meth:`streaming.model.OnlineModel.dump_state` writes, with the same orders (the
        captured document of :meth:`capture_state`, its weights as a ``{name: weight}`` map)."""
        state = self.capture_state()()
        state["weights"] = state["weights"].to_dict()
        return state

    def capture_state(self) -> Callable[[], dict[str, Any]]:
        """The learned state as it stands, copied in O(copy), and a function building its document later.

        A learner captures its model at a snapshot and goes on learning at once; the document (names,
        doubles, scaler maps) is built, encoded and written by its snapshot writer thread. So here only the
        arrays are copied (``w`` in creation order, the scaler rows) and the vocabulary's lists; the names of
        the columns and rows are append-only lists, so their lengths now are enough. The document is
        :meth:`dump_state`'s with the weights already packed (:class:`~streaming.weights.PackedWeights`):
        the bytes of the doubles straight from the array, never a ``{name: float}`` map. The vocabulary's maps
        only grow at the end too (values and features are added, never removed or reordered), so their lengths
        now are kept and the lists made later: ``list(values)`` of a map of strings is one C call, which no other
        Python thread interleaves with (the GIL), so it never sees a map changing size.

        >>> model = CompiledModel(ModelSpec())
        >>> model.learn_one({"pages": 3, "month": "Feb"}, True)
        >>> build = model.capture_state()
        >>> model.learn_one({"pages": 1, "month": "Mar"}, False)  # the live model moves on
        >>> doc = build()
        >>> doc["weights"].to_dict(), doc["optimizer_iterations"]
        ({'month_Feb': 0.005, 'pages': 0.0}, 1)
        """
        created, learned = int(self.counters[kernels.C_CREATED]), int(self.counters[kernels.C_LEARNED])
        order = self.order[:created].copy()
        values = self.w[order]  # fancy indexing: a copy, in the order river created the weights
        n_rows = len(self.row_names)
        stats, row_order = self.stats[:n_rows].copy(), self.row_order[:learned].copy()
        names, rows = self.column_names, self.row_names  # append-only: the first ``created`` / ``n_rows`` stay
        intercept = float(self.params[kernels.P_INTERCEPT])
        iterations = int(self.counters[kernels.C_ITERATIONS])
        categories = [(name, values, len(values)) for name, values in self.categories.items()]
        numeric, n_numeric, capped = self.numeric, len(self.numeric), dict(self.capped)
        categorical, numeric_columns, n_names = self._categorical, self._numeric, len(names)

        def document() -> dict[str, Any]:
            listed, numbers = {name: list(values)[:n] for name, values, n in categories}, list(numeric)[:n_numeric]
            finder, where = self._slots, SlotFinder.where(order, n_names)
            vocabulary = {
                "categories": listed,
                "numeric": numbers,
                "capped": capped,
                "positions": {  # the slots, under the snapshot format's key
                    "categories": {
                        name: finder.find(name, values, categorical.get(name, _NONE).get, where)
                        for name, values in listed.items()
                    },
                    "numeric": finder.find(
                        NUMERIC, numbers, lambda name, none: numeric_columns.get(name, (0, none))[1], where
                    ),
                },
            }
            if created and int(order[-1]) == created - 1 and bool((order == np.arange(created)).all()):
                ordered = names[:created]  # columns created in column order (the usual case): one slice
            else:
                ordered = [names[c] for c in order.tolist()]
            learned_rows = row_order.tolist()
            return {
                "scaler": {
                    "counts": {rows[j]: int(stats[j, 0]) for j in learned_rows},
                    "means": {rows[j]: float(stats[j, 1]) for j in learned_rows},
                    "vars": {rows[j]: float(stats[j, 2]) for j in range(n_rows)},
                },
                "weights": PackedWeights(ordered, values.astype("<f8", copy=False).tobytes()),
                "intercept": intercept,
                "optimizer_iterations": iterations,
                "vocabulary": vocabulary,
            }

        return document

    def load_state(self, state: dict[str, Any]) -> None:
        """Fill this freshly built model with ``state`` from either engine's ``dump_state``.

        Weights packed as stored (:class:`~streaming.weights.PackedWeights`) go straight into the array
        (``np.frombuffer``); a ``{name: weight}`` map the same way.
        """
        try:
            scaler = state["scaler"]
            counts, means, variances = dict(scaler["counts"]), dict(scaler["means"]), dict(scaler["vars"])
            for name in [*variances, *(n for n in counts if n not in variances)]:
                row = self._row(name)
                self.stats[row] = (
                    float(counts.get(name, 0)),
                    float(means.get(name, 0.0)),
                    float(variances.get(name, 0.0)),
                )
            for n, name in enumerate(counts):
                self.row_order[n] = self.rows[name]
            self.counters[kernels.C_LEARNED] = len(counts)
            self._load_weights(state["weights"])
            self.params[kernels.P_INTERCEPT] = float(state["intercept"])
            self.counters[kernels.C_ITERATIONS] = int(state["optimizer_iterations"])
            vocabulary = state.get("vocabulary")
            self.load_vocabulary(vocabulary, counts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SnapshotCorruptError(f"model state is malformed ({exc!r}); pick another version") from None
        slots = vocabulary.get("positions") if isinstance(vocabulary, dict) else None
        self._remember_vocabulary(slots if isinstance(slots, dict) else {})

    def _remember_vocabulary(self, slots: dict[str, Any]) -> None:
        """Put the whole vocabulary on the fast path at once (what :meth:`_remember` does entry by entry, in bulk).

        ``slots`` says where each entry's weight is among the stored weights (the vocabulary's ``positions`` in the
        state document, :mod:`streaming.slots`). The weights were just loaded into columns 0..n-1 in their
        stored order, so an entry's slot is its column: one ``zip`` per feature. Without slots (versions written
        before they were stored), or where they fail the checks (ranges, and a spot check against the names:
        :func:`~streaming.slots.names_agree`), each entry's input name is looked up instead: a 100k-entry
        vocabulary in a few C-level passes, not 100k Python calls.

        The names → columns map is then left to be built when first needed, if the slots show the names are
        distinct: every weight is some entry's, and no two entries share one. Otherwise it is built now, and a name
        stored twice is refused.
        """
        rows, n = self.rows, len(self.column_names)
        cached: list[int] = []
        categorical: dict[str, dict[str, int]] = {}
        by_feature = slots.get("categories")
        by_feature = by_feature if isinstance(by_feature, dict) else {}
        for name, values in self.categories.items():
            found: dict[str, int]
            stored = stored_columns(by_feature.get(name), len(values), n)
            if stored is not None and names_agree(self.column_names, f"{name}_", values, stored[0]):
                found = dict(zip(values, stored[0], strict=True))
                if not stored[1]:  # a value with no weight yet (it gets one when learned)
                    found = {value: column for value, column in found.items() if column != NO_WEIGHT}
            else:
                looked_up = list(map(self.columns.get, map(f"{name}_".__add__, values)))
                found = dict(zip(values, looked_up, strict=True))  # type: ignore[arg-type]
                if None in looked_up:
                    found = {value: column for value, column in found.items() if column is not None}
            if found:
                categorical[name] = found
                cached += found.values()
        stored = stored_columns(slots.get("numeric"), len(self.numeric), n)
        if stored is not None and names_agree(self.column_names, "", self.numeric, stored[0]):
            pairs = zip(self.numeric, stored[0], strict=True)
            numeric = {name: (rows[name], column) for name, column in pairs if column != NO_WEIGHT and name in rows}
        else:
            columns = self.columns
            numeric = {name: (rows[name], columns[name]) for name in self.numeric if name in rows and name in columns}
        cached += (column for _row, column in numeric.values())
        self._categorical, self._numeric, self._cached_columns = categorical, numeric, set(cached)
        self._collisions = len(self._cached_columns) != len(cached)  # two inputs share one river name: slow path
        distinct = self._columns is None and not self._collisions and len(cached) == n  # each weight an entry's
        if not distinct and len(self.columns) != n:
            raise SnapshotCorruptError("model state is malformed: a weight name is stored twice; pick another version")

    def _load_weights(self, weights: PackedWeights | dict[str, float]) -> None:
        """Weights in creation order into columns 0..n-1 (a fresh model has none yet), created in that order."""
        if isinstance(weights, PackedWeights):
            names, values = list(weights.names), np.frombuffer(weights.float64le, dtype="<f8")
        else:
            weights = dict(weights)
            names, values = list(weights), np.fromiter(weights.values(), np.float64, len(weights))
        n = len(names)
        if not set(map(type, names)) <= {str}:
            raise ValueError("weight names must be strings")
        capacity = 64
        while capacity <= n:
            capacity *= 2
        self._columns, self.column_names = None, names  # the names → columns map: see _remember_vocabulary
        self.w, self.created = np.zeros(capacity), np.zeros(capacity, np.bool_)
        self.order = np.zeros(capacity, np.int64)
        self.w[:n], self.created[:n], self.order[:n] = values, True, np.arange(n)
        self.counters[kernels.C_CREATED] = n
