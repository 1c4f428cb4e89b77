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

The arms learn the champion's labelled events **queued**: :meth:`Challengers.judge_and_learn` notes the event and
:meth:`Challengers.flush` lets every arm learn the queue in order — on the compiled engine one kernel call per arm and
run of events (:meth:`~streaming.compiled.CompiledModel.learn_judged_many`: score, comparison, rolling loss, SGD step,
the same operations as the Python calls, so the same bits). Every public method flushes first (so does reading
:attr:`Challengers.arms`), and the queue never holds more than :data:`QUEUED` events: nothing sees an arm behind the
champion.

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
from streaming.errors import ConfigError, ModelSpecMismatchError, SnapshotCorruptError, SnapshotError
from streaming.kernel import S_COMPARED, S_RESUM
from streaming.vocabulary import ModelSpec

__all__ = ["BASE", "QUEUED", "Arm", "Challengers", "declaration_of"]

#: Labelled events queued for the arms at most (:meth:`Challengers.judge_and_learn`; a metric sample, a snapshot or a
#: waiting event's score flushes them sooner).
QUEUED = 256

log = logging.getLogger(__name__)

#: Reads a stored version's model for ``start=version:N``: ``number`` -> (its spec, its model's state); raises
#: :class:`~streaming.errors.SnapshotError` (missing, corrupt) when it cannot.
LoadVersion = Callable[[int], tuple[ModelSpec, dict[str, Any]]]


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
    #: the model's one-call labelled step (:meth:`~streaming.compiled.CompiledModel.learn_judged`), if it has one
    judged: Callable[..., int] | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.judged = getattr(self.model, "learn_judged", None)

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
        self._arms = arms
        # labelled events the champion learned and the arms have yet to (:meth:`judge_and_learn`, :meth:`flush`)
        self._queue: list[tuple[Any, bool, float, dict[str, float] | None, dict[str, Any]]] = []
        self._unencoded = self._scored = 0  # queued events without the champion's encoding / with the arms' scores
        self.settings, self.window, self.engine = settings, window, engine
        self.configs = configs  # None: the settings'
        self.champion = champion
        self.names = tuple(arm.name for arm in arms)
        self._segments = tuple(settings.segments)
        self.shared: frozenset[str] = frozenset()  # arms that take the champion's encoded event (:meth:`share`)

    @property
    def arms(self) -> list[Arm]:
        """The arms, every labelled event handed to :meth:`judge_and_learn` learned."""
        self.flush()
        return self._arms

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
        leave_out: Callable[[str, ConfigError], None] | None = None,
        load_version: LoadVersion | None = None,
    ) -> Challengers:
        """The declared challengers (``configs``, else the settings'; the champion's own name skipped), each its
        declaration over ``base_spec`` (the settings' model; ``None``: ``champion_spec``) — so a declaration means the
        same model after a promotion as before —, each restored
        from ``stored`` (a version's ``arms``) when it holds one declared the same way, else started as declared:
        ``cold`` (nothing learned), from ``champion`` as it is now, or from a stored version's model (``version:N``,
        read by ``load_version``); then a former champion ``stored`` in its cool-down.

        A stored arm no longer declared is not carried on (the version keeps it); a declaration that changed starts
        its arm again. ``start=champion`` needs the champion's feature selection (else :class:`ConfigError`; with
        ``leave_out`` — declarations made at run time —, that challenger is left out and ``leave_out`` told why: an
        operator's mistake must not stop the learner, nor every learner after it)."""
        declared = tuple(c for c in (settings.configs if configs is None else configs) if c.name != champion_name)
        build: dict[str, Any] = {"settings": settings, "window": window, "engine": engine}
        arms = []
        for config in declared:
            spec = dataclasses.replace(base_spec or champion_spec, **config.overrides)
            doc = stored.get(config.name)
            if isinstance(doc, dict) and doc.get("spec") == spec.to_dict() and _started_as(doc, config):
                arms.append(arm := cls._restore(config, spec, doc, **build))
                arm.retire_after = None  # declared: a challenger, even if it served before
                continue
            if doc is not None:
                log.warning("challenger %s is declared differently now: starts again (%s)", config.name, config.start)
            try:
                arms.append(
                    cls._begin(config, spec, champion_spec, champion, parent=parent, load_version=load_version, **build)
                )
            except ConfigError as exc:
                if leave_out is None:
                    raise
                leave_out(config.name, exc)
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
        load_version: LoadVersion | None,
    ) -> Arm:
        number = config.start_version
        if number is not None:
            model = cls._from_version(config, spec, number, load_version, engine)
            started = {"from": "version", "version": number}
            return Arm(config, spec, model, RollingMean(window), cls._comparison(settings), started)
        if config.start == "champion":
            if spec.structure() != champion_spec.structure():
                other = "is another kind of model" if spec.kind != champion_spec.kind else "selects other features"
                raise ConfigError(
                    f"challenger {config.name} starts from the champion but {other}; "
                    "start it cold (start=cold) or keep the champion's kind and features"
                )
            try:
                model = restore_model(spec, champion.dump_state(), engine)
            except ModelSpecMismatchError as exc:  # (the structure is checked above: kept as a guard)
                raise ConfigError(f"challenger {config.name}: {exc}") from None
        else:
            model = new_model(spec, engine)
        started = {"from": config.start, "version": parent if config.start == "champion" else None}
        return Arm(config, spec, model, RollingMean(window), cls._comparison(settings), started)

    @staticmethod
    def _from_version(
        config: ChallengerConfig, spec: ModelSpec, number: int, load_version: LoadVersion | None, engine: str | None
    ) -> LearningModel:
        """Version ``number``'s model with the challenger's spec (its kind and features must be the version's)."""
        where = f"challenger {config.name} starts from version {number}"
        if load_version is None:
            raise ConfigError(f"{where}, but no version store is at hand here")
        try:
            stored_spec, state = load_version(number)
        except SnapshotError as exc:
            raise ConfigError(f"{where}, which cannot be read: {exc}") from None
        if stored_spec.structure() != spec.structure():
            raise ConfigError(
                f"{where}, a model of {stored_spec.structure()}, but is declared as {spec.structure()}; declare its "
                "kind and features as the version's"
            )
        try:
            return restore_model(spec, state, engine)
        except (SnapshotError, ModelSpecMismatchError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}, whose model this engine cannot restore: {exc}") from None

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
        self.flush()
        (promoted,) = [arm for arm in self._arms if arm.name == name]
        former = Arm(
            declaration_of(self.champion, champion_spec),
            champion_spec,
            champion,
            RollingMean(self.window),
            self._comparison(self.settings),
            {"from": "champion", "version": parent, "demoted": True},
            retire_after=cooldown,
        )
        self._arms = [arm for arm in self._arms if arm.name != name] + ([former] if cooldown > 0 else [])
        for arm in self._arms:
            arm.comparison, arm.promote_since = self._comparison(self.settings), None
        self.champion, self.names = name, tuple(arm.name for arm in self._arms)
        self.share(promoted.model)
        return promoted

    def retire(self) -> list[str]:
        """Drop the former champions whose cool-down is over; their names."""
        self.flush()
        done = [arm.name for arm in self._arms if arm.retire_after is not None and arm.learned >= arm.retire_after]
        if done:
            self._arms = [arm for arm in self._arms if arm.name not in done]
            self.names = tuple(arm.name for arm in self._arms)
        return done

    def ready(self, confirm_labels: int) -> list[str]:
        """Arms whose verdict has been ``promote`` for at least ``confirm_labels`` labels (the ``auto`` policy),
        best relative gain first (as of the last metric sample)."""
        self.flush()
        ready = [
            arm
            for arm in self._arms
            if arm.promote_since is not None and arm.comparison.labels - arm.promote_since >= confirm_labels
        ]
        return [arm.name for arm in sorted(ready, key=lambda arm: -arm.comparison.result().relative_gain)]

    # -- the per-event work ---------------------------------------------------------------------------
    def share(self, champion: LearningModel) -> None:
        """Note which arms encode events exactly as ``champion`` does (:meth:`~streaming.compiled.CompiledModel.
        encodes_like`: the compiled engine, the same selection, caps and vocabulary): they take its encoded event
        instead of encoding it again, as long as every event the champion encodes to learn they learn too."""
        self.flush()
        self.shared = frozenset(arm.name for arm in self._arms if champion.encodes_like(arm.model))

    def unshare(self) -> None:
        """The champion's vocabulary grew on an event the arms did not learn (an incident confirmed at that very
        event): from here on each arm encodes its events itself."""
        self.flush()
        self.shared = frozenset()

    def score(self, features: dict[str, Any], x: Any = None) -> dict[str, float]:
        """Every arm's probability for an event that waits for its label (scored with the champion, learned
        nothing; ``x``: the champion's encoding of it, taken by the arms that share it)."""
        self.flush()
        shared = self.shared if x is not None else ()
        return {
            arm.name: arm.model.predict_encoded(x if arm.name in shared else arm.model.encode(features))
            for arm in self._arms
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
        encoding of it with ``learn``, taken by the arms that share it).

        Queued, done by :meth:`flush` — in order, each arm's run of events in one kernel call on the compiled engine
        — before anything reads an arm (every public method flushes first) or after :data:`QUEUED` events: the same
        operations in the same order as one event at a time, so the same bits."""
        self._queue.append((x, label, p_champion, others, features))
        if x is None:
            self._unencoded += 1
        if others is not None:
            self._scored += 1
        if len(self._queue) >= QUEUED:
            self.flush()

    def flush(self) -> None:
        """Every arm learns the queued events (:meth:`judge_and_learn`)."""
        queue = self._queue
        if not queue:
            return
        unencoded, scored = self._unencoded, self._scored
        self._queue, self._unencoded, self._scored = [], 0, 0
        xs, labels, champions, others, features = (list(column) for column in zip(*queue, strict=True))
        named = self._segments
        segments = [tuple(f"{name}={f[name]}" for name in named if name in f) for f in features] if named else None
        n = len(queue)
        for arm in self._arms:
            shared = arm.name in self.shared
            many = getattr(arm.model, "learn_judged_many", None)
            if many is not None and shared and not unencoded:  # every event encoded by the champion: one call
                given = [None if o is None else o.get(arm.name) for o in others] if scored else None
                self._learn_run(arm, many, xs, labels, champions, given, segments)
                continue
            start = 0
            while start < n:
                end = start
                if many is not None and shared:  # the run of events encoded by the champion: one kernel call
                    while end < n and xs[end] is not None:
                        end += 1
                if many is not None and end > start:
                    given = [None if o is None else o.get(arm.name) for o in others[start:end]]
                    self._learn_run(
                        arm, many, xs[start:end], labels[start:end], champions[start:end], given,
                        None if segments is None else segments[start:end],
                    )  # fmt: skip
                    start = end
                else:
                    self._learn_one(arm, queue[start], shared, () if segments is None else segments[start])
                    start += 1

    @staticmethod
    def _learn_run(  # noqa: PLR0917 — the queue's columns
        arm: Arm,
        many: Callable[..., Any],
        xs: list[Any],
        labels: list[bool],
        champions: list[float],
        given: list[float | None] | None,
        segments: list[tuple[str, ...]] | None,
    ) -> None:
        comparison, loss = arm.comparison, arm.loss
        out = many(
            xs, labels, champions, given, tally=comparison.tally, ring=loss.ring, rolling=loss.state, resum=loss.resum
        )
        arm.learned += len(xs)
        if segments is not None:
            for (compared, difference, champion_loss), names in zip(out.tolist(), segments, strict=True):
                if compared and names:
                    comparison.add_segments(names, difference, champion_loss)

    @staticmethod
    def _learn_one(arm: Arm, entry: Any, shared: bool, segments: tuple[str, ...]) -> None:
        x, label, p_champion, others, features = entry
        model = arm.model
        xa = x if shared and x is not None else model.encode(features, learn=True)
        p = others.get(arm.name) if others is not None else None
        judged = arm.judged
        if judged is not None:  # the compiled engine: score, compare, roll and learn in one kernel call
            comparison, loss = arm.comparison, arm.loss
            flags = judged(xa, label, p_champion, p, tally=comparison.tally, ring=loss.ring, rolling=loss.state)
            if flags & S_RESUM:
                loss.resum()
            if segments and flags & S_COMPARED:
                comparison.update_segments(segments)
        else:
            if p is None:
                p = model.predict_encoded(xa)
            challenger_loss = arm.comparison.update(label, p_champion, p, segments)
            if challenger_loss is not None:
                arm.loss.add(challenger_loss)
            model.learn_encoded(xa, label)
        arm.learned += 1

    # -- state ----------------------------------------------------------------------------------------
    def capture(self) -> Callable[[], dict[str, Any]]:
        """Every arm as it stands, copied (the models by their engine, the rest packed now); the returned function
        builds the blob's ``arms`` later (in the snapshot writer thread)."""
        self.flush()
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
            for arm in self._arms
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
        self.flush()
        fields: dict[str, float] = {}
        for arm in self._arms:
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
        self.flush()
        return {arm.name: arm.summary() for arm in self._arms}


def _started_as(doc: dict[str, Any], config: ChallengerConfig) -> bool:
    """Whether a stored arm started as ``config`` declares: an arm started from a version goes on only while it is
    declared from that same version (pointing a challenger at a newer branch head starts it again), and one declared
    from a version goes on only if it started from it."""
    started = doc.get("started") or {}
    from_version = started.get("from") == "version"
    number = config.start_version
    if number is None:
        return not from_version
    return from_version and started.get("version") == number
