"""Other river classifiers behind the same front, for challengers: passive-aggressive and ALMA (river engine).

The front is the champion's (:mod:`streaming.model`): the shared :class:`~streaming.vocabulary.Vocabulary`, river's
``StandardScaler`` on the numbers and ``OneHotEncoder`` on the strings; the classifier is river's own
``linear_model.PAClassifier`` (``kind="pa"``, ``C=1``, mode 1) or ``linear_model.ALMAClassifier`` (``kind="alma"``, its
defaults). Each learns one event at a time exactly as river does; its state is a plain document (never pickled):
the scaler's statistics, the weights in their insertion order (a dot product and ALMA's norm sum them in that order,
so the order is part of the state), the intercept (PA) or ALMA's step counter, the vocabulary and the events learned.

>>> model = ClassifierModel(ModelSpec(kind="pa"))
>>> model.learn_one({"pages": 3, "month": "Feb"}, True)
>>> restored = ClassifierModel(ModelSpec(kind="pa"))
>>> restored.load_state(model.dump_state())
>>> restored.predict_proba_one({"pages": 1}) == model.predict_proba_one({"pages": 1})
True
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from river import compose, linear_model, naive_bayes, preprocessing

from streaming.errors import SnapshotCorruptError
from streaming.river_internals import gaussian_state, scaler_state, set_gaussian_state, set_scaler_state
from streaming.vocabulary import ModelSpec, Vocabulary

__all__ = ["KINDS", "ClassifierModel"]

#: The kinds built here (``logistic_regression`` is :mod:`streaming.model` / :mod:`streaming.compiled`).
KINDS = ("pa", "alma", "gaussian_nb")


def _classifier(kind: str) -> Any:
    if kind == "pa":
        return linear_model.PAClassifier(C=1.0, mode=1)  # type: ignore[no-untyped-call]
    if kind == "alma":
        return linear_model.ALMAClassifier()  # type: ignore[no-untyped-call]
    if kind == "gaussian_nb":
        return naive_bayes.GaussianNB()  # type: ignore[no-untyped-call]
    raise ValueError(f"unknown classifier kind {kind!r}; these are built here: {', '.join(KINDS)}")


class ClassifierModel(Vocabulary):
    """A river classifier of ``spec.kind`` (:data:`KINDS`) behind the champion's front (see the module docstring).

    Parameters
    ----------
    spec
        What the model is (its ``kind`` one of :data:`KINDS`; ``learning_rate`` and ``l2`` do not apply).
    """

    engine = "river"
    encoded_fast = False

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.kind = spec.kind
        numeric = compose.SelectType(numbers.Number) | preprocessing.StandardScaler()
        categorical = compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True)
        self.pipeline = compose.Pipeline(compose.TransformerUnion(numeric, categorical), _classifier(spec.kind))
        union = self.pipeline.steps["TransformerUnion"]
        self.scaler = next(
            step
            for branch in union.transformers.values()
            for step in branch.steps.values()
            if isinstance(step, preprocessing.StandardScaler)
        )
        self.classifier = list(self.pipeline.steps.values())[-1]
        self.learned = 0

    @property
    def steps(self) -> int:
        """Events learned."""
        return self.learned

    def encodes_like(self, other: object) -> bool:
        return False

    def predict_encoded(self, x: dict[str, Any]) -> float:
        probability: float = self.pipeline.predict_proba_one(x).get(True, 0.0)
        return probability

    def learn_encoded(self, x: dict[str, Any], label: bool) -> None:
        self.pipeline.learn_one(x, label)
        self.learned += 1

    def predict_proba_one(self, features: dict[str, Any]) -> float:
        return self.predict_encoded(self.encode(features))

    def learn_one(self, features: dict[str, Any], label: bool) -> None:
        self.learn_encoded(self.encode(features, learn=True), label)

    # -- state ----------------------------------------------------------------------------------------
    def _weights(self) -> dict[str, float]:
        return self.classifier.w if self.kind == "alma" else self.classifier.weights  # type: ignore[no-any-return]

    def _classifier_state(self) -> dict[str, Any]:
        """The classifier's learned numbers, in river's orders (copied)."""
        clf = self.classifier
        if self.kind == "gaussian_nb":
            return {
                "classes": [[label, count] for label, count in clf.class_counts.items()],
                "gaussians": [
                    [label, [[name, *gaussian_state(g)] for name, g in by_feature.items()]]
                    for label, by_feature in clf.gaussians.items()
                ],
            }
        weights = self._weights()
        return {
            "coefficients": {"names": list(weights), "values": list(weights.values())},
            "intercept": getattr(clf, "intercept", 0.0),
            "k": getattr(clf, "k", 0),
        }

    def _load_classifier(self, state: dict[str, Any]) -> None:
        clf = self.classifier
        if self.kind == "gaussian_nb":
            clf.class_counts.clear()
            clf.class_counts.update({bool(label): int(count) for label, count in state["classes"]})
            clf.gaussians.clear()
            for label, by_feature in state["gaussians"]:
                for name, n, mean, s in by_feature:
                    set_gaussian_state(clf.gaussians[bool(label)][str(name)], float(n), float(mean), float(s))
            return
        coefficients = state["coefficients"]
        weights = defaultdict(float, zip(coefficients["names"], map(float, coefficients["values"]), strict=True))
        if self.kind == "alma":
            clf.w, clf.k = weights, int(state["k"])
        else:
            clf.weights, clf.intercept = weights, float(state["intercept"])

    def capture_state(self) -> Callable[[], dict[str, Any]]:
        state = {
            "kind": self.kind,
            "scaler": scaler_state(self.scaler),
            **self._classifier_state(),
            "learned": self.learned,
            "vocabulary": self.dump_vocabulary(),
        }
        return lambda: state

    def dump_state(self) -> dict[str, Any]:
        return self.capture_state()()

    def load_state(self, state: dict[str, Any]) -> None:
        try:
            if state["kind"] != self.kind:
                raise ValueError(f"a {state['kind']} state for a {self.kind} model")
            stats = state["scaler"]
            set_scaler_state(self.scaler, stats["counts"], stats["means"], stats["vars"])
            self._load_classifier(state)
            self.learned = int(state["learned"])
            self.load_vocabulary(state.get("vocabulary"), stats["counts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"model state is malformed ({exc!r}); pick another version") from None
