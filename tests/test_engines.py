"""Both learning engines against a plain river pipeline, and against each other (state documents, restores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reference import contract_features, plain_river_pipeline, river_state

from streaming.compiled import CompiledModel
from streaming.engines import ENGINES, new_model, resolve_engine, restore_model
from streaming.errors import ConfigError
from streaming.local.dataset import read_events
from streaming.model import ModelSpec, OnlineModel

ENGINE_NAMES = ("river", "compiled")
TOLERANCE = 1e-12  # the target; in practice both engines match river bit for bit (asserted below too)


def dataset(limit: int | None = None) -> list[tuple[dict, bool]]:
    return [(contract_features(e), bool(e.label)) for e in read_events(limit=limit)]


def prequential(model, events) -> list[float]:
    """Score each event, then learn it (the learner's order); the probabilities."""
    probabilities = []
    for x, y in events:
        encoded = model.encode(x, learn=True)
        probabilities.append(model.predict_encoded(encoded))
        model.learn_encoded(encoded, y)
    return probabilities


def bits(state: dict) -> str:
    """A state document with every float as its exact hex form, dict orders kept: equal means bit-identical."""

    def walk(value):
        if isinstance(value, float):
            return value.hex()
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, dict):
            return [[k, walk(v)] for k, v in value.items()]
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return json.dumps(walk(state))


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(("lr", "l2", "limit"), [(0.01, 0.0, None), (0.05, 0.01, 4000)])
def test_each_engine_matches_a_plain_river_pipeline_prediction_by_prediction(engine, lr, l2, limit):
    events = dataset(limit)
    river = plain_river_pipeline(lr, l2)
    expected = []
    for x, y in events:
        expected.append(river.predict_proba_one(x).get(True, 0.0))
        river.learn_one(x, y)
    model = new_model(ModelSpec(learning_rate=lr, l2=l2), engine)
    assert model.engine == engine
    got = prequential(model, events)
    worst = max(abs(a - b) for a, b in zip(got, expected, strict=True))
    assert worst <= TOLERANCE
    assert got == expected  # bit for bit: same operations in the same order
    state, reference = model.dump_state(), river_state(river)
    assert list(state["weights"]) == list(reference["weights"])  # creation order: a snapshot's order
    assert state["weights"] == reference["weights"]
    assert state["intercept"] == reference["intercept"]
    assert state["scaler"] == reference["scaler"]
    assert state["optimizer_iterations"] == len(events)


@pytest.mark.parametrize(
    "caps",
    [{"max_categories_per_feature": 1}, {"max_inputs": 12}, {"max_inputs": 3}, {"max_vocabulary_bytes": 200}],
)
def test_the_compiled_engine_matches_the_river_engine_with_caps_hit(caps):
    events = dataset(3000)
    spec = ModelSpec(**caps)
    river, compiled = OnlineModel(spec), CompiledModel(spec)
    assert prequential(compiled, events) == prequential(river, events)
    assert river.capped["category"] + river.capped["feature"] > 0  # the caps were hit
    assert bits(compiled.dump_state()) == bits(river.dump_state())


def test_a_state_crosses_engines_bit_for_bit_and_learning_goes_on_identically():
    events = dataset(6000)
    first, rest = events[:3000], events[3000:]
    river = OnlineModel(ModelSpec())
    prequential(river, first)
    compiled = restore_model(ModelSpec(), river.dump_state(), "compiled")
    assert bits(compiled.dump_state()) == bits(river.dump_state())
    back = restore_model(ModelSpec(), compiled.dump_state(), "river")
    assert bits(back.dump_state()) == bits(river.dump_state())  # river -> compiled -> river
    after_river, after_compiled = prequential(river, rest), prequential(compiled, rest)
    assert max(abs(a - b) for a, b in zip(after_river, after_compiled, strict=True)) <= TOLERANCE
    assert after_compiled == after_river
    assert bits(compiled.dump_state()) == bits(river.dump_state())


feature_names = st.sampled_from(["a", "b", "a_x", "c", "n"])
values = st.one_of(
    st.sampled_from(["x", "y", "z", "x_y"]),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(-1e6, 1e6, allow_nan=False),
)
streams = st.lists(
    st.tuples(st.dictionaries(feature_names, values, max_size=5), st.sampled_from([True, False, None])),
    max_size=60,
)


def without_positions(state: dict) -> dict:
    """``state`` as versions written before the vocabulary stored its positions."""
    vocabulary = {k: v for k, v in state["vocabulary"].items() if k != "positions"}
    return {**state, "vocabulary": vocabulary}


@settings(max_examples=int(os.environ.get("ENGINE_EXAMPLES", "150")), deadline=None)
@example(stream=[({"a": "x", "b": 0, "a_x": 0}, True)], caps={})  # a number under a one-hot name, found by hypothesis
@given(
    streams,
    st.sampled_from(
        [{}, {"max_categories_per_feature": 2}, {"max_inputs": 4}, {"max_vocabulary_bytes": 6}, {"l2": 0.1}]
    ),
)
def test_any_stream_learns_and_dumps_alike_on_both_engines(stream, caps):
    """Unlabelled events (scored only), type changes, name collisions ("a_x" vs a="x"), caps: one state. Half-way,
    the state is restored into the compiled engine through the stored positions and without them (older
    versions): all go on learning alike."""
    spec = ModelSpec(**caps)
    river, compiled = OnlineModel(spec), CompiledModel(spec)
    models = [river, compiled]
    for n, (features, label) in enumerate(stream):
        if n == len(stream) // 2:
            state = river.dump_state()
            models += [CompiledModel.restore(spec, state), CompiledModel.restore(spec, without_positions(state))]
        encoded = [m.encode(features, learn=label is not None) for m in models]
        assert len({m.predict_encoded(x) for m, x in zip(models, encoded, strict=True)}) == 1
        if label is not None:
            for m, x in zip(models, encoded, strict=True):
                m.learn_encoded(x, label)
        positions = river.dump_state()["vocabulary"]["positions"]  # the compiled engine's grow between dumps
        assert all(m.dump_state()["vocabulary"]["positions"] == positions for m in models[1:])
    assert len({bits(m.dump_state()) for m in models}) == 1


def test_engine_names_resolve_and_a_wrong_one_says_what_to_set():
    assert resolve_engine("river") == "river"
    assert resolve_engine("compiled") == resolve_engine("auto") == "compiled"  # numba is a dependency
    assert ENGINES == ("auto", "river", "compiled")
    with pytest.raises(ConfigError, match="LIVELEARN_ENGINE"):
        resolve_engine("fast")


def run_child(code: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return {"out": json.loads(result.stdout.splitlines()[-1]), "err": result.stderr}


KERNEL_CHILD = """
    import json, time
    from streaming import engines, kernel
    from streaming.model import ModelSpec
    start = time.perf_counter()
    engines.configure("compiled", {cache!r})
    ready = time.perf_counter() - start
    model = engines.new_model(ModelSpec())
    model.learn_one({{"x": 1.0, "c": "u"}}, True)
    p = model.predict_proba_one({{"x": 1.0}})
    print(json.dumps({{"cache": str(kernel.load().cache_dir), "ready": ready, "p": p}}))
"""


def test_the_kernel_is_cached_on_disk_and_an_unwritable_cache_only_costs_a_compile(tmp_path):
    cache = tmp_path / "cache"
    first = run_child(KERNEL_CHILD.format(cache=str(cache)), {})["out"]
    assert first["cache"] == str(cache / "numba")
    cached = list((cache / "numba").rglob("*.nbi"))
    assert len(cached) >= 2  # predict and learn, kept for the next start
    again = run_child(KERNEL_CHILD.format(cache=str(cache)), {})["out"]
    assert again["p"] == first["p"]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # mkdir below a file fails even for root (a read-only root filesystem)
    child = run_child(KERNEL_CHILD.format(cache=str(blocker / "cache")), {})
    assert child["out"]["cache"] == "None"
    assert child["out"]["p"] == first["p"]
    assert "no writable cache directory" in child["err"]
    assert sorted((cache / "numba").rglob("*.nbi")) == sorted(cached)  # the second start compiled nothing new
    print(f"kernel ready: cold {first['ready']:.2f} s, from the cache {again['ready']:.2f} s")


def test_without_numba_auto_falls_back_to_river_and_compiled_says_what_to_do():
    code = """
        import json, sys
        sys.modules["numba"] = None  # as if numba could not be installed
        from streaming import engines
        from streaming.errors import ConfigError
        from streaming.model import ModelSpec
        try:
            engines.resolve_engine("compiled")
            message = ""
        except ConfigError as exc:
            message = str(exc)
        print(json.dumps({"auto": engines.new_model(ModelSpec(), "auto").engine, "compiled": message}))
    """
    child = run_child(code, {})["out"]
    assert child["auto"] == "river"
    assert "needs numba" in child["compiled"]


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_unlabelled_events_score_as_a_plain_river_loop_and_leave_no_trace_in_the_state(engine):
    """The bundled dataset with a third of its labels removed, every unlabelled event carrying inputs never learned
    (a new number, a new category value) and a known number of zero variance sent other values: every probability is
    river's bit for bit; weights, counts, means and variances of every learned input, intercept and steps are river's.
    The one difference: river keeps a zero variance for each number it only scored; livelearn keeps nothing."""
    events = []
    for n, (x, y) in enumerate(dataset()):
        if n % 3 == 1:  # unlabelled: scored only
            events.append(({**x, f"probe{n}": float(n), "kind": f"k{n}", "constant": float(n)}, None))
        else:
            events.append(({**x, "constant": 1.0}, y))
    river = plain_river_pipeline()
    model = new_model(ModelSpec(), engine)
    for x, y in events:
        expected = river.predict_proba_one(x).get(True, 0.0)
        encoded = model.encode(x, learn=y is not None)
        assert model.predict_encoded(encoded) == expected
        if y is not None:
            river.learn_one(x, y)
            model.learn_encoded(encoded, y)
    state, reference = model.dump_state(), river_state(river)
    assert list(state["weights"]) == list(reference["weights"]) and state["weights"] == reference["weights"]
    assert state["intercept"] == reference["intercept"]
    assert state["optimizer_iterations"] == sum(y is not None for _, y in events)
    scaler, plain = state["scaler"], reference["scaler"]
    assert scaler["counts"] == plain["counts"] and list(scaler["counts"]) == list(plain["counts"])
    assert scaler["means"] == plain["means"]
    assert plain["vars"]["constant"] == 0.0 and "constant" in scaler["vars"]
    only_scored = {name for name in plain["vars"] if name not in plain["counts"]}
    assert len(only_scored) == len(events) // 3 and all(plain["vars"][name] == 0.0 for name in only_scored)
    assert scaler["vars"] == {name: v for name, v in plain["vars"].items() if name not in only_scored}
    assert not any(name.startswith("probe") for name in state["vocabulary"]["numeric"])
    assert state["vocabulary"]["categories"].get("kind") is None
