"""Learning engines: which class learns (``LIVELEARN_ENGINE=auto|river|compiled``) and the shape both share.

* ``river`` — :class:`~streaming.model.OnlineModel`, river's own pipeline: the reference;
* ``compiled`` — :class:`~streaming.compiled.CompiledModel`, the same arithmetic on a numba kernel,
  bit for bit (:mod:`streaming.kernel`);
* ``auto`` (default) — compiled when numba imports, river otherwise.

Both read and write one state document, so a version written by one engine is restored by the other.
A process picks its engine once (:func:`configure`, which also compiles the kernel before the process
says it is ready); :func:`new_model` and :func:`restore_model` then build models of that engine.

>>> from streaming.vocabulary import ModelSpec
>>> river = new_model(ModelSpec(), "river")
>>> river.learn_one({"pages": 3, "month": "Feb"}, True)
>>> compiled = restore_model(ModelSpec(), river.dump_state(), "compiled")
>>> compiled.engine, compiled.dump_state() == river.dump_state()
('compiled', True)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from streaming import kernel
from streaming.classifiers import KINDS as CLASSIFIER_KINDS
from streaming.classifiers import ClassifierModel
from streaming.compiled import CompiledModel
from streaming.errors import ConfigError
from streaming.model import OnlineModel
from streaming.vocabulary import ModelSpec

__all__ = ["ENGINES", "LearningModel", "configure", "new_model", "resolve_engine", "restore_model", "step_run"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "river", "compiled")
_configured: dict[str, str | None] = {"engine": "auto", "cache_dir": None}


class LearningModel(Protocol):
    """What the learner, the reference gate and the tests use of a model, whatever its engine."""

    engine: str
    encoded_fast: bool
    spec: ModelSpec
    inputs: int
    capped: dict[str, int]
    categories: dict[str, dict[str, None]]
    numeric: dict[str, None]

    @property
    def steps(self) -> int: ...

    def encode(self, features: dict[str, Any], *, learn: bool = False) -> Any: ...

    def encodes_like(self, other: object) -> bool: ...

    def predict_encoded(self, x: Any) -> float: ...

    def learn_encoded(self, x: Any, label: bool) -> None: ...

    def predict_proba_one(self, features: dict[str, Any]) -> float: ...

    def learn_one(self, features: dict[str, Any], label: bool) -> None: ...

    def dump_state(self) -> dict[str, Any]: ...

    def capture_state(self) -> Callable[[], dict[str, Any]]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def step_run(
    model: LearningModel, features: list[dict[str, Any]], labels: list[bool | None], learn: list[bool]
) -> Sequence[float]:
    """A run of events, in order: each encoded, scored, then learned where ``learn[i]`` (with ``labels[i]``); their
    scores. The compiled engine does the run in one kernel call (:meth:`CompiledModel.step_run`, the same bits);
    the others event by event, as the learner always did.

    >>> model = new_model(ModelSpec(), "river")
    >>> step_run(model, [{"pages": 3}, {"pages": 1}], [True, None], [True, False])
    [0.5, 0.5]
    >>> model.steps
    1
    """
    if type(model) is CompiledModel:
        return model.step_run(features, labels, learn)
    scores = []
    for i, f in enumerate(features):
        x = model.encode(f, learn=learn[i])
        scores.append(model.predict_encoded(x))
        if learn[i]:
            model.learn_encoded(x, bool(labels[i]))
    return scores


def resolve_engine(engine: str | None = None) -> str:
    """``river`` or ``compiled`` for a requested engine (``None``: the configured one)."""
    requested = engine or _configured["engine"] or "auto"
    if requested == "river":
        return "river"
    if requested not in ENGINES:
        raise ConfigError(f"unknown engine {requested!r}; set LIVELEARN_ENGINE to one of {', '.join(ENGINES)}")
    if kernel.available():
        return "compiled"
    if requested == "compiled":
        raise ConfigError("LIVELEARN_ENGINE=compiled needs numba: install it (pip install numba) or set river or auto")
    return "river"


def configure(engine: str, cache_dir: str | None = None) -> str:
    """Make ``engine`` this process's default and compile the kernel now (not on the first event)."""
    _configured.update(engine=engine, cache_dir=cache_dir)
    resolved = resolve_engine()
    if resolved == "compiled":
        start = time.perf_counter()
        loaded = kernel.load(cache_dir)
        log.info(
            "learning engine: compiled (kernel ready in %.2f s, cache %s)",
            time.perf_counter() - start,
            loaded.cache_dir or "in memory only",
        )
    else:
        log.info("learning engine: river")
    return resolved


def new_model(spec: ModelSpec, engine: str | None = None) -> LearningModel:
    """An untrained model of ``spec`` on ``engine`` (``None``: the configured engine; a kind other than logistic
    regression is always river's own: :mod:`streaming.classifiers`)."""
    if spec.kind in CLASSIFIER_KINDS:
        return ClassifierModel(spec)
    if resolve_engine(engine) == "compiled":
        return CompiledModel(spec, _configured["cache_dir"])
    return OnlineModel(spec)


def restore_model(spec: ModelSpec, state: dict[str, Any], engine: str | None = None) -> LearningModel:
    """A model of ``spec`` holding ``state`` (dumped by either engine) on ``engine``."""
    model = new_model(spec, engine)
    model.load_state(state)
    return model
