"""What livelearn relies on of river's internals (``streaming/river_internals.py``) against the installed river.

A river release that renames or retypes an attribute the snapshots read or write fails here, in one message naming
each attribute and river's version, instead of in a restore that sets a new attribute beside the real one and
learns from zero. The module's functions are checked to round-trip river's own state, bit for bit; and no other
module reaches a river object's private attributes.
"""

from __future__ import annotations

import ast
import collections
import doctest
import operator
from pathlib import Path

import river
from river import metrics, utils

from streaming import river_internals
from streaming.model import ModelSpec, build_pipeline
from streaming.river_internals import (
    RELIED_ON,
    mean_state,
    running_mean,
    scaler_state,
    set_mean_state,
    set_scaler_state,
    set_total_true_positives,
    set_weights,
    weights_of,
)

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "streaming" / "river_internals.py"
EVENT, LABEL = {"pages": 3.0, "month": "Feb", "price": 2.5}, True


def learned_objects() -> dict[str, object]:
    """Each river object :data:`RELIED_ON` names, built as livelearn builds it and fed one event by river itself."""
    pipeline, scaler, classifier = build_pipeline(ModelSpec())
    pipeline.learn_one(EVENT, LABEL)
    cm, log_loss = metrics.ConfusionMatrix(), metrics.LogLoss()
    cm.update(True, False)
    log_loss.update(True, 0.8)
    from river import linear_model, naive_bayes

    pa, alma, nb = linear_model.PAClassifier(), linear_model.ALMAClassifier(), naive_bayes.GaussianNB()
    for classifier_ in (pa, alma, nb):
        classifier_.learn_one({"pages": 3.0}, LABEL)
    gaussian = nb.gaussians[LABEL]["pages"]
    rolling_auc = metrics.RollingROCAUC(window_size=10)
    rolling_auc.update(True, 0.8)
    return {
        "RollingROCAUC": rolling_auc,
        "PAClassifier": pa,
        "ALMAClassifier": alma,
        "GaussianNB": nb,
        "Gaussian": gaussian,
        "Var": gaussian._var,
        "LogisticRegression": classifier,
        "StandardScaler": scaler,
        "LogLoss": log_loss,
        "Mean": running_mean(log_loss),
        "ConfusionMatrix": cm,
    }


def problem(owner: object, relied: river_internals.Relied) -> str | None:
    """What is wrong with one relied-on attribute of ``owner``, or ``None``."""
    if type(owner).__name__ != relied.owner:
        return f"is read on a {type(owner).__name__}"
    try:
        value = operator.attrgetter(relied.attribute)(owner)
    except AttributeError:
        return "is missing"
    if not isinstance(value, relied.kind):
        return f"holds a {type(value).__module__}.{type(value).__qualname__}, not a {relied.kind.__qualname__}"
    if relied.default is not None and getattr(value, "default_factory", None) is not relied.default:
        return f"defaults to {getattr(value, 'default_factory', None)!r}, not {relied.default!r}"
    return None


def test_every_river_attribute_livelearn_relies_on_exists_with_its_type():
    objects = learned_objects()
    problems = [
        f"{relied.owner}.{relied.attribute} {found}"
        for relied in RELIED_ON
        if (found := problem(objects[relied.owner], relied)) is not None
    ]
    assert not problems, (
        f"river {river.__version__} changed what livelearn's snapshots read and write (streaming/river_internals.py: "
        "fix its functions and RELIED_ON for this version, or pin river below it):\n  " + "\n  ".join(problems)
    )


def test_a_renamed_or_retyped_attribute_is_reported_by_name():
    """The check itself: a river that renamed ``_weights`` or made ``intercept`` an int is caught."""
    objects = learned_objects()
    renamed = objects["LogisticRegression"]
    renamed._coefs = renamed.__dict__.pop("_weights")
    retyped = river_internals.Relied("LogisticRegression", "intercept", int)
    assert problem(renamed, RELIED_ON[0]) == "is missing"
    assert problem(renamed, retyped) == "holds a builtins.float, not a int"
    assert problem(objects["StandardScaler"], river_internals.Relied("StandardScaler", "means", dict, int)) == (
        "defaults to <class 'float'>, not <class 'int'>"
    )


def private_names(tree: ast.AST) -> set[str]:
    """Private (not dunder) attribute names read or written in ``tree``, on anything but ``self``/``cls``."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    }


def test_the_adapter_lists_every_private_attribute_it_touches():
    touched = private_names(ast.parse(ADAPTER.read_text()))
    listed = {relied.attribute.rsplit(".", 1)[-1] for relied in RELIED_ON}
    assert touched, "the adapter touches no private attribute: this scan is broken"
    assert touched <= listed, f"streaming/river_internals.py touches {sorted(touched - listed)}, not in RELIED_ON"


def source_trees(path: Path) -> list[ast.AST]:
    """The module, and each doctest example of its docstrings (they run too)."""
    text = path.read_text()
    trees = [ast.parse(text)]
    parser = doctest.DocTestParser()
    for node in ast.walk(trees[0]):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            for example in parser.get_examples(docstring or ""):
                try:
                    trees.append(ast.parse(example.source))
                except SyntaxError:
                    continue  # a continuation shown on its own: nothing to scan
    return trees


def test_no_module_but_the_adapter_reaches_a_river_private_attribute():
    objects = learned_objects()
    pipeline, _, _ = build_pipeline(ModelSpec())
    river_private = {
        name
        for owner in [*objects.values(), pipeline, *pipeline.steps.values(), objects["LogisticRegression"].optimizer]
        for name in {*vars(owner), *dir(type(owner))}  # its state, and its class's private methods (``_eval``)
        if name.startswith("_") and not name.startswith("__")
    } | {relied.attribute for relied in RELIED_ON if relied.attribute.startswith("_")}
    assert {"_weights", "_mean", "_total_true_positives", "_eval"} <= river_private
    offenders = [
        f"{path.relative_to(ROOT)}: {sorted(found)}"
        for package in ("streaming", "monitor", "snapshotter")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ADAPTER and (found := set().union(*map(private_names, source_trees(path))) & river_private)
    ]
    assert not offenders, f"river's private attributes are reached outside streaming/river_internals.py: {offenders}"


def test_weights_round_trip_in_river_order_and_learn_on_bit_for_bit():
    pipeline, _, classifier = build_pipeline(ModelSpec(learning_rate=0.1))
    twin_pipeline, _, twin = build_pipeline(ModelSpec(learning_rate=0.1))
    pipeline.learn_one(EVENT, LABEL)
    weights = weights_of(classifier)
    weights["pages"] = 9.0  # a copy: the model's own weights do not move
    assert weights_of(classifier)["pages"] != 9.0
    set_weights(twin, weights_of(classifier))
    twin.intercept, twin.optimizer.n_iterations = classifier.intercept, classifier.optimizer.n_iterations
    twin_pipeline.steps["TransformerUnion"] = pipeline.steps["TransformerUnion"].clone(include_attributes=True)
    assert type(twin._weights) is utils.VectorDict
    assert list(weights_of(twin)) == list(weights_of(classifier)) == ["month_Feb", "pages", "price"]
    for x, y in [({"pages": 1.0, "month": "Mar"}, False), ({"pages": 7.0, "month": "Feb", "price": 1.0}, True)]:
        assert twin_pipeline.predict_proba_one(x) == pipeline.predict_proba_one(x)
        pipeline.learn_one(x, y)
        twin_pipeline.learn_one(x, y)
    assert weights_of(twin) == weights_of(classifier) and list(weights_of(twin)) == list(weights_of(classifier))
    assert [w.hex() for w in weights_of(twin).values()] == [w.hex() for w in weights_of(classifier).values()]


def test_scaler_state_restores_a_scaler_that_learns_and_scales_as_the_original():
    _, scaler, _ = build_pipeline(ModelSpec())
    for x in ({"a": 1.0, "b": 2.0}, {"a": 4.0}, {"b": -1.0, "c": 0.5}):
        scaler.learn_one(x)
    state = scaler_state(scaler)
    assert state == {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)}
    assert list(state["means"]) == ["a", "b", "c"]
    _, twin, _ = build_pipeline(ModelSpec())
    set_scaler_state(twin, state["counts"], state["means"], state["vars"])
    assert type(twin.counts) is collections.Counter and twin.means.default_factory is float
    for x in ({"a": 2.0, "d": 3.0}, {"c": 1.0, "b": 5.0}):  # "d": never seen, read as 0 from the defaultdicts
        assert twin.transform_one(x) == scaler.transform_one(x)
        scaler.learn_one(x)
        twin.learn_one(x)
    assert scaler_state(twin) == scaler_state(scaler)


def test_a_running_mean_round_trips_and_reverts_as_river_s_log_loss():
    log_loss, twin = metrics.LogLoss(), metrics.LogLoss()
    pairs = [(True, 0.9), (False, 0.3), (True, 0.2)]
    for y, p in pairs:
        log_loss.update(y, p)
    set_mean_state(running_mean(twin), *mean_state(running_mean(log_loss)))
    assert twin.get() == log_loss.get() and mean_state(running_mean(twin)) == (3.0, log_loss.get())
    log_loss.revert(*pairs[0])
    twin.revert(*pairs[0])
    assert twin.get() == log_loss.get()


def test_the_true_positives_are_set_where_river_reads_them():
    cm = metrics.ConfusionMatrix()
    set_total_true_positives(cm, 3.0)
    assert cm.total_true_positives == 3.0
    cm.update(True, True)
    assert cm.total_true_positives == 4.0
