"""The live model: a river pipeline built from a plain, serialisable spec.

Default pipeline: numeric features -> ``StandardScaler``; string features (booleans arrive as
``"true"``/``"false"``) -> ``OneHotEncoder``; both -> ``LogisticRegression(optimizer=SGD(lr))``.

>>> model = OnlineModel(ModelSpec(learning_rate=0.01))
>>> model.predict_proba_one({"pages": 3, "month": "Feb"})
0.5
>>> model.learn_one({"pages": 3, "month": "Feb"}, True)
>>> round(model.predict_proba_one({"pages": 3, "month": "Feb"}), 6)
0.5025
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from river import compose, linear_model, optim, preprocessing

__all__ = ["ModelSpec", "OnlineModel", "build_pipeline"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the model is: kind, hyperparameters and feature selection. Stored in every snapshot."""

    kind: str = "logistic_regression"
    learning_rate: float = 0.01
    l2: float = 0.0
    features_include: tuple[str, ...] = ()
    features_exclude: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "features_include": list(self.features_include),
            "features_exclude": list(self.features_exclude),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelSpec:
        return cls(
            kind=doc["kind"],
            learning_rate=float(doc["learning_rate"]),
            l2=float(doc["l2"]),
            features_include=tuple(doc.get("features_include", ())),
            features_exclude=tuple(doc.get("features_exclude", ())),
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
    scaler = next(step for branch in union.transformers.values() for step in branch.steps.values()
                  if isinstance(step, preprocessing.StandardScaler))
    return pipeline, scaler, pipeline.steps["LogisticRegression"]


class OnlineModel:
    """A river pipeline plus the feature selection of its spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.pipeline, self.scaler, self.classifier = build_pipeline(spec)
        self._include = frozenset(spec.features_include)
        self._exclude = frozenset(spec.features_exclude)

    def select(self, features: dict[str, Any]) -> dict[str, Any]:
        if not self._include and not self._exclude:
            return features
        return {
            k: v
            for k, v in features.items()
            if (not self._include or k in self._include) and k not in self._exclude
        }

    def predict_proba_one(self, features: dict[str, Any]) -> float:
        """Probability of the positive class (the session buys)."""
        return self.pipeline.predict_proba_one(self.select(features)).get(True, 0.0)

    def learn_one(self, features: dict[str, Any], label: bool) -> None:
        """One SGD step on one labelled event."""
        self.pipeline.learn_one(self.select(features), label)
