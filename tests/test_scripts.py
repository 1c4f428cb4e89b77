"""The typed call path of the Lua scripts: each spec says what its ``.lua`` header says and what its script
reads, a call packs by name, and a refusal is decoded once into its code, then raised as the error callers
expect. The scripts run on fakeredis (Lua), the refusal's wire form once on a real redis-server."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import fakeredis
import pytest
import redis

from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from snapshotter.incidents import Incidents
from snapshotter.keys import Keys
from snapshotter.lease import Lease
from snapshotter.scripts import (
    FREEZE,
    LEASE_RENEW,
    OPEN_INCIDENT,
    PIN,
    REFUSAL_ERRORS,
    SPECS,
    UNPIN,
    ScriptSpec,
    bind,
    source,
)
from snapshotter.store import VersionStore
from streaming.errors import (
    LeaseLostError,
    NotPinnedError,
    RefusalCode,
    ScriptRefusal,
    SnapshotFencedError,
    StaleLineageError,
)

LUA = resources.files("snapshotter").joinpath("lua")
STATE = SnapshotState(spec={"kind": "k"}, model={}, metrics={}, counters={})
PIN_ARGS = {"maxlen": 10, "actor": "op", "reason": "r", "force": None, "metrics": "{}"}
INCIDENT: dict[str, Any] = {
    "signal": "label_rate",
    "change_point": 0,
    "position": 5,
    "actor": "w",
    "reason": "r",
    "metrics": {},
}


def lua_files() -> dict[str, str]:
    return {
        f.name.removesuffix(".lua"): f.read_text(encoding="utf-8") for f in LUA.iterdir() if f.name.endswith(".lua")
    }


def header(text: str, label: str) -> tuple[str, ...] | None:
    """The names a ``-- KEYS:`` / ``-- ARGV:`` line lists, with its continuation lines (``--`` and an indent)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"-- {label}: "):
            names = line.removeprefix(f"-- {label}: ")
            for more in lines[i + 1 :]:
                if not re.match(r"--\s{2,}\S", more):
                    break
                names += " " + more[2:].strip()
            return tuple(name.strip() for name in names.split(","))
    return None


@pytest.mark.parametrize("spec", SPECS.values(), ids=list(SPECS))
def test_each_spec_names_its_keys_and_argv_as_its_lua_header_does(spec: ScriptSpec):
    text = lua_files()[spec.name]
    assert header(text, "KEYS") == spec.keys
    assert header(text, "ARGV") == (*spec.args, *([f"...{spec.rest}"] if spec.rest else []))


@pytest.mark.parametrize("spec", SPECS.values(), ids=list(SPECS))
def test_each_spec_declares_exactly_the_keys_and_argv_its_script_reads(spec: ScriptSpec):
    """A name added, dropped or a script reading past its declared arguments fails here, includes counted."""
    text = source(spec.name)
    assert {int(i) for i in re.findall(r"KEYS\[(\d+)\]", text)} == set(range(1, len(spec.keys) + 1))
    assert {int(i) for i in re.findall(r"ARGV\[(\d+)\]", text)} == set(range(1, len(spec.args) + 1))
    rest_from = re.findall(r"for i = (\d+), #ARGV", text)
    assert rest_from == ([str(len(spec.args) + 1)] if spec.rest else [])
    if "audit(" in text:  # audit.lua writes KEYS[1] with ARGV[1] as its length
        assert (spec.keys[0], spec.args[0]) == ("audit", "maxlen")


def test_every_lua_file_is_a_declared_script_or_a_shared_include():
    files = lua_files()
    included = {name for text in files.values() for name in re.findall(r"^-- include: (\w+)$", text, re.M)}
    assert set(files) == set(SPECS) | included
    assert not set(SPECS) & included
    assert all(header(files[name], "KEYS") is None for name in included)


def test_spec_keys_are_attributes_of_the_model_keys():
    keys = Keys("m")
    for spec in SPECS.values():
        assert all(isinstance(getattr(keys, name, None), str) for name in spec.keys), spec.name


def test_the_refusal_codes_are_exactly_those_the_scripts_answer_with():
    texts = lua_files()
    answered = {code for text in texts.values() for code in re.findall(r"refuse\('([A-Z_]+)'", text)}
    assert answered == set(RefusalCode)
    assert set(REFUSAL_ERRORS) == set(RefusalCode)
    assert [name for name, text in texts.items() if "redis.error_reply" in text] == ["refuse"]  # the one form


class Recorder:
    """A client whose scripts record what they are called with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def register_script(self, _source: str) -> Any:
        return lambda **call: self.calls.append(call)


def test_a_call_packs_keys_and_argv_in_the_declared_order_whatever_order_they_are_named_in():
    recorder = Recorder()
    keys = Keys("m")
    bind(recorder, OPEN_INCIDENT)(  # type: ignore[arg-type]
        keys,
        **{name: f"<{name}>" for name in reversed(OPEN_INCIDENT.args)},
        quarantine=[7, 8],
    )
    bind(recorder, PIN)(  # type: ignore[arg-type]
        {name: f"k:{name}" for name in reversed(PIN.keys)}, **dict.fromkeys(PIN.args)
    )
    opened, pinned = recorder.calls
    assert opened["keys"] == [getattr(keys, name) for name in OPEN_INCIDENT.keys]
    assert opened["keys"][:3] == [keys.audit, keys.epoch, keys.head]
    assert opened["args"] == [f"<{name}>" for name in OPEN_INCIDENT.args] + [7, 8]
    assert pinned["keys"] == [f"k:{name}" for name in PIN.keys]
    assert pinned["args"] == [""] * len(PIN.args)  # None is the scripts' '' ("none")


@pytest.mark.parametrize(
    ("keys", "args", "said"),
    [
        (Keys("m"), {"lease_value": "1:a"}, "missing ARGV ttl_ms"),
        (Keys("m"), {"lease_value": "1:a", "ttl_ms": 5, "ttl": 5}, "unknown ARGV ttl"),
        ({}, {"lease_value": "1:a", "ttl_ms": 5}, "missing KEYS lease"),
        ({"lease": "l", "fence": "f"}, {"lease_value": "1:a", "ttl_ms": 5}, "unknown KEYS fence"),
    ],
)
def test_a_call_refuses_a_missing_or_unknown_name_before_redis_sees_it(keys, args, said):
    recorder = Recorder()
    with pytest.raises(TypeError, match=f"script lease_renew: {said}"):
        bind(recorder, LEASE_RENEW)(keys, **args)  # type: ignore[arg-type]
    assert recorder.calls == []


def test_a_trailing_run_of_argv_takes_a_sequence_and_names_are_checked_when_declared():
    args = dict.fromkeys(OPEN_INCIDENT.args, "")
    with pytest.raises(TypeError, match="ARGV quarantine takes a sequence"):
        bind(Recorder(), OPEN_INCIDENT)(Keys("m"), **args, quarantine="7")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="missing ARGV quarantine"):
        bind(Recorder(), OPEN_INCIDENT)(Keys("m"), **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not distinct identifiers"):
        ScriptSpec("x", keys=("lease",), args=("from", "lease"))


def test_a_refusal_is_decoded_into_its_code_and_any_other_error_is_left_as_redis_raised_it():
    r, k = fakeredis.FakeRedis(), Keys("m")
    unpin = bind(r, UNPIN)
    with pytest.raises(ScriptRefusal) as refused:
        unpin(k, maxlen=10, actor="op", reason="r", channel=k.channel, metrics="{}")
    assert (refused.value.code, refused.value.detail, refused.value.script) == (
        RefusalCode.NOT_PINNED,
        "no version is pinned",
        "unpin",
    )
    freeze = bind(r, FREEZE)
    args = {"maxlen": 10, "actor": "op", "reason": "r", "metrics": "{}", "now": 1.0, "channel": k.channel}
    assert freeze(k, **args, expected_epoch=None) == 1
    with pytest.raises(ScriptRefusal) as refused:
        freeze(k, **args, expected_epoch=None)
    assert refused.value.code is RefusalCode.ALREADY
    r.set(k.quarantined, "not a hash")
    r.set(k.meta(1), b"")
    with pytest.raises(redis.ResponseError) as failed:  # a bug, not a refusal: WRONGTYPE inside the script
        bind(r, PIN)(k, **PIN_ARGS, version=1, version_meta=k.meta(1), channel=k.channel)
    assert "WRONGTYPE" in str(failed.value) and not isinstance(failed.value, ScriptRefusal)


def test_a_refusal_arrives_from_a_real_redis_server_as_its_code(private_redis):
    _server, client = private_redis
    k = Keys("m")
    with pytest.raises(ScriptRefusal) as refused:
        bind(client, UNPIN)(k, maxlen=10, actor="op", reason="r", channel=k.channel, metrics="{}")
    assert (refused.value.code, refused.value.detail) == (RefusalCode.NOT_PINNED, "no version is pinned")


def test_each_caller_raises_the_error_it_raised_before_for_a_refusal():
    """The table and the snapshot writer's own FENCED: a lost lease is a SnapshotFencedError to the store's
    writes and promotions, a LeaseLostError to an incident or a release; the messages say the script's detail."""
    r = fakeredis.FakeRedis()
    store = VersionStore(r, "m")
    control = ControlPlane(store)
    incidents = Incidents(store, control)
    lease = Lease(r, "m", "a", ttl=30)
    assert lease.acquire()
    stale = "9:gone"
    with pytest.raises(
        SnapshotFencedError, match=r"this writer \(w\) no longer holds the lease \(lease is held by 1:a\)"
    ):
        store.write(STATE, writer="w", lease_value=stale, offsets={}, metrics={}, parent=None)
    with pytest.raises(StaleLineageError, match=r"^snapshot rejected: lineage epoch is 0, writer is on 3$"):
        store.write(STATE, writer="w", lease_value=lease.value, offsets={}, metrics={}, parent=None, epoch=3)
    with pytest.raises(SnapshotFencedError, match=r"^promotion rejected: lease is held by 1:a; another learner"):
        store.promote(lease_value=stale, epoch=0, confirmed=0, actor="w", metrics={})
    with pytest.raises(LeaseLostError, match=r"^lease is held by 1:a$"):
        incidents.release(position=5, cause="freeze", actor="w", lease_value=stale)
    with pytest.raises(LeaseLostError, match=r"^fenced: lease is held by 1:a; nothing was changed$"):
        incidents.open(**INCIDENT, expected_epoch=None, lease_value=stale)
    with pytest.raises(NotPinnedError, match=r"^not pinned: no version is pinned; nothing was changed$"):
        control.unpin(actor="op", reason="r")
    assert store.numbers() == [] and r.get(store.keys.released) is None  # nothing was changed
