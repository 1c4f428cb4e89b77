"""The learned vocabulary and size caps every learning engine shares (feature selection, ``__other__``).

Each string feature learns at most ``max_categories_per_feature`` values (later new values share one
``"__other__"`` input) and the model learns at most ``max_inputs`` inputs in all (numeric features and
categories; later new features are ignored). Below those caps an event passes unchanged, so the model
learns exactly as river does on its own. Both engines (:mod:`streaming.model`, :mod:`streaming.compiled`)
encode events with this one class, so their vocabularies — part of every snapshot — are the same.

>>> vocabulary = Vocabulary(ModelSpec(max_categories_per_feature=1))
>>> vocabulary.encode({"month": "Feb", "pages": 3}, learn=True)
{'month': 'Feb', 'pages': 3}
>>> vocabulary.encode({"month": "Mar"}, learn=True), vocabulary.capped
({'month': '__other__'}, {'category': 1, 'feature': 0})
>>> vocabulary.dump_vocabulary()
{'categories': {'month': ['Feb', '__other__']}, 'numeric': ['pages'], 'capped': {'category': 1, 'feature': 0}}
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["OTHER", "ModelSpec", "Vocabulary"]

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


class Vocabulary:
    """Feature selection plus the vocabulary learned within the caps of ``spec``."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
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
        """The features the model sees: selected, with what lies beyond the caps folded or dropped.

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

    def dump_vocabulary(self) -> dict[str, Any]:
        """The ``vocabulary`` part of a model state."""
        return {
            "categories": {name: list(values) for name, values in self.categories.items()},
            "numeric": list(self.numeric),
            "capped": dict(self.capped),
        }

    def load_vocabulary(self, vocabulary: dict[str, Any] | None) -> None:
        """Fill the vocabulary from :meth:`dump_vocabulary` (absent in snapshots written before the caps)."""
        vocabulary = vocabulary or {}
        self.categories = {name: dict.fromkeys(values) for name, values in vocabulary.get("categories", {}).items()}
        self.numeric = dict.fromkeys(vocabulary.get("numeric", ()))
        self.inputs = len(self.numeric) + sum(len(v) - (OTHER in v) for v in self.categories.values())
        self.capped = {"category": 0, "feature": 0, **vocabulary.get("capped", {})}
