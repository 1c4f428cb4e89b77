"""Challengers learning in shadow (:mod:`streaming.learner.arms`): each arm against a plain river loop, to the bit.

No Kafka, no Redis: records go through the learner's own :class:`~streaming.learner.step.EventStep`. Stated equalities
(docs/challengers.md):

1. Each challenger's model equals a plain river loop with its spec over the events it learned, in order — the same
   events the champion learned (both engines, inline labels and the label join).
2. Its comparison equals a :class:`~monitor.compare.Comparison` fed with the two plain loops' probabilities, each
   scored before either learned the event; an identical twin's differences are exactly 0 (scored when the champion
   scored, also with the join).
3. A version holds every arm: restored, the learner goes on exactly as one that never stopped; a rollback makes every
   arm the target's.
"""

from __future__ import annotations

import logging
import math
import random

import pytest
from prometheus_client import CollectorRegistry

from monitor.compare import Comparison
from monitor.rolling import RollingMean
from snapshotter.codec import EncodedSnapshot, SnapshotState, decode_snapshot, encode_snapshot, unpack
from streaming.classifiers import ClassifierModel
from streaming.compiled import CompiledModel
from streaming.config import Settings
from streaming.errors import ConfigError
from streaming.events import Event, encode_event
from streaming.kernel import S_RESUM
from streaming.learner.offline import Discard
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.restore import Restored, restore_state
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.local.dataset import read_events
from streaming.transport import Record, TopicPartition
from streaming.vocabulary import ModelSpec
from tests.reference import contract_features, plain_river_pipeline, river_state
from tests.test_label_join_exactness import _meta, learned_pairs, model_state, two_topic_records

ENGINES = ("river", "compiled")
DECLARED = ["fast:lr=0.05", "twin", "lean:lr=0.02,exclude=Month|VisitorType"]


@pytest.fixture(scope="module")
def shop_events() -> list[Event]:
    return list(read_events(limit=1200))


class Run:
    """One learner's step over records (topic, value), one partition per topic, resumable."""

    def __init__(self, settings: Settings, state: LearnerState | None = None) -> None:
        self.settings = settings.model_copy(update={"publish_predictions": False})
        telemetry = LearnerMetrics(CollectorRegistry(), self.settings.model_name)
        self.state = state or LearnerState.fresh(spec_from_settings(self.settings), self.settings)
        self.step = EventStep(self.settings, telemetry)
        self.outputs = Outputs(Discard(), self.settings, telemetry)
        self.positions: dict[TopicPartition, int] = {}

    def feed(self, records: list[tuple[str, bytes]]) -> Run:
        for topic, value in records:
            tp = TopicPartition(topic, 0)
            offset = self.positions.get(tp, 0)
            self.positions[tp] = offset + 1
            self.step.process(self.state, Record(topic, 0, offset, None, value, [], -1), self.outputs, self.positions)
            self.state.incident_events.clear()
        return self


def arm(state: LearnerState, name: str):
    assert state.arms is not None
    (found,) = [a for a in state.arms.arms if a.name == name]
    return found


def arm_state(state: LearnerState, name: str) -> dict:
    dumped = arm(state, name).model.dump_state()
    holder = LearnerState.__new__(LearnerState)
    holder.model = type("M", (), {"dump_state": lambda _self: dumped})()
    return model_state(holder)


def without(features: dict, excluded: tuple[str, ...]) -> dict:
    return {k: v for k, v in features.items() if k not in excluded}


SPECS = {"fast": (0.05, ()), "twin": (0.01, ()), "lean": (0.02, ("Month", "VisitorType"))}


@pytest.mark.parametrize("engine", ENGINES)
def test_each_arm_is_a_plain_river_loop_and_its_comparison_is_the_plain_loops_scores(shop_events, engine):
    settings = Settings(engine=engine, challengers=DECLARED, compare_segments=["VisitorType"], compare_min_labels=100)
    run = Run(settings).feed([("events", encode_event(e)) for e in shop_events])
    state = run.state
    champion = plain_river_pipeline(0.01)
    plain = {name: plain_river_pipeline(lr) for name, (lr, _) in SPECS.items()}
    expected = {name: Comparison(min_labels=100) for name in SPECS}
    for event in shop_events:
        x = contract_features(event)
        p = champion.predict_proba_one(x).get(True, 0.0)
        segment = (f"VisitorType={x['VisitorType']}",)
        for name, (_, excluded) in SPECS.items():
            xa = without(x, excluded)
            expected[name].update(event.label, p, plain[name].predict_proba_one(xa).get(True, 0.0), segment)
            plain[name].learn_one(xa, event.label)
        champion.learn_one(x, event.label)
    assert model_state(state) == river_state(champion)
    for name in SPECS:
        assert arm_state(state, name) == river_state(plain[name]), name
        assert arm(state, name).comparison.dump() == expected[name].dump(), name
        assert arm(state, name).learned == len(shop_events)
    twin = arm(state, "twin").comparison.result()
    assert twin.loss_difference == 0 and (twin.difference_lower, twin.difference_upper) == (0, 0)
    assert twin.decision == "undecided"
    # the arms' own prequential metrics are river's over their own scores
    # the twin's rolling log loss is the champion's; the arms that select the champion's features share its encoding
    assert arm(state, "twin").loss.mean() == pytest.approx(state.metrics.rolling_values()["log_loss"], abs=1e-4)
    assert state.arms is not None and state.arms.shared == ({"fast", "twin"} if engine == "compiled" else set())
    # every metric sample carries each arm's comparison as it stood before that event (livelearn compare draws them)
    last = state.samples[-1]
    assert last["scored"] == len(shop_events) and last["arm:fast:labels"] == len(shop_events) - 1
    assert last["arm:twin:gain"] == last["arm:twin:gain_lower"] == 0
    assert last["arm:fast:gain_lower"] < last["arm:fast:gain"] < last["arm:fast:gain_upper"]


def test_with_labels_after_their_events_the_arms_score_when_the_champion_scores(shop_events):
    """The join: a twin's difference stays exactly 0 only if it scored each event when the champion did (scoring at
    label time it would have learned more by then), and each arm is a plain loop over the learned pairs."""
    records, _ = two_topic_records(shop_events, 3)
    settings = Settings(
        engine="compiled", label_wait="10m", label_policy="negative", labels_topic="labels", challengers=DECLARED
    )
    state = Run(settings).feed(records).state
    by_id = {e.event_id: e for e in shop_events}
    by_id["far-future"] = Event("far-future", 0, {"x": 1.0})
    pairs = learned_pairs(state)
    for name, (lr, excluded) in SPECS.items():
        plain = plain_river_pipeline(lr)
        for event_id, label in pairs:
            plain.learn_one(without(contract_features(by_id[event_id]), excluded), label)
        assert arm_state(state, name) == river_state(plain), name
        assert arm(state, name).comparison.labels == len(pairs) == arm(state, name).learned
    twin = arm(state, "twin").comparison.result()
    assert twin.labels > 500 and twin.loss_difference == 0 and twin.difference_upper == 0
    fast = arm(state, "fast").comparison.result()
    assert fast.loss_difference != 0


def _restored(state: LearnerState, settings: Settings) -> Restored:
    captured = state.capture()
    encoded = EncodedSnapshot.of(captured.document())
    snapshot = decode_snapshot(encoded.blob, encoded.sha256)
    model, prequential = restore_state(snapshot, spec_from_settings(settings), settings.rolling_window)
    return Restored(model, prequential, dict(snapshot.counters), _meta(), dict(snapshot.stream), dict(snapshot.arms))


@pytest.mark.parametrize("joined", [False, True])
def test_a_version_holds_every_arm_and_a_restored_learner_goes_on_exactly(shop_events, joined):
    if joined:
        records, _ = two_topic_records(shop_events, 5)
        extra = {"label_wait": "10m", "labels_topic": "labels"}
    else:
        records, extra = [("events", encode_event(e)) for e in shop_events], {}
    settings = Settings(engine="compiled", challengers=DECLARED, **extra)
    whole = Run(settings).feed(records).state
    half = len(records) // 2
    first = Run(settings).feed(records[:half])
    captured_join = first.state.capture().join_blob() if joined else None
    restored = _restored(first.state, settings)
    assert set(restored.arms) == set(SPECS)
    second = Run(settings)
    second.state.adopt(restored, None if captured_join is None else unpack(captured_join))
    second.positions = dict(first.positions)
    second.feed(records[half:])
    for name in SPECS:
        assert arm_state(second.state, name) == arm_state(whole, name), name
        assert arm(second.state, name).comparison.dump() == arm(whole, name).comparison.dump(), name
        assert arm(second.state, name).learned == arm(whole, name).learned
    assert model_state(second.state) == model_state(whole)


def test_a_rollback_makes_every_arm_the_targets_and_a_hold_stops_every_arm(shop_events):
    settings = Settings(engine="river", challengers=DECLARED)
    run = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:400]])
    target = _restored(run.state, settings)
    at_target = {name: arm_state(run.state, name) for name in SPECS}
    run.feed([("events", encode_event(e)) for e in shop_events[400:800]])
    assert arm_state(run.state, "fast") != at_target["fast"]
    run.state.adopt_model(target)
    assert {name: arm_state(run.state, name) for name in SPECS} == at_target
    assert arm(run.state, "fast").learned == 400
    run.state.frozen = True  # an operator's freeze (an incident holds the same way: state.learning is False)
    before = {name: (arm_state(run.state, name), arm(run.state, name).comparison.labels) for name in SPECS}
    run.feed([("events", encode_event(e)) for e in shop_events[800:]])
    assert {name: (arm_state(run.state, name), arm(run.state, name).comparison.labels) for name in SPECS} == before


def test_how_an_arm_starts_and_what_a_changed_declaration_does(shop_events, caplog):
    settings = Settings(engine="river", challengers=["copy:lr=0.05,start=champion"])
    run = Run(settings.model_copy(update={"challengers": []})).feed(
        [("events", encode_event(e)) for e in shop_events[:300]]
    )
    champion_now = model_state(run.state)
    restored = _restored(run.state, settings)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    state.adopt(restored)
    copy = arm(state, "copy")
    assert copy.started == {"from": "champion", "version": 1} and copy.learned == 0
    assert arm_state(state, "copy") == champion_now  # the champion's model, learning at its own rate from here
    # declared differently: starts again; no longer declared: not carried on (logged)
    stored = _restored(Run(Settings(engine="river", challengers=["a:lr=0.05", "b"])).feed(
        [("events", encode_event(e)) for e in shop_events[:50]]).state, settings)  # fmt: skip
    changed = Settings(engine="river", challengers=["a:lr=0.02"])
    fresh = LearnerState.fresh(spec_from_settings(changed), changed)
    with caplog.at_level(logging.WARNING):
        fresh.adopt(stored)
    assert arm(fresh, "a").learned == 0 and fresh.arms is not None and fresh.arms.names == ("a",)
    assert "declared differently" in caplog.text and "no longer declared" in caplog.text
    # a challenger with other features cannot start from the champion's model
    bad = Settings(engine="river", challengers=["x:exclude=Month,start=champion"])
    with pytest.raises(ConfigError, match="selects other features"):
        LearnerState.fresh(spec_from_settings(bad), bad)


def test_a_run_time_declaration_that_cannot_start_is_left_out_and_the_learner_goes_on(shop_events, caplog):
    """An operator's ``challengers add x:exclude=Month,start=champion`` (other features cannot start from the
    champion's model) reaches every learner through Redis: it is left out, with the reason logged, and the others
    learn on — it must not stop the learner, nor each learner restarted on the same declarations. Declared in the
    settings, the same declaration is a configuration error at start."""
    from streaming.config import parse_challenger

    settings = Settings(engine="river", challengers=["a:lr=0.05"])
    run = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:200]])
    declared = (parse_challenger("a:lr=0.05"), parse_challenger("x:exclude=Month,start=champion"))
    with caplog.at_level(logging.ERROR):
        run.state.declare_arms(declared)
    assert run.state.arms is not None and run.state.arms.names == ("a",)
    assert "challenger x cannot start, left out: challenger x starts from the champion" in caplog.text
    run.feed([("events", encode_event(e)) for e in shop_events[200:400]])
    assert arm(run.state, "a").learned == 400
    restarted = LearnerState.fresh(spec_from_settings(settings), settings)  # a learner after it: the same declarations
    restarted.arm_configs = declared
    restarted.adopt(_restored(run.state, settings))
    assert restarted.arms is not None and restarted.arms.names == ("a",) and arm(restarted, "a").learned == 400
    only_bad = (parse_challenger("x:exclude=Month,start=champion"), parse_challenger("y:kind=pa,start=champion"))
    with caplog.at_level(logging.ERROR):
        run.state.declare_arms(only_bad)
    assert run.state.arms is None  # nothing left to run: a learner without challengers
    assert "challenger y starts from the champion but is another kind of model" in caplog.text
    with pytest.raises(ConfigError, match="selects other features"):
        LearnerState.fresh(spec_from_settings(settings), Settings(engine="river", challengers=[only_bad[0].describe()]))


def test_the_settings_challengers_brought_back_after_a_promotion_cannot_stop_the_learner(shop_events, caplog):
    """Valid at the start (``y`` starts from the base champion), the settings' declarations come back at run time
    (``challengers reset``) after a passive-aggressive challenger was promoted: ``y`` can no longer start from the
    champion, and is left out, logged; the promoted champion learns on."""
    settings = Settings(engine="river", challengers=["p:kind=pa", "y:start=champion"])
    run = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:100]])
    from streaming.config import parse_challenger

    run.state.declare_arms((parse_challenger("p:kind=pa"),))
    run.state.promote("p", cooldown=0)
    with caplog.at_level(logging.ERROR):
        run.state.declare_arms(None)  # challengers reset: the settings' again
    assert run.state.arm_name == "p" and "challenger y cannot start, left out" in caplog.text
    assert "is another kind of model" in caplog.text
    run.feed([("events", encode_event(e)) for e in shop_events[100:200]])


def test_pointing_a_challenger_at_another_version_starts_it_again(shop_events):
    """Re-declared from version 8 instead of 7 (a newer branch head), with the same spec otherwise, the arm starts
    again from version 8's model; declared cold again, it starts cold."""
    from streaming.config import parse_challenger
    from streaming.model import ModelSpec

    settings = Settings(engine="river")
    versions = {}
    for number, end in ((7, 200), (8, 400)):
        state = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:end]]).state
        encoded = EncodedSnapshot.of(state.capture().document())
        snapshot = decode_snapshot(encoded.blob, encoded.sha256, packed_weights=True)
        versions[number] = (ModelSpec.from_dict(snapshot.spec), snapshot.model, model_state(state))
    live = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:50]])
    live.state.load_version = lambda number: versions[number][:2]
    for declaration, expected in (("b:start=version:7", 7), ("b:start=version:8", 8), ("b:start=version:8", 8)):
        live.state.declare_arms((parse_challenger(declaration),))
        assert arm(live.state, "b").started == {"from": "version", "version": expected}
        assert arm_state(live.state, "b") == versions[expected][2]
    live.feed([("events", encode_event(e)) for e in shop_events[400:450]])
    live.state.declare_arms((parse_challenger("b:start=version:8"),))  # declared as it is: goes on
    assert arm(live.state, "b").learned == 50
    live.state.declare_arms((parse_challenger("b"),))
    assert arm(live.state, "b").started["from"] == "cold" and arm(live.state, "b").learned == 0


def test_a_stored_version_with_an_unreadable_spec_is_a_snapshot_error_not_a_crash():
    """``Lineage.version_model`` over a blob whose spec does not parse: a ``SnapshotCorruptError`` (the arm is left
    out), never the ``KeyError``/``TypeError`` of the parsing."""
    import types

    from streaming.errors import SnapshotCorruptError
    from streaming.learner.lineage import Lineage

    for spec in ({}, {"learning_rate": "fast"}, [1, 2], {"kind": "logistic_regression", "features_include": None}):
        snapshot = SnapshotState(spec=spec, model={}, metrics={}, counters={})  # type: ignore[arg-type]
        holder = types.SimpleNamespace(store=types.SimpleNamespace(load=lambda n, s=snapshot, **_: (None, s)))
        with pytest.raises(SnapshotCorruptError, match="model spec is unreadable"):
            Lineage.version_model(holder, 7)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_challenger_starts_from_a_stored_version_and_learns_on_as_a_plain_river_loop(shop_events, engine, caplog):
    """``start=version:N`` (a rebuild's branch head, say), declared at run time: the arm starts with version N's model
    (not the champion's), then learns as a plain river loop that learned version N's events and then the arm's; a
    version that cannot be read, or of other features, or no store at hand, leaves the challenger out with the
    reason; the settings refuse a version number."""
    from streaming.config import parse_challenger
    from streaming.errors import VersionNotFoundError
    from streaming.model import ModelSpec

    settings = Settings(engine=engine)
    branch = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:300]])  # version 7: 300 events
    encoded = EncodedSnapshot.of(branch.state.capture().document())
    stored = decode_snapshot(encoded.blob, encoded.sha256, packed_weights=True)  # (as the learner's store reads it)

    def load(number: int) -> tuple[ModelSpec, dict]:
        if number == 9:  # (checked as written, but of a layout this livelearn cannot restore)
            return ModelSpec.from_dict(stored.spec), {"weights": 5}
        if number != 7:
            raise VersionNotFoundError(f"version {number} is not stored")
        return ModelSpec.from_dict(stored.spec), stored.model

    live = Run(settings).feed([("events", encode_event(e)) for e in shop_events[600:700]])  # another history
    live.state.load_version = load
    live.state.declare_arms((parse_challenger("b:start=version:7"),))
    plain = plain_river_pipeline(0.01)
    for event in shop_events[:300]:
        plain.learn_one(contract_features(event), event.label)
    assert arm(live.state, "b").started == {"from": "version", "version": 7}
    assert arm_state(live.state, "b") == river_state(plain) != model_state(live.state)
    live.feed([("events", encode_event(e)) for e in shop_events[300:600]])
    for event in shop_events[300:600]:
        plain.learn_one(contract_features(event), event.label)
    assert arm_state(live.state, "b") == river_state(plain) and arm(live.state, "b").learned == 300

    cannot = ("c:start=version:8", "d:exclude=Month,start=version:7", "f:start=version:9")
    with caplog.at_level(logging.ERROR):
        live.state.declare_arms((parse_challenger("b:start=version:7"), *map(parse_challenger, cannot)))
        assert live.state.arms is not None and live.state.arms.names == ("b",)  # b goes on as it was
        live.state.load_version = None
        live.state.declare_arms((parse_challenger("e:start=version:7"),))
    assert live.state.arms is None
    assert "challenger c starts from version 8, which cannot be read: version 8 is not stored" in caplog.text
    assert "challenger d starts from version 7, a model of" in caplog.text and "as the version's" in caplog.text
    assert "challenger e starts from version 7, but no version store is at hand here" in caplog.text
    assert "challenger f starts from version 9, whose model this engine cannot restore" in caplog.text
    with pytest.raises(ValueError, match="declare it at run time"):
        Settings(challengers=["b:start=version:7"])
    for wrong in ("b:start=version:0", "b:start=version:x", "b:start=version:"):
        with pytest.raises(ValueError, match="start is cold, champion or version:N"):
            parse_challenger(wrong)


def test_a_learner_without_challengers_writes_the_blob_it_always_wrote():
    state = SnapshotState(spec={"kind": "k"}, model={}, metrics={}, counters={})
    assert "arms" not in unpack(encode_snapshot(state))
    with_arms = SnapshotState(spec={}, model={}, metrics={}, counters={}, arms={"a": {"learned": 1}})
    blob = encode_snapshot(with_arms)
    from snapshotter.codec import sha256_hex

    assert decode_snapshot(blob, sha256_hex(blob)).arms == {"a": {"learned": 1}}


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (["fast:lr=0"], "lr must be a number above 0"),
        (["fast:lr=nan"], "lr must be a number"),
        (["fast:l2=-1"], "l2 must be a number at least 0"),
        (["Fast:lr=0.1"], "name 'Fast' must be"),
        (["fast:speed=2"], "unknown key 'speed'"),
        (["fast:lr=0.1,lr=0.2"], "lr given twice"),
        (["fast:kind=hoeffding_tree"], "not one the engines build"),
        (["fast:start=warm"], "start is cold, champion or version:N"),
        (["fast:exclude=a||b"], "feature names separated by |"),
        (["champion:lr=0.1"], "names the serving arm"),
        (["a:lr=0.1", "a:lr=0.2"], "two challengers are named 'a'"),
        (["fast:lr"], "is not KEY=VALUE"),
    ],
)
def test_a_wrong_declaration_is_one_line_naming_what_is_wrong(declared, message):
    from streaming.config import load_settings

    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(challengers=declared)
    assert "\n" not in str(caught.value)


def _plain_loop(events, lr: float):
    model = plain_river_pipeline(lr)
    scores = []
    for event in events:
        x = contract_features(event)
        scores.append(model.predict_proba_one(x).get(True, 0.0))
        model.learn_one(x, event.label)
    return model, scores


@pytest.mark.parametrize("engine", ENGINES)
def test_a_promotion_swaps_the_champion_at_that_event_and_the_former_one_learns_on_for_its_cool_down(
    shop_events, engine
):
    settings = Settings(engine=engine, challengers=["fast:lr=0.05", "twin"], compare_min_labels=100)
    records = [("events", encode_event(e)) for e in shop_events]
    run = Run(settings).feed(records[:600])
    state = run.state
    state.promote("fast", cooldown=300)
    assert (state.arm_name, state.spec.learning_rate) == ("fast", 0.05)
    assert state.arms is not None and state.arms.names == ("twin", "base")
    assert state.pending_promotion == {"from": "base", "to": "fast", "version": None, "learned": 600}
    assert state.metrics.rolling_values()["samples"] == 0  # the guard judges the new champion's scores only
    run.feed(records[600:900])
    base_then = arm_state(run.state, "base")  # the former champion: lr 0.01 over the first 900 events
    assert arm(state, "base").learned == 300 and arm(state, "base").started["demoted"]
    assert state.arms.retire() == ["base"] and state.arms.names == ("twin",)  # 300 events of cool-down
    run.feed(records[900:])
    fast, fast_scores = _plain_loop(shop_events, 0.05)
    twin, twin_scores = _plain_loop(shop_events, 0.01)
    assert model_state(state) == river_state(fast)  # the champion: lr 0.05 over every event, from event 0
    assert arm_state(state, "twin") == river_state(twin)  # a challenger keeps its own model through a promotion
    assert base_then == river_state(_plain_loop(shop_events[:900], 0.01)[0])
    # every comparison restarted at the promotion: the twin against the new champion, over the events since
    expected = Comparison(min_labels=100)
    for event, p, q in list(zip(shop_events, fast_scores, twin_scores, strict=True))[600:]:
        expected.update(event.label, p, q)
    assert arm(state, "twin").comparison.dump() == expected.dump()
    assert state.metrics.cumulative_values()["samples"] == len(shop_events)  # the stream's count goes on


def test_a_rollback_to_a_version_from_before_a_promotion_brings_the_settings_model_back(shop_events):
    settings = Settings(engine="river", challengers=["fast:lr=0.05"])
    run = Run(settings).feed([("events", encode_event(e)) for e in shop_events[:300]])
    before = _restored(run.state, settings)  # champion base (lr 0.01), arm fast
    run.state.promote("fast", cooldown=1000)
    run.feed([("events", encode_event(e)) for e in shop_events[300:400]])
    assert (run.state.arm_name, run.state.spec.learning_rate) == ("fast", 0.05)
    run.state.adopt_model(before)
    assert (run.state.arm_name, run.state.spec.learning_rate) == ("base", 0.01)
    assert run.state.capture().spec["learning_rate"] == 0.01  # the next version says so too
    assert run.state.arms is not None and run.state.arms.names == ("fast",) and run.state.arms.champion == "base"


def test_a_promotion_with_labels_waiting_judges_each_by_the_score_of_the_arm_that_serves_now(shop_events):
    """A twin promoted mid-stream with labels waiting changes nothing (its scores are the champion's); a fast arm
    promoted becomes a plain lr 0.05 loop over the learned pairs, the former champion lr 0.01 until it retires."""
    records, _ = two_topic_records(shop_events, 9)
    half = len(records) // 2
    common = {"engine": "compiled", "label_wait": "10m", "label_policy": "negative", "labels_topic": "labels"}
    plain = Run(Settings(**common, challengers=["twin"])).feed(records).state
    twin_run = Run(Settings(**common, challengers=["twin"])).feed(records[:half])
    assert twin_run.state.join is not None and twin_run.state.join.pending
    twin_run.state.promote("twin", cooldown=10**9)
    twin_run.feed(records[half:])
    assert model_state(twin_run.state) == model_state(plain)
    assert twin_run.state.metrics.cumulative_values() == plain.metrics.cumulative_values()
    fast_run = Run(Settings(**common, challengers=["fast:lr=0.05"])).feed(records[:half])
    waiting = {i: e.others["fast"] for i, e in fast_run.state.join.pending.items()}
    fast_run.state.promote("fast", cooldown=10**9)
    assert {i: e.probability for i, e in fast_run.state.join.pending.items()} == waiting
    fast_run.feed(records[half:])
    by_id = {e.event_id: e for e in shop_events}
    by_id["far-future"] = Event("far-future", 0, {"x": 1.0})
    pairs = learned_pairs(fast_run.state)
    for name, lr, state_of in (("fast", 0.05, model_state), ("base", 0.01, None)):
        model = plain_river_pipeline(lr)
        for event_id, label in pairs:
            model.learn_one(contract_features(by_id[event_id]), label)
        got = model_state(fast_run.state) if state_of else arm_state(fast_run.state, name)
        assert got == river_state(model), name


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_an_identical_twin_is_never_ready_for_promotion_in_dataset_order_or_shuffled(seed):
    """The A/A case on the bundled data: a twin scores every event as the champion does, so its verdict is never
    promote — in the dataset's order and three shuffles, every sample checked."""
    import random

    events = list(read_events())
    if seed is not None:
        random.Random(seed).shuffle(events)
    settings = Settings(engine="compiled", challengers=["twin"], challenger_policy="auto", compare_min_labels=200)
    run = Run(settings)
    for start in range(0, len(events), 500):
        run.feed([("events", encode_event(e)) for e in events[start : start + 500]])
        twin = arm(run.state, "twin")
        assert twin.promote_since is None and run.state.arms is not None and not run.state.arms.ready(0)
    result = arm(run.state, "twin").comparison.result()
    assert result.labels == len(events) and result.loss_difference == 0 and result.decision == "undecided"


def test_an_event_the_champion_encoded_to_learn_but_did_not_stops_the_arms_sharing_its_encoding(shop_events):
    """An incident confirmed at the very event that brought a new input: the champion's vocabulary grew, the arms did
    not see it; from then on they encode on their own, and each is still its plain loop over what it learned."""
    settings = Settings(engine="compiled", challengers=["fast:lr=0.05"], history_every_events=50)
    run = Run(settings)
    assert run.state.arms is not None and run.state.arms.shared == {"fast"}
    events = shop_events[:300]
    odd = events[49]
    events[49] = type(odd)(odd.event_id, odd.ts, {**odd.features, "brand_new": 3.0}, odd.label, odd.user_id)
    run.feed([("events", encode_event(e)) for e in events[:49]])
    sample = run.step.record_sample

    def held(state, positions):  # the 50th label's sample confirms an incident: that event is not learned
        sample(state, positions)
        state.frozen = True

    run.step.record_sample = held
    run.feed([("events", encode_event(events[49]))])
    run.step.record_sample = sample
    assert run.state.arms.shared == frozenset() and "brand_new" in run.state.model.numeric
    run.state.frozen = False
    run.feed([("events", encode_event(e)) for e in events[50:]])
    learned = events[:49] + events[50:]
    assert arm_state(run.state, "fast") == river_state(_plain_loop(learned, 0.05)[0])
    assert "brand_new" not in arm(run.state, "fast").model.numeric


def _plain_classifier(kind: str):
    import numbers

    from river import compose, linear_model, naive_bayes, preprocessing

    classifier = {
        "pa": lambda: linear_model.PAClassifier(C=1.0, mode=1),
        "alma": linear_model.ALMAClassifier,
        "gaussian_nb": naive_bayes.GaussianNB,
    }[kind]()
    return compose.Pipeline(
        compose.TransformerUnion(
            compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
            compose.SelectType(str) | preprocessing.OneHotEncoder(drop_zeros=True),
        ),
        classifier,
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_other_river_classifiers_as_challengers_are_their_plain_river_loops_through_a_restore(shop_events, engine):
    """PA, ALMA and Gaussian naive Bayes behind the champion's front: each arm's probabilities (in its comparison) and
    learned numbers are river's own over the same events, also when a version's document restores them halfway."""
    kinds = ("pa", "alma", "gaussian_nb")
    settings = Settings(
        engine=engine, challengers=[f"{k.replace('_', '-')}:kind={k}" for k in kinds], compare_min_labels=100
    )
    records = [("events", encode_event(e)) for e in shop_events]
    first = Run(settings).feed(records[:600])
    second = Run(settings)
    second.state.adopt(_restored(first.state, settings))
    second.positions = dict(first.positions)
    second.feed(records[600:])
    champion = plain_river_pipeline(0.01)
    plain = {kind: _plain_classifier(kind) for kind in kinds}
    expected = {kind: Comparison(min_labels=100) for kind in plain}
    for event in shop_events:
        x = contract_features(event)
        p = champion.predict_proba_one(x).get(True, 0.0)
        for kind, model in plain.items():
            expected[kind].update(event.label, p, model.predict_proba_one(x).get(True, 0.0))
            model.learn_one(x, event.label)
        champion.learn_one(x, event.label)
    for kind, model in plain.items():
        got = arm(second.state, kind.replace("_", "-"))
        assert got.comparison.dump() == expected[kind].dump(), kind
        reference = ClassifierModel(ModelSpec(kind=kind))
        reference.pipeline = model  # river's own pipeline, dumped the way the arm is
        reference.scaler = next(
            s
            for b in model.steps["TransformerUnion"].transformers.values()
            for s in b.steps.values()
            if type(s).__name__ == "StandardScaler"
        )
        reference.classifier = list(model.steps.values())[-1]
        mine, theirs = got.model.dump_state(), reference.dump_state()
        assert {k: v for k, v in mine.items() if k not in ("learned", "vocabulary")} == {
            k: v for k, v in theirs.items() if k not in ("learned", "vocabulary")
        }, kind


def test_a_promoted_passive_aggressive_arm_serves_and_is_restored_as_the_champion(shop_events):
    settings = Settings(engine="compiled", challengers=["pa:kind=pa"])
    records = [("events", encode_event(e)) for e in shop_events]
    run = Run(settings).feed(records[:500])
    run.state.promote("pa", cooldown=10**6)
    run.feed(records[500:900])
    encoded = EncodedSnapshot.of(run.state.capture().document())
    snapshot = decode_snapshot(encoded.blob, encoded.sha256)
    own = ModelSpec.from_dict(snapshot.spec)  # after a promotion the version's spec is the champion's (restore_head)
    model, prequential = restore_state(snapshot, own, settings.rolling_window)
    restored = Restored(
        model, prequential, dict(snapshot.counters), _meta(), dict(snapshot.stream), snapshot.arms, "pa", own
    )
    again = Run(settings)
    again.state.adopt(restored)
    again.positions = dict(run.positions)
    again.feed(records[900:])
    assert (again.state.arm_name, again.state.spec.kind) == ("pa", "pa")
    plain = _plain_classifier("pa")
    for event in shop_events:
        plain.learn_one(contract_features(event), event.label)
    weights = list(plain.steps.values())[-1].weights
    assert again.state.model.dump_state()["coefficients"] == {"names": list(weights), "values": list(weights.values())}
    assert arm_state(again.state, "base") == river_state(_plain_loop(shop_events, 0.01)[0])  # the former champion


HOSTILE = [0.0, 1.0, 0.5, 1e-300, 1e-16, 1 - 1e-16, 0.9999999, math.inf, -math.inf, math.nan, -0.0, 2.0, -1.0]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_kernels_one_call_step_is_the_python_calls_to_the_bit_on_hostile_scores(shop_events, seed):
    """:meth:`CompiledModel.learn_judged` (one event) and ``learn_judged_many`` (a run, stopping for the rolling sum's
    exact recount) against the four Python calls — score (or the score given), :meth:`Comparison.update`,
    :meth:`RollingMean.add`, learn — on scores a broken champion or a stored state may hold (0, 1, subnormal, ±inf,
    NaN, out of range), a window of 7 (recounted every 7 values): the tally, the ring and the model are the same
    bits."""
    rng = random.Random(seed)
    spec = ModelSpec(learning_rate=0.05)
    python_model, one, many = CompiledModel(spec), CompiledModel(spec), CompiledModel(spec)
    python_cmp, one_cmp, many_cmp = Comparison(), Comparison(), Comparison()
    python_loss, one_loss, many_loss = RollingMean(7), RollingMean(7), RollingMean(7)
    pending: list[tuple] = []

    def flush_many() -> None:
        if pending:
            xs, labels, champions, given = (list(c) for c in zip(*pending, strict=True))
            out = many.learn_judged_many(
                xs, labels, champions, given if any(g is not None for g in given) or rng.random() < 0.5 else None,
                tally=many_cmp.tally, ring=many_loss.ring, rolling=many_loss.state, resum=many_loss.resum,
            )  # fmt: skip
            assert out.shape == (len(xs), 3)
            pending.clear()

    for event in shop_events[:600]:
        label = bool(event.label)
        p_champion = rng.choice(HOSTILE) if rng.random() < 0.3 else rng.random()
        given = None if rng.random() < 0.7 else (rng.choice(HOSTILE) if rng.random() < 0.5 else rng.random())
        x = python_model.encode(event.features, learn=True)
        p = python_model.predict_encoded(x) if given is None else given
        loss = python_cmp.update(label, p_champion, p)
        if loss is not None:
            python_loss.add(loss)
        python_model.learn_encoded(x, label)
        flags = one.learn_judged(
            one.encode(event.features, learn=True), label, p_champion, given,
            tally=one_cmp.tally, ring=one_loss.ring, rolling=one_loss.state,
        )  # fmt: skip
        if flags & S_RESUM:
            one_loss.resum()
        pending.append((many.encode(event.features, learn=True), label, p_champion, given))
        if rng.random() < 0.05:
            flush_many()  # runs of every length, the vocabulary growing between them
    flush_many()
    assert python_cmp.skipped > 0 and python_cmp.labels > 300
    for comparison, loss, model in ((one_cmp, one_loss, one), (many_cmp, many_loss, many)):
        assert comparison.tally.tobytes() == python_cmp.tally.tobytes()
        assert comparison.dump() == python_cmp.dump()
        assert loss.dump() == python_loss.dump() and loss.mean() == python_loss.mean()
        assert model.dump_state() == python_model.dump_state()


@pytest.mark.parametrize("every", [1, 37, 1000])
def test_the_arms_learn_queued_events_exactly_whenever_they_are_flushed(shop_events, every):
    """The arms learn the champion's labelled events in queued runs (flushed by a metric sample every ``every``
    labels, by :data:`QUEUED` events, or by anyone reading an arm): at every cadence each arm is its plain river loop
    and its comparison the plain loops' scores, to the bit; reading the arms mid-stream changes nothing."""
    settings = Settings(
        engine="compiled", challengers=DECLARED, compare_segments=["VisitorType"], history_every_events=every
    )
    run = Run(settings)
    records = [("events", encode_event(e)) for e in shop_events]
    for start in range(0, len(records), 97):
        run.feed(records[start : start + 97])
        assert run.state.arms is not None and run.state.arms.arms[0].learned == min(start + 97, len(records))
    champion = plain_river_pipeline(0.01)
    plain = {name: plain_river_pipeline(lr) for name, (lr, _) in SPECS.items()}
    expected = {name: Comparison() for name in SPECS}
    for event in shop_events:
        x = contract_features(event)
        p = champion.predict_proba_one(x).get(True, 0.0)
        for name, (_, excluded) in SPECS.items():
            xa = without(x, excluded)
            segment = (f"VisitorType={x['VisitorType']}",)
            expected[name].update(event.label, p, plain[name].predict_proba_one(xa).get(True, 0.0), segment)
            plain[name].learn_one(xa, event.label)
        champion.learn_one(x, event.label)
    for name in SPECS:
        assert arm_state(run.state, name) == river_state(plain[name]), name
        assert arm(run.state, name).comparison.dump() == expected[name].dump(), name
