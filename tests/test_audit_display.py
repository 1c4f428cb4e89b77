"""``livelearn audit`` shows the challengers' actions (issue 20) as readably as the versions' ones: arm names in
``from`` / ``to`` (the entry reads only numbers as versions), a promotion moving serving from arm to arm, and each
canary step's share of the requests.

The entries are written by the real Lua scripts (``ArmControl``, ``ControlPlane``) into an in-memory Redis
(fakeredis, with Lua); the command runs in this process on a pipe (tab-separated, every column).
"""

from __future__ import annotations

import fakeredis
import pytest
from typer.testing import CliRunner

import snapshotter.store as stores
from snapshotter.challengers import ArmControl
from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from streaming.cli.app import app

STATE = SnapshotState(spec={"inputs": ["x"]}, model={}, metrics={}, counters={"events_seen": 1})


@pytest.fixture
def store(monkeypatch, tmp_path) -> stores.VersionStore:
    """Model ``shop`` with version 1 serving, which holds its own model and the challenger ``fast``."""
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIVELEARN_MODEL_NAME", "shop")
    monkeypatch.chdir(tmp_path)  # no `livelearn up` stack file of the developer's
    store = stores.VersionStore(fakeredis.FakeRedis(), "shop", promotion="immediate")
    store.write(
        STATE,
        writer="w",
        lease_value=None,
        offsets={"events": {"0": 1}},
        metrics={"rolling": {"accuracy": 0.9}},
        parent=None,
        stable=True,
        extra={"arms": {"fast": {}}},
    )
    monkeypatch.setattr(stores, "open_store", lambda settings: store)
    return store


def audit_rows() -> list[dict[str, str]]:
    result = CliRunner().invoke(app, ["audit"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines[1].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[2:]]


def test_the_challengers_actions_show_their_arms_and_how_serving_moved(store):
    arms, control = ArmControl(store), ControlPlane(store)
    arms.declare("add", "fast", "fast:lr=0.05", seed={}, actor="alice", reason="try a faster rate")
    control.set_canary("fast", 25, steps=(25, 50, 100), actor="alice", reason="a quarter")
    control.advance_canary(actor="alice", reason="half")
    control.abort_canary(actor="bob", reason="errors up")
    arms.promote("fast", actor="alice", reason="better by 3 %", current="base")
    arms.promote("base", actor="bob", reason="back out", current="fast")
    arms.declare("remove", "fast", seed={}, actor="bob", reason="seen enough")
    arms.declare("reset", seed={}, actor="bob", reason="the settings again")

    shown = [(r["action"], r["from"], r["to"], r["serving"], r["reason"]) for r in audit_rows()]
    assert shown == [
        ("challenger_add", "-", "fast", "-", "try a faster rate"),
        ("canary", "-", "1", "fast 0→25 %", "a quarter"),  # `to`: the serving version the split applies to
        ("canary", "-", "1", "fast 25→50 %", "half"),
        ("canary_abort", "-", "1", "fast 50→0 %", "errors up"),
        ("promote_arm", "base", "fast", "base→fast", "better by 3 %"),
        ("promote_arm", "fast", "base", "fast→base", "back out"),
        ("challenger_remove", "fast", "-", "-", "seen enough"),
        ("challengers_reset", "-", "-", "-", "the settings again"),
    ]


def test_versions_still_show_as_numbers_beside_the_arms(store):
    ControlPlane(store).pin(1, actor="alice", reason="hold it")
    ArmControl(store).promote("fast", actor="alice", reason="better", current="base")
    shown = [(r["action"], r["from"], r["to"], r["serving"]) for r in audit_rows()]
    assert shown == [("pin", "1", "1", "1→1"), ("promote_arm", "base", "fast", "base→fast")]


def test_control_characters_in_an_actor_or_reason_never_reach_the_terminal(make_settings, cli, monkeypatch):
    """Found by a review: an actor or reason holding escape sequences (anyone with the admin token can write one)
    was printed as it is by `livelearn audit`, on a terminal able to clear the screen or retitle the window. Tables
    now write control characters as their escapes, drawn or plain."""
    from conftest import store_for

    settings = make_settings(promotion="immediate")
    store = store_for(settings)
    store.write(
        SnapshotState(spec={}, model={}, metrics={}, counters={}),
        writer="w",
        lease_value=None,
        offsets={"events": {"0": 1}},
        metrics={},
        parent=None,
        stable=True,
    )
    hostile = "\x1b]0;owned\x07\x1b[2J\x9b"
    code, _out, err = cli(settings, "versions", "pin", "1", "--reason", f"r{hostile}", "--actor", f"eve{hostile}")
    assert code == 0, err
    monkeypatch.setenv("COLUMNS", "200")  # drawn, as on a terminal
    code, drawn, err = cli(settings, "audit")
    assert code == 0, err
    monkeypatch.delenv("COLUMNS")
    code, plain, err = cli(settings, "audit")
    assert code == 0, err
    for out in (drawn, plain):
        assert not any(c in out for c in "\x1b\x07\x9b") and "eve\\x1b]0;owned\\x07" in out.replace("\n", "")
