"""The live model (river engine): a river pipeline built from a plain, serialisable spec.

Default pipeline: numeric features -> ``StandardScaler``; string features (booleans arrive as
``"true"``/``"false"``) -> ``OneHotEncoder``; both -> ``LogisticRegression(optimizer=SGD(lr))``.

The model's size is bounded whatever the events carry (:class:`~streaming.vocabulary.Vocabulary`):
each string feature learns at most ``max_categories_per_feature`` values (later new values share one
``"__other__"`` weight), and the model learns at most ``max_inputs`` inputs in all, their names at most
``max_vocabulary_bytes`` bytes (which bounds a snapshot's size: see :mod:`streaming.vocabulary`). Below those
caps the pipeline sees the events unchanged, so it learns exactly as river does on its own. The vocabulary is
part of the learned state (snapshots). The compiled engine (:mod:`streaming.compiled`) does the same
arithmetic over arrays and reads and writes the same state document.

>>> model = OnlineModel(ModelSpec(learning_rate=0.01))
>>> model.predict_proba_one({"pages": 3, "month": "Feb"})
0.5
>>> model.learn_one({"pages": 3, "month": "Feb"}, True)
>>> round(model.predict_proba_one({"pages": 3, "month": "Feb"}), 6)
0.5025
>>> small = OnlineModel(ModelSpec(max_categories_per_feature=1))
>>> small.learn_one({"month": "Feb"}, True); small.learn_one({"month": "Mar"}, False)
>>> sorted(weights_of(small.classifier)), small.capped
(['month_Feb', 'month___other__'], {'category': 1, 'feature': 0})
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from river import compose, linear_model, optim, preprocessing

from streaming.config import ModelSettings, Settings
from streaming.errors import SnapshotCorruptError
from streaming.river_internals import scaler_state, set_scaler_state, set_weights, weights_of
from streaming.slots import slots_of
from streaming.vocabulary import OTHER, ModelSpec, Vocabulary
from streaming.weights import PackedWeights

__all__ = ["OTHER", "ModelSpec", "OnlineModel", "build_pipeline", "spec_from_settings"]


def build_pipeline(
    spec: ModelSpec,
) -> tuple[compose.Pipeline, preprocessing.StandardScaler, linear_model.LogisticRegression]:
    """Build the untrained river pipeline described by ``spec``, with handles on its learned parts."""
    if spec.kind != "logistic_regression":
        raise ValueError(f"unknown model kind {spec.kind!r}; supported: logistic_regression")
    scaler = preprocessing.StandardScaler()
    classifier = linear_model.LogisticRegression(optimizer=optim.SGD(spec.learning_rate), l2=spec.l2)
    numeric = compose.SelectType(numbers.Number) | scaler
    categorical = compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True)
    pipeline = compose.Pipeline(compose.TransformerUnion(numeric, categorical), classifier)
    # Composition may copy its parts: take the handles from the finished pipeline itself.
    union = pipeline.steps["TransformerUnion"]
    scaler = next(
        step
        for branch in union.transformers.values()
        for step in branch.steps.values()
        if isinstance(step, preprocessing.StandardScaler)
    )
    return pipeline, scaler, pipeline.steps["LogisticRegression"]


class OnlineModel(Vocabulary):
    """A river pipeline plus the feature selection and the size caps of its spec.

    The river engine (``LIVELEARN_ENGINE=river``): river's ``StandardScaler`` on the numbers and ``OneHotEncoder``
    on the strings, into ``LogisticRegression`` with plain SGD (:func:`build_pipeline`), learned one event at a
    time. Each event first goes through the shared :class:`~streaming.vocabulary.Vocabulary` (feature selection,
    size caps); below the caps the pipeline sees it unchanged, so the model learns exactly as river does on its
    own. :meth:`dump_state` writes the document :class:`~streaming.compiled.CompiledModel` writes, so either engine
    restores the other's versions.

    Parameters
    ----------
    spec
        What the model is: ``learning_rate``, ``l2``, the features it selects and the vocabulary's size caps
        (:class:`~streaming.vocabulary.ModelSpec`; the kind must be ``logistic_regression``, else ``ValueError``).

    Examples
    --------
    >>> model = OnlineModel(ModelSpec(learning_rate=0.1))
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

    A version stores the learned state; restored, it predicts (and learns on) bit for bit:

    >>> restored = OnlineModel.restore(ModelSpec(learning_rate=0.1), model.dump_state())
    >>> event = {"pages": 4, "month": "Feb"}
    >>> restored.predict_proba_one(event) == model.predict_proba_one(event)
    True
    """

    engine = "river"
    encoded_fast = False  # (see CompiledModel.encoded_fast: nothing is shared on this engine)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.pipeline, self.scaler, self.classifier = build_pipeline(spec)

    @property
    def steps(self) -> int:
        """SGD steps taken: events this model's weights learned from."""
        return int(self.classifier.optimizer.n_iterations)

    def encodes_like(self, other: object) -> bool:
        """``False``: the river engine's encoded event is a dict each pipeline reads on its own; nothing to share."""
        return False

    def predict_encoded(self, x: dict[str, Any]) -> float:
        """Probability of the positive class for features already passed through :meth:`encode`."""
        probability: float = self.pipeline.predict_proba_one(x).get(True, 0.0)
        return probability

    def learn_encoded(self, x: dict[str, Any], label: bool) -> None:
        """One SGD step on features already passed through :meth:`encode` with ``learn=True``."""
        self.pipeline.learn_one(x, label)

    def predict_proba_one(self, features: dict[str, Any]) -> float:
        """Probability of the positive class (the session buys)."""
        return self.predict_encoded(self.encode(features))

    def learn_one(self, features: dict[str, Any], label: bool) -> None:
        """One SGD step on one labelled event."""
        self.learn_encoded(self.encode(features, learn=True), label)

    # -- learned state, as plain msgpack-able values (never pickled) --------------------------------
    @classmethod
    def restore(cls, spec: ModelSpec, state: dict[str, Any]) -> OnlineModel:
        """A model built from ``spec`` holding the learned numbers of ``state`` (from :meth:`dump_state`)."""
        model = cls(spec)
        model.load_state(state)
        return model

    def dump_state(self) -> dict[str, Any]:
        """The scaler statistics, weights, intercept, optimizer step counter and vocabulary.

        Dict order is kept (msgpack maps keep it), which matters: the weight vector's iteration order
        decides the order of float additions in the dot product, so a restored model gives bit-identical
        predictions and learns bit-identically afterwards. The vocabulary stores each entry's slot, where its
        weight is among the weights (the document's key is ``positions``: :mod:`streaming.slots`).

        >>> a = OnlineModel(ModelSpec())
        >>> a.learn_one({"x": 2.0, "c": "u"}, True)
        >>> b = OnlineModel(ModelSpec())
        >>> b.load_state(a.dump_state())
        >>> a.predict_proba_one({"x": 1.0}) == b.predict_proba_one({"x": 1.0})
        True
        >>> a.dump_state()["vocabulary"]["positions"]  # "c_u" is the first weight river created, then "x"
        {'categories': {'c': b'\\x00\\x00\\x00\\x00'}, 'numeric': b'\\x01\\x00\\x00\\x00'}
        """
        return self.capture_state()()

    def capture_state(self) -> Callable[[], dict[str, Any]]:
        """The learned state as it stands (shallow copies of river's maps, O(copy)), and a function building its
        document later (a learner's snapshot writer thread encodes it while learning goes on): the copies plus the
        vocabulary's slots, derived from them."""
        scaler, clf = self.scaler, self.classifier
        state = {
            "scaler": scaler_state(scaler),
            "weights": weights_of(clf),
            "intercept": clf.intercept,
            "optimizer_iterations": clf.optimizer.n_iterations,
            "vocabulary": self.dump_vocabulary(),
        }

        def document() -> dict[str, Any]:
            vocabulary, names = state["vocabulary"], list(state["weights"])
            vocabulary["positions"] = slots_of(vocabulary["categories"], vocabulary["numeric"], names)
            return state

        return document

    def load_state(self, state: dict[str, Any]) -> None:
        """Fill this freshly built model with ``state`` from :meth:`dump_state` (weights may come packed as stored:
        :class:`~streaming.weights.PackedWeights`)."""
        try:
            scaler, clf = self.scaler, self.classifier
            stats = state["scaler"]
            set_scaler_state(scaler, stats["counts"], stats["means"], stats["vars"])
            weights = state["weights"]
            set_weights(clf, weights.to_dict() if isinstance(weights, PackedWeights) else dict(weights))
            clf.intercept = float(state["intercept"])
            clf.optimizer.n_iterations = int(state["optimizer_iterations"])
            self.load_vocabulary(state.get("vocabulary"), state["scaler"]["counts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"model state is malformed ({exc!r}); pick another version") from None


def spec_from_settings(settings: ModelSettings | Settings) -> ModelSpec:
    """The model the settings (or their ``model`` group) describe."""
    model = ModelSettings.of(settings)
    return ModelSpec(
        learning_rate=model.learning_rate,
        l2=model.l2,
        features_include=model.features_include,
        features_exclude=model.features_exclude,
        max_categories_per_feature=model.max_categories_per_feature,
        max_inputs=model.max_inputs,
        max_vocabulary_bytes=model.max_vocabulary_bytes,
    )
