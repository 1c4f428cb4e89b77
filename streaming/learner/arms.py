"""Challengers: other models that learn in shadow beside the champion, from the same labelled events.

The active learner decodes, dedupes and joins each event once; the champion (the model that serves) scores it and,
when its label is known and learning is on, every challenger (``LIVELEARN_CHALLENGERS``) scores the same event
*before* learning it, the comparison (:class:`monitor.compare.Comparison`) takes both probabilities, and then each
arm takes its own SGD step. So on every event they are compared on, both arms had learned exactly the same events
before it — the comparison is fair, and each arm equals a plain river loop over the events it learned (its own
``predict_proba_one`` then ``learn_one``, in stream order).

With the label join (``LIVELEARN_LABEL_WAIT``) an event waits for its label: the challengers score it when the
champion does (their probabilities wait with it in the join) and learn it at label time, as the champion does; an
arm started while an event waited scores it at label time.

What holds the champion holds every arm: a frozen learner, an open data-quality incident or a replayed hold learns
nothing, and those events are left out of the comparison too (the comparison covers what both arms learned). Every
arm is part of each version the learner writes (the blob's ``arms``: spec, model, rolling loss, comparison, where it
started), so a restart, a failover or a rollback brings every arm back at the version's offsets, as it does the
champion: after a rollback, each arm is the target version's.

>>> from streaming.config import Settings
>>> from streaming.engines import new_model
>>> from streaming.vocabulary import ModelSpec
>>> settings = Settings(challengers=["fast:lr=0.05"], compare_min_labels=10)
>>> champion = new_model(ModelSpec(), "river")
>>> arms = Challengers.start(settings.arms, ModelSpec(), champion, {}, window=100, engine="river")
>>> arms.names
('fast',)
>>> plain = new_model(ModelSpec(learning_rate=0.05), "river")  # what a user would run for the challenger alone
>>> for features, label in [({"pages": 3}, True), ({"pages": 1}, False), ({"pages": 5}, True)]:
...     p = champion.predict_proba_one(features)  # the champion scores, then every arm scores and learns
...     arms.judge_and_learn(label, p, features, None)
...     champion.learn_one(features, label)
...     _ = plain.predict_proba_one(features); plain.learn_one(features, label)
>>> arms.arms[0].learned, arms.arms[0].comparison.labels
(3, 3)
>>> arms.arms[0].model.dump_state() == plain.dump_state()  # the arm is the plain loop, to the last bit
True
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from monitor.compare import Comparison
from monitor.rolling import RollingMean
from snapshotter.codec import Packed, pack, unpack
from streaming.config import BASE, ChallengerConfig, ChallengerSettings
from streaming.engines import LearningModel, new_model, restore_model
from streaming.errors import ConfigError, ModelSpecMismatchError, SnapshotCorruptError
from streaming.vocabulary import ModelSpec

__all__ = ["BASE", "Arm", "Challengers", "declaration_of"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Arm:
    """One challenger: its declaration, spec and model, its rolling log loss (the comparison holds its cumulative log
    loss and accuracy: an arm keeps no metric set of its own, which would cost it a fifth of its time), its comparison
    with the
    champion, where it started (``{"from": "cold" | "champion", "version": parent or None}``) and how many events it
    learned. A former champion (after a promotion) learns on in shadow until ``retire_after`` events, then leaves;
    ``promote_since`` is the comparison's label count since which its verdict has been ``promote`` (the ``auto``
    policy promotes once it held ``compare_confirm_labels``)."""

    config: ChallengerConfig
    spec: ModelSpec
    model: LearningModel
    loss: RollingMean
    comparison: Comparison
    started: dict[str, Any]
    learned: int = 0
    retire_after: int | None = None
    promote_since: int | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def summary(self) -> dict[str, Any]:
        """What a version's metadata and the status say of this arm (plain values)."""
        result = self.comparison.result()
        return {
            "declared": self.config.describe(),
            "learned": self.learned,
            "started": self.started,
            "retire_after": self.retire_after,
            "rolling": {"log_loss": _finite(self.loss.mean()), "samples": len(self.loss)},
            "comparison": {  # (an interval is infinite before two labels: None then, so that JSON can hold it)
                "labels": result.labels,
                "relative_gain": _finite(result.relative_gain),
                "gain_lower": _finite(result.gain_lower),
                "gain_upper": _finite(result.gain_upper),
                "decision": result.decision,
                "reason": result.reason,
                "promote_since": self.promote_since,
            },
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def declaration_of(name: str, spec: ModelSpec) -> ChallengerConfig:
    """A declaration that makes ``spec`` whatever the champion's is (a former champion's, after a promotion)."""
    overrides: dict[str, Any] = {"learning_rate": spec.learning_rate, "l2": spec.l2}
    if spec.features_include:
        overrides["features_include"] = tuple(spec.features_include)
    if spec.features_exclude:
        overrides["features_exclude"] = tuple(spec.features_exclude)
    return ChallengerConfig(name, overrides)


class Challengers:
    """The challengers of one active learner (see the module docstring); built by :meth:`start`.

    Parameters
    ----------
    arms
        The challengers, in their declared order (a former champion in its cool-down last).
    settings
        The comparison's rule (``compare_*``) and the segments compared apart.
    window
        Events in each arm's rolling metric window (the champion's, ``LIVELEARN_ROLLING_WINDOW``).
    engine
        The learning engine of the arms (``None``: the process's, :func:`streaming.engines.configure`).
    configs
        The declared challengers (``None``: the settings'; managed at run time: Redis's, ``livelearn challengers``).
    champion
        The arm name of the champion, the model that serves (``base`` until a promotion).
    """

    def __init__(
        self,
        arms: list[Arm],
        settings: ChallengerSettings,
        *,
        window: int = 1000,
        engine: str | None = None,
        configs: tuple[ChallengerConfig, ...] | None = None,
        champion: str = BASE,
    ) -> None:
        self.arms = arms
        self.settings, self.window, self.engine = settings, window, engine
        self.configs = configs  # None: the settings'
        self.champion = champion
        self.names = tuple(arm.name for arm in arms)
        self._segments = tuple(settings.segments)
        self.shared: frozenset[str] = frozenset()  # arms that take the champion's encoded event (:meth:`share`)

    # -- building -------------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        settings: ChallengerSettings,
        champion_spec: ModelSpec,
        champion: LearningModel,
        stored: Mapping[str, Any],
        *,
        window: int,
        parent: int | None = None,
        engine: str | None = None,
        configs: tuple[ChallengerConfig, ...] | None = None,
        champion_name: str = BASE,
        base_spec: ModelSpec | None = None,
    ) -> Challengers:
        """The declared challengers (``configs``, else the settings'; the champion's own name skipped), each its
        declaration over ``base_spec`` (the settings' model; ``None``: ``champion_spec``) — so a declaration means the
        same model after a promotion as before —, each restored
        from ``stored`` (a version's ``arms``) when it holds one declared the same way, else started as declared:
        ``cold`` (nothing learned) or from ``champion`` as it is now; then a former champion ``stored`` in its
        cool-down.

        A stored arm no longer declared is not carried on (the version keeps it); a declaration that changed starts
        its arm again. ``start=champion`` needs the champion's feature selection (else :class:`ConfigError`)."""
        declared = tuple(c for c in (settings.configs if configs is None else configs) if c.name != champion_name)
        build: dict[str, Any] = {"settings": settings, "window": window, "engine": engine}
        arms = []
        for config in declared:
            spec = dataclasses.replace(base_spec or champion_spec, **config.overrides)
            doc = stored.get(config.name)
            if isinstance(doc, dict) and doc.get("spec") == spec.to_dict():
                arms.append(arm := cls._restore(config, spec, doc, **build))
                arm.retire_after = None  # declared: a challenger, even if it served before
                continue
            if doc is not None:
                log.warning("challenger %s is declared differently now: starts again (%s)", config.name, config.start)
            arms.append(cls._begin(config, spec, champion_spec, champion, parent=parent, **build))
        names = {config.name for config in declared} | {champion_name}
        for name, doc in stored.items():
            if name in names:
                continue
            if isinstance(doc, dict) and doc.get("retire_after") is not None:  # a former champion, cooling down
                spec = ModelSpec.from_dict(doc["spec"])
                arms.append(cls._restore(declaration_of(name, spec), spec, doc, **build))
            else:
                log.warning("challenger %s is no longer declared: not carried on (version %s keeps it)", name, parent)
        challengers = cls(arms, settings, window=window, engine=engine, configs=configs, champion=champion_name)
        challengers.share(champion)
        return challengers

    @staticmethod
    def _comparison(settings: ChallengerSettings, doc: dict[str, Any] | None = None) -> Comparison:
        return Comparison.load(
            doc,
            alpha=settings.alpha,
            min_gain=settings.min_gain,
            min_labels=settings.min_labels,
            segment_margin=settings.segment_margin,
        )

    @classmethod
    def _restore(
        cls,
        config: ChallengerConfig,
        spec: ModelSpec,
        doc: dict[str, Any],
        *,
        settings: ChallengerSettings,
        window: int,
        engine: str | None,
    ) -> Arm:
        try:
            retire, since = doc.get("retire_after"), doc.get("promote_since")
            return Arm(
                config,
                spec,
                restore_model(spec, doc["model"], engine),
                RollingMean.load(doc["loss"], window),
                cls._comparison(settings, doc["comparison"]),
                dict(doc["started"]),
                int(doc["learned"]),
                None if retire is None else int(retire),
                None if since is None else int(since),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotCorruptError(f"challenger {config.name}'s stored state is unreadable: {exc!r}") from None

    @classmethod
    def _begin(
        cls,
        config: ChallengerConfig,
        spec: ModelSpec,
        champion_spec: ModelSpec,
        champion: LearningModel,
        *,
        settings: ChallengerSettings,
        window: int,
        parent: int | None,
        engine: str | None,
    ) -> Arm:
        if config.start == "champion":
            if spec.structure() != champion_spec.structure():
                raise ConfigError(
                    f"challenger {config.name} starts from the champion but selects other features; "
                    "start it cold (start=cold) or keep the champion's features"
                )
            try:
                model = restore_model(spec, champion.dump_state(), engine)
            except ModelSpecMismatchError as exc:  # (the structure is checked above: kept as a guard)
                raise ConfigError(f"challenger {config.name}: {exc}") from None
        else:
            model = new_model(spec, engine)
        started = {"from": config.start, "version": parent if config.start == "champion" else None}
        return Arm(config, spec, model, RollingMean(window), cls._comparison(settings), started)

    # -- promotion ------------------------------------------------------------------------------------
    def promote(
        self,
        name: str,
        *,
        champion_spec: ModelSpec,
        champion: LearningModel,
        parent: int | None,
        cooldown: int,
    ) -> Arm:
        """Arm ``name`` becomes the champion (returned: the caller makes its model the one that serves); the champion
        until now stays as an arm named as it was, learning on in shadow for ``cooldown`` events (0: it leaves at
        once), so backing out lands on a model as fresh as the stream. Every comparison starts again: they compare
        with the new champion from here on."""
        (promoted,) = [arm for arm in self.arms if arm.name == name]
        former = Arm(
            declaration_of(self.champion, champion_spec),
            champion_spec,
            champion,
            RollingMean(self.window),
            self._comparison(self.settings),
            {"from": "champion", "version": parent, "demoted": True},
            retire_after=cooldown,
        )
        self.arms = [arm for arm in self.arms if arm.name != name] + ([former] if cooldown > 0 else [])
        for arm in self.arms:
            arm.comparison, arm.promote_since = self._comparison(self.settings), None
        self.champion, self.names = name, tuple(arm.name for arm in self.arms)
        self.share(promoted.model)
        return promoted

    def retire(self) -> list[str]:
        """Drop the former champions whose cool-down is over; their names."""
        done = [arm.name for arm in self.arms if arm.retire_after is not None and arm.learned >= arm.retire_after]
        if done:
            self.arms = [arm for arm in self.arms if arm.name not in done]
            self.names = tuple(arm.name for arm in self.arms)
        return done

    def ready(self, confirm_labels: int) -> list[str]:
        """Arms whose verdict has been ``promote`` for at least ``confirm_labels`` labels (the ``auto`` policy),
        best relative gain first (as of the last metric sample)."""
        ready = [
            arm
            for arm in self.arms
            if arm.promote_since is not None and arm.comparison.labels - arm.promote_since >= confirm_labels
        ]
        return [arm.name for arm in sorted(ready, key=lambda arm: -arm.comparison.result().relative_gain)]

    # -- the per-event work ---------------------------------------------------------------------------
    def share(self, champion: LearningModel) -> None:
        """Note which arms encode events exactly as ``champion`` does (:meth:`~streaming.compiled.CompiledModel.
        encodes_like`: the compiled engine, the same selection, caps and vocabulary): they take its encoded event
        instead of encoding it again, as long as every event the champion encodes to learn they learn too."""
        self.shared = frozenset(arm.name for arm in self.arms if champion.encodes_like(arm.model))

    def unshare(self) -> None:
        """The champion's vocabulary grew on an event the arms did not learn (an incident confirmed at that very
        event): from here on each arm encodes its events itself."""
        self.shared = frozenset()

    def score(self, features: dict[str, Any], x: Any = None) -> dict[str, float]:
        """Every arm's probability for an event that waits for its label (scored with the champion, learned
        nothing; ``x``: the champion's encoding of it, taken by the arms that share it)."""
        shared = self.shared if x is not None else ()
        return {
            arm.name: arm.model.predict_encoded(x if arm.name in shared else arm.model.encode(features))
            for arm in self.arms
        }

    def judge_and_learn(
        self,
        label: bool,
        p_champion: float,
        features: dict[str, Any],
        others: dict[str, float] | None,
        x: Any = None,
    ) -> None:
        """A labelled event the champion learns: each arm scores it (or takes its score from when it waited,
        ``others``), the comparison and the arm's rolling loss take it, then the arm learns it (``x``: the champion's
        encoding of it with ``learn``, taken by the arms that share it)."""
        named = self._segments
        segments = tuple(f"{name}={features[name]}" for name in named if name in features) if named else ()
        shared = self.shared if x is not None else ()
        for arm in self.arms:
            model = arm.model
            xa = x if arm.name in shared else model.encode(features, learn=True)
            p = others.get(arm.name) if others is not None else None
            if p is None:
                p = model.predict_encoded(xa)
            loss = arm.comparison.update(label, p_champion, p, segments)
            if loss is not None:
                arm.loss.add(loss)
            model.learn_encoded(xa, label)
            arm.learned += 1

    # -- state ----------------------------------------------------------------------------------------
    def capture(self) -> Callable[[], dict[str, Any]]:
        """Every arm as it stands, copied (the models by their engine, the rest packed now); the returned function
        builds the blob's ``arms`` later (in the snapshot writer thread)."""
        captured = [
            (
                arm.name,
                arm.model.capture_state(),
                Packed(
                    pack(
                        {
                            "spec": arm.spec.to_dict(),
                            "declared": arm.config.describe(),
                            "loss": arm.loss.dump(),
                            "comparison": arm.comparison.dump(),
                            "started": arm.started,
                            "learned": arm.learned,
                            "retire_after": arm.retire_after,
                            "promote_since": arm.promote_since,
                        }
                    )
                ),
            )
            for arm in self.arms
        ]

        def document() -> dict[str, Any]:
            return {name: {**unpack(rest), "model": model()} for name, model, rest in captured}

        return document

    def dump(self) -> dict[str, Any]:
        """The blob's ``arms`` now."""
        return self.capture()()

    def sample_fields(self) -> dict[str, float]:
        """Each arm's comparison as metric-sample fields ``arm:<name>:<figure>`` (finite values only: the interval is
        infinite before two labels): labels, both log losses (the arm's rolling, the comparison's cumulative),
        the relative gain and its interval."""
        fields: dict[str, float] = {}
        for arm in self.arms:
            result = arm.comparison.result()
            if result.decision != "promote":  # the verdict held since (the auto policy waits for it to last)
                arm.promote_since = None
            elif arm.promote_since is None:
                arm.promote_since = result.labels
            figures = {
                "labels": result.labels,
                "log_loss": arm.loss.mean(),
                "gain": result.relative_gain,
                "gain_lower": result.gain_lower,
                "gain_upper": result.gain_upper,
            }
            fields.update({f"arm:{arm.name}:{k}": float(v) for k, v in figures.items() if math.isfinite(v)})
        return fields

    def summary(self) -> dict[str, Any]:
        """Each arm's figures for a version's metadata and the status."""
        return {arm.name: arm.summary() for arm in self.arms}
