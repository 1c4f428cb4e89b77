"""The champion alias and the canary split in serving (issue 20, items 3 and 4): which arm of the serving version
answers each request, and operating the split (``livelearn canary``, the admin routes, the ``canary`` script).

Versions are written straight into the session's real redis-server, with no broker: a learner's state stepped over
bundled events with one challenger (``tests/test_arms.py``'s ``Run``), written as the learner writes it (the blob with
every arm, the metadata's ``extra["arms"]``). The app is built in this process as the serving tests build it
(``create_app`` over the store, its lifespan run by a ``TestClient``: the watcher thread follows the control channel);
the many requests of a split go through the same ASGI app (fast path included) without sockets. Every wait is a
readiness loop on what a request gets, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from clirun import one_line_error, run_livelearn
from conftest import wait_for
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from snapshotter.audit import CANARY_ACTIONS, read_audit
from snapshotter.codec import EncodedSnapshot
from snapshotter.control import ControlPlane
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings
from streaming.engines import LearningModel, restore_model
from streaming.errors import StaleEpochError
from streaming.events import Event, encode_event
from streaming.local.dataset import read_events
from streaming.model import ModelSpec
from streaming.serving.app import create_app
from streaming.serving.split import bucket
from tests.reference import contract_features
from tests.test_arms import Run

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USERS = [f"visitor-{i}" for i in range(10_000)]
SPLIT = USERS[:2_000]  # the visitors of the split's end-to-end test (its shares: 4 standard errors; 100k below)
EVENTS = list(read_events(limit=900))
FEATURES = [e.features for e in EVENTS[:40]]  # the feature maps requests cycle through
SCORED = [contract_features(e) for e in EVENTS[:40]]  # as the event contract hands them to a model
_names = itertools.count()


@dataclass
class Served:
    """One model with version 1 (its own model ``base`` and the challenger ``fast``) served in this process."""

    settings: Settings
    store: VersionStore
    control: ControlPlane
    app: FastAPI
    client: TestClient
    run: Run

    def ask(self, users: list[str | None], **extra: Any) -> list[dict[str, Any]]:
        """``POST /predict`` once per user (``None``: no user key), feature maps in turn; every answer a 200."""
        bodies = [
            {"features": FEATURES[i % len(FEATURES)], **({"user_id": u} if u is not None else {}), **extra}
            for i, u in enumerate(users)
        ]

        async def send() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
                answers: list[httpx.Response] = []
                for start in range(0, len(bodies), 250):
                    chunk = bodies[start : start + 250]
                    answers += await asyncio.gather(*(client.post("/predict", json=body) for body in chunk))
                return answers

        answers = asyncio.run(send())
        assert all(a.status_code == 200 for a in answers), next(a.text for a in answers if a.status_code != 200)
        return [a.json() for a in answers]

    def arm_of(self, user: str | None) -> str:
        return str(self.client.post("/predict", json={"features": FEATURES[0], "user_id": user}).json()["arm"])

    def wait_served(self, **served: Any) -> None:
        """Readiness: this process's route (``GET /canary``'s ``served``) says ``served``."""

        def there() -> bool:
            now = self.client.get("/canary").json()["served"] or {}
            return all(now.get(k) == v for k, v in served.items())

        wait_for(there, 10, f"serving to apply {served}", interval=0.01)

    def arms_of(self, number: int) -> dict[str, LearningModel]:
        """Every arm of version ``number`` restored the documented way (the blob's spec and model of each)."""
        _, state = self.store.load(number)
        arms = {"base": restore_model(ModelSpec.from_dict(state.spec), state.model)}
        for name, arm in state.arms.items():
            arms[name] = restore_model(ModelSpec.from_dict(arm["spec"]), arm["model"])
        return arms

    def write_version(self, events: list[Event], *, arms: bool = True) -> int:
        """Version after ``events`` more (``arms=False``: the blob without its challengers), made serving."""
        return write_version(self.store, self.run, events, arms=arms)

    def refreshed(self, times: int) -> None:
        """Readiness: the watcher read the pointers ``times`` more times (each woken by an announcement)."""
        models = self.app.state.models
        for _ in range(times):
            before = models.synced_at
            self.store.client.publish(self.store.keys.channel, "canary")
            wait_for(lambda at=before: models.synced_at != at, 10, "serving to read the pointers again", interval=0.01)


def write_version(store: VersionStore, run: Run, events: list[Event], *, arms: bool = True) -> int:
    """The learner's state after ``events`` more, written as the learner writes it, stable (serving moves to it)."""
    state = run.feed([("events", encode_event(e)) for e in events]).state
    assert state.arms is not None
    document = state.capture().document()
    meta = store.write(
        EncodedSnapshot.of(document if arms else dataclasses.replace(document, arms={})),
        writer="test",
        lease_value=None,
        offsets={"events": {"0": sum(run.positions.values())}},
        metrics={"rolling": state.metrics.rolling_values()},
        parent=store.head(),
        extra={"arms": state.arms.summary()} if arms else {},
        stable=True,
    )
    return meta.number


@pytest.fixture
def served(stack) -> Iterator[Served]:
    _, redis_server = stack
    settings = Settings(
        model_name=f"canary-{next(_names)}",
        redis_url=f"redis://{redis_server.address}/0",
        challengers=["fast:lr=0.05"],
        api_token=TOKEN,
        promotion="immediate",
        serving_refresh_seconds=10,  # the poll is a fallback: every change here must arrive as an announcement
    )
    store, run = open_store(settings), Run(settings)
    assert write_version(store, run, EVENTS[:600]) == 1 and store.serving() == 1
    app = create_app(settings, store=store, registry=CollectorRegistry())
    with TestClient(app) as client:
        model = Served(settings, store, ControlPlane(store), app, client, run)
        model.wait_served(version=1)
        channel = store.keys.channel
        wait_for(
            lambda: dict(store.client.pubsub_numsub(channel)).get(channel.encode()), 10, "the watcher to subscribe"
        )
        yield model


def expected(model: Served, number: int, answers: list[dict[str, Any]]) -> list[float]:
    """What each answer's arm of version ``number`` says of its feature map (in the order they were asked)."""
    arms = model.arms_of(number)
    return [arms[a["arm"]].predict_proba_one(SCORED[i % len(SCORED)]) for i, a in enumerate(answers)]


def on_canary(answers: list[dict[str, Any]], users: list[str]) -> set[str]:
    return {user for user, answer in zip(users, answers, strict=True) if answer["arm"] == "fast"}


# -- the split ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", ["shop", "canary-0", "модель", "a" * 200])
def test_the_documented_bucket_gives_each_percent_its_share_of_visitors(model_name):
    buckets = [bucket(model_name, f"visitor-{i}") for i in range(100_000)]
    for percent in (1, 5, 25, 50, 90):
        share, bound = percent / 100, 6 * math.sqrt(percent / 100 * (1 - percent / 100) / len(buckets))  # 6 std errors
        assert abs(sum(b < percent * 100 for b in buckets) / len(buckets) - share) < bound
    assert bucket(model_name, "visitor-1") == bucket(model_name, "visitor-1")


def test_a_canary_splits_visitors_stickily_raising_keeps_them_and_an_abort_takes_all_back(served):
    served.control.set_canary("fast", 25, actor="alice", reason="try fast on a quarter")
    served.wait_served(canary="fast", percent=25.0)
    first = served.ask(SPLIT)
    canary = on_canary(first, SPLIT)
    assert 0.21 <= len(canary) / len(SPLIT) <= 0.29
    assert {(a["version"], a["model"]) for a in first} == {(1, served.settings.model_name)}
    assert [a["probability"] for a in first] == expected(served, 1, first)  # each arm's own model, to the last bit
    assert [a["label"] for a in first] == [a["probability"] > 0.5 for a in first]
    assert canary == {u for u in SPLIT if bucket(served.settings.model_name, u) < 2500}  # the documented bucket
    assert on_canary(served.ask(SPLIT), SPLIT) == canary  # asked again: each visitor on the same arm

    served.control.advance_canary(actor="alice", reason="fine so far")
    served.wait_served(percent=50.0)
    raised = on_canary(served.ask(SPLIT), SPLIT)
    assert canary < raised and 0.455 <= len(raised) / len(SPLIT) <= 0.545  # every 25 % visitor stays on the canary

    user = next(iter(canary))
    served.control.abort_canary(actor="alice", reason="conversion dropped")
    aborted_at = time.monotonic()
    wait_for(lambda: served.arm_of(user) == "base", 10, "the abort to reach serving", interval=0.005)
    assert time.monotonic() - aborted_at < 1.0  # announced on the control channel: no poll interval to wait out
    back = served.ask(SPLIT)
    assert {a["arm"] for a in back} == {"base"}
    assert [a["probability"] for a in back] == expected(served, 1, back)


def test_requests_without_a_user_key_or_naming_a_version_get_the_champion_or_that_version_s_own_model(served):
    served.control.set_canary("fast", 100, actor="alice", reason="everyone with a key")
    served.wait_served(canary="fast", percent=100.0)
    assert {a["arm"] for a in served.ask(USERS[:200])} == {"fast"}
    assert {a["arm"] for a in served.ask([None] * 50)} == {"base"}  # no key: the champion
    named = served.ask(USERS[:50], version=1)  # a version named: its own model, no alias, no split
    assert {a["arm"] for a in named} == {"base"}
    assert [a["probability"] for a in named] == expected(served, 1, named)
    batch = served.client.post(
        "/predict/batch", json={"instances": [{"features": FEATURES[0], "user_id": "a"}, {"features": FEATURES[0]}]}
    ).json()
    assert [p["arm"] for p in batch["predictions"]] == ["fast", "base"] and batch["version"] == 1
    v2 = {"inputs": [{"name": "PageValues", "shape": [1], "datatype": "FP64", "data": [3.5]}]}
    keyed = served.client.post(
        f"/v2/models/{served.settings.model_name}/infer", json={**v2, "parameters": {"user_id": "a"}}
    )
    plain = served.client.post(f"/v2/models/{served.settings.model_name}/infer", json=v2)  # fmt: skip
    assert keyed.json()["parameters"] == {"arm": "fast", "version": 1} and keyed.json()["model_version"] == "1"
    assert plain.json()["parameters"] == {"arm": "base", "version": 1}
    fast = served.arms_of(1)["fast"].predict_proba_one({"PageValues": 3.5})
    assert keyed.json()["outputs"][0]["data"] == [fast]
    bad = served.client.post(
        f"/v2/models/{served.settings.model_name}/infer", json={**v2, "parameters": {"user_id": 7}}
    )
    assert bad.status_code == 422


def test_a_new_serving_version_is_split_with_its_own_arms(served, caplog):
    served.control.set_canary("fast", 50, actor="alice", reason="half")
    served.wait_served(version=1, percent=50.0)
    assert served.write_version(EVENTS[600:750]) == 2
    served.wait_served(version=2, canary="fast")
    answers = served.ask(USERS[:400])
    assert {a["version"] for a in answers} == {2} and {a["arm"] for a in answers} == {"base", "fast"}
    assert [a["probability"] for a in answers] == expected(served, 2, answers)  # the new version's arms
    # a version without the canary's arm: no split (its own model answers everyone), noted once however often
    # serving looks again
    with caplog.at_level(logging.WARNING, logger="streaming.serving"):
        assert served.write_version(EVENTS[750:800], arms=False) == 3
        served.wait_served(version=3, canary=None, champion="base")
        served.refreshed(3)
    notes = [r for r in caplog.records if "not in version 3" in r.getMessage()]
    assert len(notes) == 1, caplog.text
    assert {(a["version"], a["arm"]) for a in served.ask(USERS[:200])} == {(3, "base")}


# -- the champion alias -------------------------------------------------------------------------------------------
def test_the_champion_alias_moves_every_request_to_its_arm(served, caplog):
    keys = served.store.keys
    served.store.client.set(keys.champion, "fast")  # what a promotion does: the alias moved, then announced
    served.store.client.publish(keys.channel, "champion")
    served.wait_served(champion="fast")
    answers = served.ask([*USERS[:300], *[None] * 100])
    assert {a["arm"] for a in answers} == {"fast"}
    assert [a["probability"] for a in answers] == expected(served, 1, answers)
    assert served.ask(USERS[:20], version=1)[0]["arm"] == "base"  # a named version: its own model still

    served.control.set_canary("base", 100, actor="alice", reason="back out for the keyed visitors")
    served.wait_served(champion="fast", canary="base", percent=100.0)
    assert {a["arm"] for a in served.ask(USERS[:100])} == {"base"}
    assert {a["arm"] for a in served.ask([None] * 20)} == {"fast"}

    with caplog.at_level(logging.WARNING, logger="streaming.serving"):
        served.store.client.set(keys.champion, "slow")  # an arm version 1 does not hold: its own model answers
        served.store.client.publish(keys.channel, "champion")
        served.wait_served(champion="base")
    assert "names arm 'slow', which version 1 does not hold (it holds base, fast)" in caplog.text


# -- operating it -------------------------------------------------------------------------------------------------
@pytest.fixture
def livelearn(monkeypatch, capsys, tmp_path):
    """``livelearn ARGS`` on a served model, in this process: (exit code, stdout, stderr)."""
    for name in [k for k in os.environ if k.startswith("LIVELEARN_") or k == "COLUMNS"]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(model: Served, *args: str) -> tuple[int, str, str]:
        settings = model.settings
        return run_livelearn(
            monkeypatch, capsys, *args, "--model", settings.model_name, "--redis-url", settings.redis_url
        )

    return run


def test_the_cli_sets_advances_aborts_and_shows_the_canary_and_the_audit_has_each(served, livelearn):
    code, out, _ = livelearn(served, "canary", "set", "fast", "5", "--steps", "5,25,100", "--reason", "start small")
    assert code == 0 and "canary fast at 5 % (step 1 of 5,25,100) on version 1; champion base" in out
    served.wait_served(canary="fast", percent=5.0)
    assert livelearn(served, "canary", "next", "--reason", "good", "--actor", "bob")[0] == 0
    code, out, _ = livelearn(served, "canary", "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["canary"]["percent"] == 25 and status["canary"]["step"] == 2
    assert (status["serving"], status["arms"], status["champion"]) == (1, ["base", "fast"], None)
    code, out, _ = livelearn(served, "canary", "status")
    assert code == 0 and "canary fast at 25 %" in out and "bob: good" in out
    assert livelearn(served, "canary", "abort", "--reason", "errors up")[0] == 0
    code, out, _ = livelearn(served, "canary", "abort", "--reason", "twice")
    assert code == 0 and "aborted already: nothing changed" in out
    one_line_error(livelearn(served, "canary", "next", "--reason", "x"), "was aborted; set it again")
    served.wait_served(canary=None, percent=0.0)

    entries = read_audit(served.store.client, served.store.keys, actions=set(CANARY_ACTIONS))
    got = [(e.action, e.fields["arm"], e.fields["percent"], e.fields["was"], e.reason, e.to_version) for e in entries]
    assert got == [
        ("canary", "fast", "5", "", "start small", 1),
        ("canary", "fast", "25", "5", "good", 1),
        ("canary_abort", "fast", "0", "25", "errors up", 1),
    ]
    assert entries[1].actor == "bob" and entries[1].fields["steps"] == "5,25,100"

    page = served.client.get("/metrics/").text
    model = served.settings.model_name
    assert f'livelearn_canary_aborts_total{{model="{model}"}} 1.0' in page
    assert f'livelearn_canary_percent{{arm="fast",model="{model}"}} 0.0' in page


def test_refusals_are_one_line_and_change_nothing(served, livelearn):
    one_line_error(
        livelearn(served, "canary", "set", "slow", "10", "--reason", "x"),
        "the serving version 1 holds no arm slow (it holds base, fast)",
        "nothing was changed",
    )
    one_line_error(livelearn(served, "canary", "set", "fast", "101", "--reason", "x"), "from 0 to 100, not 101")
    one_line_error(livelearn(served, "canary", "set", "fast", "5", "--steps", "50,25", "--reason", "x"), "increasing")
    one_line_error(livelearn(served, "canary", "set", "fast", "5", "--steps", "5,x", "--reason", "x"), "--steps")
    one_line_error(livelearn(served, "canary", "next", "--reason", "x"), "no canary is set")
    one_line_error(livelearn(served, "canary", "abort", "--reason", "x"), "no canary is set")
    assert served.control.canary() is None
    assert read_audit(served.store.client, served.store.keys, actions=set(CANARY_ACTIONS)) == []

    started = served.control.set_canary("fast", 5, actor="alice", reason="start")
    served.control.abort_canary(actor="bob", reason="stop")  # between alice's read and her advance
    with pytest.raises(StaleEpochError, match="the canary changed since it was read"):
        served.control.set_canary("fast", 25, actor="alice", reason="next", expected=started.at)
    assert served.control.canary().aborted  # an abort is never undone by an advance racing it

    post = served.client.post
    wrong = post("/admin/canary", json={"arm": "slow", "percent": 5, "reason": "x"}, headers=AUTH)
    assert wrong.status_code == 409 and "holds no arm slow" in wrong.json()["detail"]
    assert post("/admin/canary", json={"arm": "fast", "percent": 101, "reason": "x"}, headers=AUTH).status_code == 422
    assert post("/admin/canary", json={"arm": "fast", "percent": "5", "reason": "x"}, headers=AUTH).status_code == 422
    assert post("/admin/canary", json={"arm": "fast", "percent": 5, "reason": "x"}).status_code == 401
    assert post("/admin/canary/next", json={"reason": "x"}, headers=AUTH).status_code == 409  # aborted
    done = post("/admin/canary", json={"arm": "fast", "percent": 50, "reason": "x"}, headers=AUTH)
    assert done.status_code == 200 and done.json()["canary"]["percent"] == 50
    assert post("/admin/canary/next", json={"reason": "x"}, headers=AUTH).json()["canary"]["percent"] == 100
    last = post("/admin/canary/next", json={"reason": "x"}, headers=AUTH)
    assert last.status_code == 409 and "its last step" in last.json()["detail"]


def test_no_request_fails_during_an_abort_under_concurrent_requests(served):
    served.control.set_canary("fast", 50, actor="alice", reason="half")
    served.wait_served(canary="fast", percent=50.0)
    canary_users = [u for u in USERS[:400] if bucket(served.settings.model_name, u) < 5000]
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        for user in itertools.cycle(canary_users):
            if stop.is_set():
                return
            response = served.client.post("/predict", json={"features": FEATURES[0], "user_id": user})
            answers.append((time.monotonic(), response.status_code, response.json().get("arm", "")))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(answers) > 200, 30, "requests on the canary")
        aborted_at = time.monotonic()
        served.control.abort_canary(actor="alice", reason="abort under load")

        def switched() -> float | None:
            """When the first answer after the abort came from the champion, once 100 more came 0.5 s after it."""
            after = [(t, arm) for t, _, arm in list(answers) if t > aborted_at]
            first = next((t for t, arm in after if arm == "base"), None)
            return first if first is not None and sum(t > first + 0.5 for t, _ in after) >= 100 else None

        switched_at = wait_for(switched, 30, "the abort under load, and requests after it")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert {code for _, code, _ in answers} == {200}  # not one request failed while the route was swapped
    assert switched_at - aborted_at < 5.0  # generous: four threads share this process with the watcher
    assert {arm for t, _, arm in answers if t > switched_at + 0.5} == {"base"}  # and everyone stays back


# -- the challengers' routes ---------------------------------------------------------------------------------------
def test_the_challenger_routes_declare_promote_and_refuse_in_one_line(served):
    client, auth = served.client, {"Authorization": f"Bearer {TOKEN}"}
    shown = client.get("/challengers").json()
    assert shown["champion"] == "base" and shown["declared_at_run_time"] is None
    assert shown["arms"]["fast"]["declared"] == "fast:lr=0.05"
    assert client.post("/admin/challengers", json={"declaration": "slow:lr=0.005", "reason": "r"}).status_code == 401
    bad = client.post("/admin/challengers", json={"declaration": "slow:lr=x", "reason": "typo"}, headers=auth)
    assert bad.status_code == 422 and "lr must be a number" in bad.json()["detail"]
    for declaration, said in (
        ("old:start=version:999", "version 999 is not stored"),
        (f"cut:exclude=Month,start=version:{served.store.head()}", "declare its kind and features as the version's"),
    ):  # refused at once, as the command line does: the learner would leave it out
        refused = client.post("/admin/challengers", json={"declaration": declaration, "reason": "r"}, headers=auth)
        assert refused.status_code == 422 and said in refused.json()["detail"], refused.text
    added = client.post("/admin/challengers", json={"declaration": "slow:lr=0.005", "reason": "try"}, headers=auth)
    assert added.status_code == 200, added.text
    assert added.json()["declared_at_run_time"] == {
        "fast": "fast:lr=0.05",
        "slow": "slow:lr=0.005",
    }  # from the learner's
    missing = client.post("/admin/challengers/remove", json={"arm": "nosuch", "reason": "typo"}, headers=auth)
    assert missing.status_code == 409 and "no challenger nosuch" in missing.json()["detail"]
    early = client.post("/admin/challengers/promote", json={"arm": "fast", "reason": "soon"}, headers=auth)
    assert early.status_code == 409 and "force" in early.json()["detail"]  # 600 labels: undecided
    forced = client.post(
        "/admin/challengers/promote", json={"arm": "fast", "reason": "try it", "force": True}, headers=auth
    )
    assert forced.status_code == 200 and forced.json()["champion"] == "fast"
    served.wait_served(champion="fast")
    assert served.arm_of("anyone") == "fast"  # serving answers with the promoted arm of the version it serves
    reset = client.post("/admin/challengers/reset", json={"reason": "settings again"}, headers=auth)
    assert reset.status_code == 200 and reset.json()["declared_at_run_time"] is None
    entries = read_audit(served.store.client, served.store.keys)
    promoted = [e for e in entries if e.action == "promote_arm"]
    assert len(promoted) == 1 and "(forced: verdict undecided)" in promoted[0].reason
