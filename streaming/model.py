"""The live model: a river pipeline built from a plain, serialisable spec.

Default pipeline: numeric features -> ``StandardScaler``; string features (booleans arrive as
``"true"``/``"false"``) -> ``OneHotEncoder``; both -> ``LogisticRegression(optimizer=SGD(lr))``.

The model's size is bounded whatever the events carry: each string feature learns at most
``max_categories_per_feature`` values (later new values share one ``"__other__"`` weight), and the
model learns at most ``max_inputs`` inputs in all (numeric features and categories; later new numeric
features are ignored). Below those caps the pipeline sees the events unchanged, so it learns exactly
as river does on its own. The vocabulary is part of the learned state (snapshots).

>>> model = OnlineModel(ModelSpec(learning_rate=0.01))
>>> model.predict_proba_one({"pages": 3, "month": "Feb"})
0.5
>>> model.learn_one({"pages": 3, "month": "Feb"}, True)
>>> round(model.predict_proba_one({"pages": 3, "month": "Feb"}), 6)
0.5025
>>> small = OnlineModel(ModelSpec(max_categories_per_feature=1))
>>> small.learn_one({"month": "Feb"}, True); small.learn_one({"month": "Mar"}, False)
>>> sorted(small.classifier._weights), small.capped
(['month_Feb', 'month___other__'], {'category': 1, 'feature': 0})
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
from typing import Any

from river import compose, linear_model, optim, preprocessing, utils

from streaming.errors import SnapshotCorruptError

__all__ = ["OTHER", "ModelSpec", "OnlineModel", "build_pipeline"]

#: The shared category of a string feature's values beyond its cap.
OTHER = "__other__"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the model is: kind, hyperparameters and feature selection. Stored in every snapshot."""

    kind: str = "logistic_regression"
    learning_rate: float = 0.01
    l2: float = 0.0
    features_include: tuple[str, ...] = ()
    features_exclude: tuple[str, ...] = ()
    max_categories_per_feature: int = 1000
    max_inputs: int = 100_000

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "features_include": list(self.features_include),
            "features_exclude": list(self.features_exclude),
            "max_categories_per_feature": self.max_categories_per_feature,
            "max_inputs": self.max_inputs,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelSpec:
        return cls(
            kind=doc["kind"],
            learning_rate=float(doc["learning_rate"]),
            l2=float(doc["l2"]),
            features_include=tuple(doc.get("features_include", ())),
            features_exclude=tuple(doc.get("features_exclude", ())),
            max_categories_per_feature=int(doc.get("max_categories_per_feature", cls.max_categories_per_feature)),
            max_inputs=int(doc.get("max_inputs", cls.max_inputs)),
        )

    def structure(self) -> dict[str, Any]:
        """The part of the spec a snapshot's learned state depends on (not hyperparameters)."""
        doc = self.to_dict()
        return {k: doc[k] for k in ("kind", "features_include", "features_exclude")}


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


class OnlineModel:
    """A river pipeline plus the feature selection and the size caps of its spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.pipeline, self.scaler, self.classifier = build_pipeline(spec)
        self._include = frozenset(spec.features_include)
        self._exclude = frozenset(spec.features_exclude)
        #: learned vocabulary: values per string feature, numeric feature names (insertion-ordered dicts)
        self.categories: dict[str, dict[str, None]] = {}
        self.numeric: dict[str, None] = {}
        self.inputs = 0  # numeric features + categories learned
        self.capped = {"category": 0, "feature": 0}  # learned occurrences sent to OTHER / ignored

    def select(self, features: dict[str, Any]) -> dict[str, Any]:
        if not self._include and not self._exclude:
            return features
        return {
            k: v for k, v in features.items() if (not self._include or k in self._include) and k not in self._exclude
        }

    def _all_known(self, features: dict[str, Any]) -> bool:
        categories, numeric = self.categories, self.numeric
        for name, value in features.items():
            if isinstance(value, str):
                known = categories.get(name)
                if known is None or value not in known:
                    return False
            elif name not in numeric:
                return False
        return True

    def encode(self, features: dict[str, Any], *, learn: bool = False) -> dict[str, Any]:
        """The features the pipeline sees: selected, with what lies beyond the caps folded or dropped.

        With ``learn``, new features and categories within the caps join the vocabulary (call it once
        per event, before scoring: scoring and learning then see the same input).
        """
        selected = self.select(features)
        if self._all_known(selected):
            return selected  # the common case: nothing new, the event passes unchanged
        spec, out = self.spec, {}
        for name, value in selected.items():
            if isinstance(value, str):
                known = self.categories.get(name)
                if known is not None and value in known:
                    out[name] = value
                elif known is None and self.inputs >= spec.max_inputs:
                    self.capped["feature"] += learn  # a new string feature once the model is full
                elif known is not None and (
                    len(known) - (OTHER in known) >= spec.max_categories_per_feature or self.inputs >= spec.max_inputs
                ):
                    if learn:
                        self.capped["category"] += 1
                        known.setdefault(OTHER, None)
                    out[name] = OTHER
                else:
                    if learn:
                        self.categories.setdefault(name, {})[value] = None
                        self.inputs += 1
                    out[name] = value
            elif name in self.numeric:
                out[name] = value
            elif self.inputs < spec.max_inputs:
                if learn:
                    self.numeric[name] = None
                    self.inputs += 1
                out[name] = value
            else:
                self.capped["feature"] += learn
        return out

    @property
    def steps(self) -> int:
        """SGD steps taken: events this model's weights learned from."""
        return int(self.classifier.optimizer.n_iterations)

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
        predictions and learns bit-identically afterwards.

        >>> a = OnlineModel(ModelSpec())
        >>> a.learn_one({"x": 2.0, "c": "u"}, True)
        >>> b = OnlineModel(ModelSpec())
        >>> b.load_state(a.dump_state())
        >>> a.predict_proba_one({"x": 1.0}) == b.predict_proba_one({"x": 1.0})
        True
        """
        scaler, clf = self.scaler, self.classifier
        return {
            "scaler": {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)},
            "weights": clf._weights.to_dict(),
            "intercept": clf.intercept,
            "optimizer_iterations": clf.optimizer.n_iterations,
            "vocabulary": {
                "categories": {name: list(values) for name, values in self.categories.items()},
                "numeric": list(self.numeric),
                "capped": dict(self.capped),
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Fill this freshly built model with ``state`` from :meth:`dump_state`."""
        try:
            scaler, clf = self.scaler, self.classifier
            scaler.counts = collections.Counter(state["scaler"]["counts"])
            scaler.means = collections.defaultdict(float, state["scaler"]["means"])
            scaler.vars = collections.defaultdict(float, state["scaler"]["vars"])
            clf._weights = utils.VectorDict(dict(state["weights"]))
            clf.intercept = float(state["intercept"])
            clf.optimizer.n_iterations = int(state["optimizer_iterations"])
            vocabulary = state.get("vocabulary") or {}  # absent in snapshots written before the caps existed
            self.categories = {name: dict.fromkeys(values) for name, values in vocabulary.get("categories", {}).items()}
            self.numeric = dict.fromkeys(vocabulary.get("numeric", ()))
            self.inputs = len(self.numeric) + sum(len(v) - (OTHER in v) for v in self.categories.values())
            self.capped = {"category": 0, "feature": 0, **vocabulary.get("capped", {})}
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"model state is malformed ({exc!r}); pick another version") from None
