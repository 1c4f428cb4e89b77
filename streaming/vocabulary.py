"""The learned vocabulary and size caps every learning engine shares (feature selection, ``__other__``).

Each string feature learns at most ``max_categories_per_feature`` values (later new values share one
``"__other__"`` input) and the model learns at most ``max_inputs`` inputs in all (numeric features and
categories). The names are bounded in bytes too: the UTF-8 bytes of the learned inputs' names (a numeric
feature's name; a category's as river names its weight, ``feature_value``) stay within ``max_vocabulary_bytes``.
An input that does not fit is not learned: a new feature is ignored, a new value of a known string feature
shares ``"__other__"`` (counted in ``capped``, as beyond ``max_inputs``; a shorter one may still fit later).
Below those caps an event passes unchanged, so the model learns exactly as river does on its own. Both engines
(:mod:`streaming.model`, :mod:`streaming.compiled`) encode events with this one class, so their vocabularies —
part of every snapshot — are the same.

**Only learning adds inputs.** An event that is only scored (no label, learning frozen, serving) is encoded without
``learn``: a number the vocabulary has not learned is dropped, so it enters neither the model's state nor a
snapshot nor a serving replica's memory, whatever names producers send. River would score it exactly 0 anyway:
``StandardScaler.transform_one`` reads its variance from a defaultdict — inserting ``vars[name] = 0.0`` — and
scales it to ``0.0`` (``... if v else 0.0``), times a weight that does not exist (river's dot product skips it).
A string value passes as before (a new one of a full feature as ``__other__``): scoring it changes no state in
either engine, and its one-hot input adds its weight if one has that name (else nothing), as in river. So, with
the same events learned and scored, livelearn and a plain river loop (``predict_proba_one`` on every event,
``learn_one`` on the learned ones) have equal probabilities, weights (and their order), intercept, scaler
``counts`` and ``means``, and ``vars`` values of every learned number, to the last bit; river's ``vars`` also
hold ``0.0`` for each number it only scored — livelearn's do not (and its ``vars`` list a number where it was
first learned, river's where it was first seen). The one case where dropping is not exactly river: a scored-only
number named like a learned one-hot input (``a_b`` with ``a="b"`` learned) whose weight is infinite or NaN —
river's ``weight * 0.0`` is NaN, livelearn's score is not.

**Worst-case snapshot size** (:meth:`ModelSpec.max_model_bytes`). A snapshot stores each learned input's name
at most five times (a numeric feature's: weight, vocabulary, scaler counts, means and variances; a category's
fewer, its feature's ``__other__`` included) plus at most 64 bytes of its own (msgpack headers, the weight, the
scaler's count, mean and variance, its slot among the weights; measured with the snapshot encoding: 36 to 56
bytes, a few more for counts past 127). So the ``model`` of a snapshot takes at most::

    5 * max_vocabulary_bytes + 64 * max_inputs + 1 KB   (defaults: 5 * 4 MiB + 64 * 100,000 + 1 KB ≈ 27.4 MB)

whatever the events carry: 101 events of 999 numeric features under 256-character names, which made every
snapshot 132.6 MB, make 21.7 MB (``tests/test_model_caps.py``, also long values, names of 4-byte characters and a
mix). The rest of a blob (spec, rolling metrics, the idempotence window: 9 bytes per remembered id and
partition) is bounded by its own settings. A model restored from a version learned under larger caps keeps what
it learned and learns no new inputs while they do not fit.

>>> vocabulary = Vocabulary(ModelSpec(max_categories_per_feature=1))
>>> vocabulary.encode({"month": "Feb", "pages": 3}, learn=True)
{'month': 'Feb', 'pages': 3}
>>> vocabulary.encode({"month": "Mar"}, learn=True), vocabulary.capped
({'month': '__other__'}, {'category': 1, 'feature': 0})
>>> vocabulary.dump_vocabulary()
{'categories': {'month': ['Feb', '__other__']}, 'numeric': ['pages'], 'capped': {'category': 1, 'feature': 0}}
>>> vocabulary.name_bytes  # "month_Feb" and "pages"
14
>>> small = Vocabulary(ModelSpec(max_vocabulary_bytes=16))
>>> small.encode({"pages": 3, "month": "Feb", "é" * 5: 1.0}, learn=True)  # "é" is 2 bytes: 10 do not fit
{'pages': 3, 'month': 'Feb'}
>>> small.encode({"month": "Mar", "x": 2.0}, learn=True), small.name_bytes, small.capped
({'month': '__other__', 'x': 2.0}, 15, {'category': 1, 'feature': 1})
>>> small.encode({"pages": 1, "y": 2.0})  # scored only: the unlearned number is dropped, nothing is learned
{'pages': 1}
>>> small.numeric, small.capped
({'pages': None, 'x': None}, {'category': 1, 'feature': 1})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from streaming.errors import SnapshotCorruptError

__all__ = ["OTHER", "ModelSpec", "Vocabulary"]

#: The shared category of a string feature's values beyond its cap.
OTHER = "__other__"


def utf8_bytes(text: str) -> int:
    """The UTF-8 length of ``text`` (a lone surrogate, which no event carries, as 3 bytes: never an error)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _vocabulary_bytes(categories: dict[str, dict[str, None]], numeric: dict[str, None]) -> int:
    """The UTF-8 bytes of the names of the inputs in a vocabulary (C-level passes: a restore of 100k entries)."""
    total = utf8_bytes("".join(numeric))
    for name, values in categories.items():
        n = len(values) - (OTHER in values)
        total += n * (utf8_bytes(name) + 1) + utf8_bytes("".join(values)) - (len(OTHER) if OTHER in values else 0)
    return total


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the model is: kind, hyperparameters and feature selection. Stored in every snapshot.

    Both engines build their model from it (:class:`~streaming.model.OnlineModel`,
    :class:`~streaming.compiled.CompiledModel`); the learner builds it from the settings of the same names
    (:func:`streaming.learner.state.spec_from_settings`). Every snapshot stores it (:meth:`to_dict`), and a
    version restores only into a spec of the same :meth:`structure`.

    Parameters
    ----------
    kind
        The model: ``"logistic_regression"`` (the default; both engines), or for a challenger river's ``"pa"``,
        ``"alma"`` or ``"gaussian_nb"`` behind the same front (:mod:`streaming.classifiers`, the river engine).
    learning_rate
        The SGD learning rate of the weights (default ``0.01``; the intercept's is river's ``0.01`` whatever this is).
    l2
        The L2 regularisation strength (default ``0.0``).
    features_include
        Only these features are learned and scored (default ``()``: all of them).
    features_exclude
        These features are ignored (default ``()``).
    max_categories_per_feature
        Values a string feature learns (default ``1000``); later new values share one ``"__other__"`` input.
    max_inputs
        Inputs (numeric features and categories) the model learns in all (default ``100_000``).
    max_vocabulary_bytes
        UTF-8 bytes of the learned inputs' names (default 4 MiB), which bounds a snapshot's size
        (:meth:`max_model_bytes`).

    Examples
    --------
    >>> spec = ModelSpec(learning_rate=0.05, features_exclude=("user_agent",))
    >>> Vocabulary(spec).encode({"pages": 3, "user_agent": "curl/8"}, learn=True)
    {'pages': 3}
    >>> ModelSpec.from_dict(spec.to_dict()) == spec  # as a snapshot stores it
    True
    >>> spec.structure()  # what a version's learned state depends on
    {'kind': 'logistic_regression', 'features_include': [], 'features_exclude': ['user_agent']}
    >>> ModelSpec(max_inputs=1000, max_vocabulary_bytes=65536).max_model_bytes()
    392704
    """

    kind: str = "logistic_regression"
    learning_rate: float = 0.01
    l2: float = 0.0
    features_include: tuple[str, ...] = ()
    features_exclude: tuple[str, ...] = ()
    max_categories_per_feature: int = 1000
    max_inputs: int = 100_000
    max_vocabulary_bytes: int = 4 * 1024 * 1024  # UTF-8 bytes of the learned inputs' names

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "features_include": list(self.features_include),
            "features_exclude": list(self.features_exclude),
            "max_categories_per_feature": self.max_categories_per_feature,
            "max_inputs": self.max_inputs,
            "max_vocabulary_bytes": self.max_vocabulary_bytes,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelSpec:
        """The spec a snapshot, a version's metadata or a challenger's state stored (:meth:`to_dict`);
        :class:`~streaming.errors.SnapshotCorruptError` when ``doc`` is no spec.

        >>> ModelSpec.from_dict({"kind": "logistic_regression", "l2": 0})
        Traceback (most recent call last):
        ...
        streaming.errors.SnapshotCorruptError: the stored model spec is unreadable (KeyError: 'learning_rate')
        """
        try:
            return cls(
                kind=doc["kind"],
                learning_rate=float(doc["learning_rate"]),
                l2=float(doc["l2"]),
                features_include=tuple(doc.get("features_include", ())),
                features_exclude=tuple(doc.get("features_exclude", ())),
                max_categories_per_feature=int(doc.get("max_categories_per_feature", cls.max_categories_per_feature)),
                max_inputs=int(doc.get("max_inputs", cls.max_inputs)),
                max_vocabulary_bytes=int(doc.get("max_vocabulary_bytes", cls.max_vocabulary_bytes)),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"the stored model spec is unreadable ({type(exc).__name__}: {exc})") from None

    def max_model_bytes(self) -> int:
        """The most bytes the ``model`` of a snapshot takes under these caps (see the module's docstring).

        >>> ModelSpec().max_model_bytes()
        27372544
        """
        return 5 * self.max_vocabulary_bytes + 64 * self.max_inputs + 1024

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
        self.name_bytes = 0  # UTF-8 bytes of their names (a category's: ``feature_value``), within the byte budget
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
        per event, before scoring: scoring and learning then see the same input). Without it nothing is learned
        and a number the vocabulary has not learned is dropped (see the module's docstring).
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
                    continue
                full = (  # no room for the input, river's ``feature_value``, in number or in bytes
                    self.inputs >= spec.max_inputs
                    or self.name_bytes + (size := utf8_bytes(name) + 1 + utf8_bytes(value)) > spec.max_vocabulary_bytes
                )
                if known is None and full:
                    self.capped["feature"] += learn  # a new string feature once the model is full
                elif known is not None and (len(known) - (OTHER in known) >= spec.max_categories_per_feature or full):
                    if learn:
                        self.capped["category"] += 1
                        known.setdefault(OTHER, None)
                    out[name] = OTHER
                else:
                    if learn:
                        self.categories.setdefault(name, {})[value] = None
                        if value != OTHER:  # a value named like the shared one is counted as it (as on a restore)
                            self.inputs += 1
                            self.name_bytes += size
                    out[name] = value
            elif name in self.numeric:
                out[name] = value
            elif not learn:
                continue  # scored only: river would add it to its scaler's variances (as 0) and score it 0
            elif (
                self.inputs < spec.max_inputs
                and self.name_bytes + (size := utf8_bytes(name)) <= spec.max_vocabulary_bytes
            ):
                self.numeric[name] = None
                self.inputs += 1
                self.name_bytes += size
                out[name] = value
            else:
                self.capped["feature"] += 1
        return out

    def dump_vocabulary(self) -> dict[str, Any]:
        """The ``vocabulary`` part of a model state."""
        return {
            "categories": {name: list(values) for name, values in self.categories.items()},
            "numeric": list(self.numeric),
            "capped": dict(self.capped),
        }

    def load_vocabulary(self, vocabulary: dict[str, Any] | None, learned_numbers: Iterable[str] = ()) -> None:
        """Fill the vocabulary from :meth:`dump_vocabulary`. Snapshots written before the caps have none: their
        ``learned_numbers`` (the scaler's ``counts``) are then its numeric features, as they were learned."""
        if vocabulary is None:
            vocabulary = {"numeric": list(learned_numbers)}
        self.categories = {name: dict.fromkeys(values) for name, values in vocabulary.get("categories", {}).items()}
        self.numeric = dict.fromkeys(vocabulary.get("numeric", ()))
        self.inputs = len(self.numeric) + sum(len(v) - (OTHER in v) for v in self.categories.values())
        self.name_bytes = _vocabulary_bytes(self.categories, self.numeric)
        self.capped = {"category": 0, "feature": 0, **vocabulary.get("capped", {})}
