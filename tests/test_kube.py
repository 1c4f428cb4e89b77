"""The Kubernetes integration with the real ``kubernetes`` client against an in-process API (kmock's emulator,
``tests/kubeapi.py``) and, where versions and the audit stream are involved, the session's real redis-server:
the Events' fields, the learner's pod role label, the declarative pin ConfigMap, API errors counted and never
fatal, and the `learn` / `monitor` commands wired to it."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from conftest import produce, store_for, wait_for, wait_until_running
from kubeapi import NAMESPACE, KubeEmulator, emulator
from prometheus_client import CollectorRegistry

from snapshotter.audit import read_audit
from snapshotter.challengers import ArmControl
from snapshotter.codec import SnapshotState
from snapshotter.control import ControlPlane
from streaming.config import Settings
from streaming.health import Heartbeat
from streaming.kube import start_for_learner, start_for_monitor
from streaming.kube.client import wanted
from streaming.kube.event_emitter import event_name
from streaming.kube.labels import ROLE_LABEL
from streaming.kube.worker import KubeWorker
from streaming.local.dataset import read_events
from streaming.model import ModelSpec

pytestmark = pytest.mark.first_lane

STATE = SnapshotState(spec=ModelSpec().to_dict(), model={}, metrics={}, counters={"events_seen": 1})
POD = {"POD_NAME": "shop-livelearn-learner-0", "POD_NAMESPACE": NAMESPACE, "POD_UID": "pod-uid-1"}
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)$")  # what the API server parses


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    yield from emulator()


@pytest.fixture
def workers() -> Iterator[list[KubeWorker]]:
    started: list[KubeWorker] = []
    yield started
    for worker in started:
        worker.stop()


def write(store, n: int = 1) -> list[int]:
    return [
        store.write(
            STATE,
            writer="w",
            lease_value=None,
            offsets={"events": {"0": i}},
            metrics={"rolling": {"accuracy": 0.9}},
            parent=store.head(),
            stable=True,
            epoch=store.epoch(),
        ).number
        for i in range(n)
    ]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_the_integration_is_on_in_a_pod_or_when_asked(tmp_path):
    token = tmp_path / "token"
    assert not wanted("auto", str(token)) and wanted("on", str(token))
    token.write_text("t0ken")
    assert wanted("auto", str(token)) and not wanted("off", str(token))
    registry = CollectorRegistry()
    assert start_for_learner(Settings(kubernetes="off"), Heartbeat(60), registry=registry) is None
    # declared anyway, so /metrics always lists them (README table)
    assert value(registry, "livelearn_kubernetes_dropped_total", model="default") == 0.0


def test_a_client_that_cannot_be_configured_is_counted_and_not_fatal(tmp_path):
    registry = CollectorRegistry()
    missing = str(tmp_path / "no-kubeconfig")
    assert start_for_learner(Settings(kubernetes="on"), Heartbeat(60), registry=registry, kubeconfig=missing) is None
    assert value(registry, "livelearn_kubernetes_api_errors_total", model="default", operation="configure") == 1


def test_the_learner_labels_its_pod_with_its_role_and_reports_a_takeover(kube, workers, tmp_path):
    kube.create_pod(POD["POD_NAME"], POD["POD_UID"])
    heartbeat, registry = Heartbeat(60), CollectorRegistry()
    settings = Settings(model_name="shop", kubernetes="on")  # no Deployment named: Events regard the pod
    worker = start_for_learner(
        settings, heartbeat, registry=registry, kubeconfig=kube.kubeconfig(tmp_path), environ=POD
    )
    assert worker is not None
    workers.append(worker)

    heartbeat.beat("standby")
    wait_for(lambda: kube.pod_labels(POD["POD_NAME"]).get(ROLE_LABEL) == "standby", 30, "the standby label")
    assert kube.events_list() == []
    heartbeat.beat("active")
    wait_for(lambda: kube.pod_labels(POD["POD_NAME"]).get(ROLE_LABEL) == "active", 30, "the active label")
    (event,) = wait_for(kube.events_list, 30, "the takeover Event")
    assert event["reason"] == "LearnerTakeover" and event["type"] == "Normal" and event["action"] == "Takeover"
    assert "shop-livelearn-learner-0 is now the active learner (was standby)" in event["note"]
    assert event["regarding"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": POD["POD_NAME"],
        "namespace": NAMESPACE,
        "uid": "pod-uid-1",
    }
    assert event["reportingController"] == "livelearn.io/learner"
    assert event["reportingInstance"] == POD["POD_NAME"]
    assert MICROTIME.match(event["eventTime"])
    assert kube.pod_labels(POD["POD_NAME"])["app"] == "livelearn"  # a merge patch: other labels stay

    patches = kube.requests_to("PATCH", "/pods/")
    heartbeat.beat("waiting", ready=False)  # an outage is no new role: nothing is patched or reported
    heartbeat.beat("active")
    done = threading.Event()
    worker.submit("test", done.set)
    assert done.wait(30)
    wait_for(
        lambda: value(registry, "livelearn_kubernetes_events_total", model="shop", reason="LearnerTakeover"),
        10,
        "the takeover to be counted",
    )
    assert kube.requests_to("PATCH", "/pods/") == patches and len(kube.events_list()) == 1


def test_the_monitor_reports_each_audited_action_once_with_two_monitors(make_settings, kube, workers, tmp_path):
    settings = make_settings(kubernetes="on", kubernetes_deployment="shop-livelearn-monitor")
    kube.create_deployment("shop-livelearn-monitor", "deploy-uid-7")
    store = store_for(settings)
    write(store, 3)
    registries = [CollectorRegistry(), CollectorRegistry()]
    for i, registry in enumerate(registries):
        worker = start_for_monitor(
            settings,
            store_for(settings),
            registry=registry,
            kubeconfig=kube.kubeconfig(tmp_path),
            environ={**POD, "POD_NAME": f"monitor-{i}"},
        )
        assert worker is not None
        workers.append(worker)
    # each monitor follows the audit stream from where it was when it started
    control = ControlPlane(store)
    control.rollback(
        to=2,
        actor="monitor@m-0",
        reason="rolling accuracy 0.6 vs threshold 0.8 over 1000 events",
        metrics={"accuracy": 0.6},
        automatic=True,
    )
    control.freeze(actor="monitor@m-0", reason="3 rollbacks within 20000 events")
    control.resume(actor="ops@host", reason="data fixed")
    control.pin(1, actor="ops@host", reason="hold for the sale")
    control.unpin(actor="ops@host", reason="sale over")

    wait_for(lambda: kube.requests_to("POST", "/events") >= 10, 60, "both monitors to create every Event")
    events = {e["reason"]: e for e in kube.events_list()}
    assert sorted(events) == ["LearningFrozen", "LearningResumed", "Pinned", "Rollback", "Unpinned"]
    emitted = sum(
        value(r, "livelearn_kubernetes_events_total", model=settings.model_name, reason=reason)
        for r in registries
        for reason in events
    )
    assert emitted == 5  # the second create of each name was a 409: ignored, not counted, not an error
    assert (
        sum(
            value(r, "livelearn_kubernetes_api_errors_total", model=settings.model_name, operation="create_event")
            for r in registries
        )
        == 0
    )

    rollback = events["Rollback"]
    assert rollback["type"] == "Warning" and rollback["action"] == "Rollback"
    assert rollback["note"] == (
        "rollback: versions 3→2; accuracy 0.6000 (threshold 0.8); actor monitor@m-0; "
        "rolling accuracy 0.6 vs threshold 0.8 over 1000 events"
    )
    assert rollback["regarding"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shop-livelearn-monitor",
        "namespace": NAMESPACE,
        "uid": "deploy-uid-7",
    }
    assert rollback["reportingController"] == "livelearn.io/monitor"
    assert rollback["reportingInstance"] in {"monitor-0", "monitor-1"}
    assert MICROTIME.match(rollback["eventTime"])
    entry_id = read_audit(store.client, store.keys, actions={"rollback"})[-1].id
    assert rollback["metadata"]["name"] == event_name(settings.model_name, entry_id)  # the same in both monitors
    assert rollback["metadata"]["name"].endswith(entry_id.replace("-", "."))
    assert events["LearningFrozen"]["type"] == "Warning" and events["Pinned"]["type"] == "Normal"
    assert events["Pinned"]["note"] == "pin: versions 2→1; actor ops@host; hold for the sale"


def test_the_monitor_reports_the_challengers_promotions_declarations_and_canary(make_settings, kube, workers, tmp_path):
    settings = make_settings(kubernetes="on", kubernetes_deployment="shop-livelearn-monitor", promotion="immediate")
    kube.create_deployment("shop-livelearn-monitor", "deploy-uid-7")
    store = store_for(settings)
    store.write(  # serving: a version that holds the challenger too (a canary splits the serving version's arms)
        STATE,
        writer="w",
        lease_value=None,
        offsets={"events": {"0": 1}},
        metrics={},
        parent=None,
        stable=True,
        extra={"arms": {"fast": {}}},
    )
    worker = start_for_monitor(
        settings, store_for(settings), registry=CollectorRegistry(), kubeconfig=kube.kubeconfig(tmp_path), environ=POD
    )
    assert worker is not None
    workers.append(worker)
    arms, control = ArmControl(store), ControlPlane(store)
    arms.declare("add", "fast", "fast:lr=0.05", seed={}, actor="ops@host", reason="try a faster rate")
    control.set_canary("fast", 25, steps=(5, 25, 100), actor="ops@host", reason="a quarter")
    control.abort_canary(actor="ops@host", reason="errors up")
    gain = {"relative_gain": 0.031, "gain_lower": 0.012, "gain_upper": 0.05, "labels": 2345, "decision": "promote"}
    arms.promote("fast", actor="alice", reason="3 % lower log loss", current="base", metrics=gain)
    arms.promote("base", actor="bob", reason="back out", current="fast")
    arms.declare("remove", "fast", seed={}, actor="bob", reason="seen enough")
    arms.declare("reset", seed={}, actor="bob", reason="the settings again")

    wait_for(lambda: len(kube.events_list()) >= 7, 60, "an Event for each action")
    # in the audit stream's order: the name ends with the entry's id, <ms>.<sequence> (all in a few milliseconds)
    got = sorted(
        (
            tuple(map(int, e["metadata"]["name"].rsplit("-", 1)[1].split("."))),
            e["reason"],
            e["type"],
            e["action"],
            e["note"],
        )
        for e in kube.events_list()
    )
    assert [row[1:] for row in got] == [
        (
            "ChallengerAdded",
            "Normal",
            "AddChallenger",
            "challenger_add: fast (fast:lr=0.05); actor ops@host; try a faster rate",
        ),
        (
            "CanarySet",
            "Normal",
            "Canary",
            "canary: fast at 25 % (was 0 %; steps 5,25,100) of version 1; actor ops@host; a quarter",
        ),
        (
            "CanaryAborted",
            "Warning",
            "AbortCanary",
            "canary_abort: fast 25 %→0 %, everyone on the champion (version 1); actor ops@host; errors up",
        ),
        (
            "ChallengerPromoted",
            "Normal",
            "Promote",
            "promote_arm: champion base→fast; gain +3.1 % [+1.2 %, +5.0 %] over 2,345 labels; "
            "the canary on fast ended; actor alice; 3 % lower log loss",  # the aborted canary: its hash removed
        ),
        ("ChallengerPromoted", "Normal", "Promote", "promote_arm: champion fast→base; actor bob; back out"),
        (
            "ChallengerRemoved",
            "Normal",
            "RemoveChallenger",
            "challenger_remove: fast (was fast:lr=0.05); actor bob; seen enough",
        ),
        (
            "ChallengersReset",
            "Normal",
            "ResetChallengers",
            "challengers_reset: the settings' declarations (LIVELEARN_CHALLENGERS) again; actor bob; "
            "the settings again",
        ),
    ]


def test_a_configmap_pin_is_applied_once_per_change_and_audited(make_settings, kube, workers, tmp_path):
    name = "shop-livelearn-pin"
    settings = make_settings(kubernetes="on", kubernetes_pin_configmap=name, kubernetes_poll_seconds=0.2)
    store = store_for(settings)
    write(store, 3)
    kube.set_pin(name, "", create=True)
    kubeconfig = kube.kubeconfig(tmp_path)

    def start() -> None:
        worker = start_for_monitor(
            settings, store_for(settings), registry=CollectorRegistry(), kubeconfig=kubeconfig, environ=POD
        )
        assert worker is not None
        workers.append(worker)

    def polls_after(n: int) -> bool:  # readiness: the monitor read the ConfigMap n more times
        start_count = kube.requests_to("GET", f"/configmaps/{name}")
        return wait_for(lambda: kube.requests_to("GET", f"/configmaps/{name}") >= start_count + n, 30, "polls")

    start()
    kube.set_pin(name, "2")
    wait_for(lambda: store.pinned() == 2, 30, "the ConfigMap's pin to be applied")
    (entry,) = read_audit(store.client, store.keys, actions={"pin"})
    assert entry.actor == f"k8s:configmap/{name}" and entry.to_version == 2
    assert entry.reason == f"ConfigMap {NAMESPACE}/{name} sets pinned: 2"

    # the CLI unpins: the ConfigMap did not change, so it is not applied again (the last change wins)
    ControlPlane(store).unpin(actor="ops@host", reason="follow the newest again")
    polls_after(3)
    assert store.pinned() is None

    kube.set_pin(name, "two")  # not a number: a Warning Event, nothing changes
    warning = wait_for(lambda: [e for e in kube.events_list() if e["reason"] == "InvalidPin"], 30, "InvalidPin")[0]
    assert warning["type"] == "Warning" and "'two', not a version number" in warning["note"]
    kube.set_pin(name, "99")  # no such version: refused, said why
    refused = wait_for(lambda: [e for e in kube.events_list() if e["reason"] == "PinRefused"], 30, "PinRefused")[0]
    assert refused["type"] == "Warning" and "asks for version 99: refused" in refused["note"]
    assert store.pinned() is None and len(read_audit(store.client, store.keys, actions={"pin"})) == 1

    kube.set_pin(name, "1")
    wait_for(lambda: store.pinned() == 1, 30, "the new pin")
    wait_for(
        lambda: [e for e in kube.events_list() if e["reason"] == "Pinned"], 30, "the Pinned Event (from the audit)"
    )

    # a monitor restarting after a CLI unpin finds what the ConfigMap last applied in the audit stream: the CLI's
    # change stands
    for worker in workers:
        worker.stop()
    ControlPlane(store).unpin(actor="ops@host", reason="incident over")
    start()
    polls_after(3)
    assert store.pinned() is None
    kube.set_pin(name, "")  # emptied while nothing is pinned: nothing to do, no audit entry
    polls_after(3)
    assert [e.actor for e in read_audit(store.client, store.keys, actions={"unpin"})] == ["ops@host", "ops@host"]


def test_api_errors_and_timeouts_are_counted_and_never_stop_the_worker(make_settings, kube, workers, tmp_path):
    import asyncio

    import kmock

    name = "shop-livelearn-pin"
    kube.create_pod(POD["POD_NAME"], POD["POD_UID"])
    kube.set_pin(name, "1", create=True)

    def fail(handler) -> None:
        handler[kmock.method.POST, kmock.resource("events.k8s.io/v1/events")] << 500
        handler[kmock.method.PATCH, kmock.resource("v1/pods")] << 403
        handler[kmock.method.GET, kmock.resource("v1/configmaps")] << (lambda: asyncio.sleep(30))  # hangs

    kube.call(fail)
    settings = make_settings(
        kubernetes="on", kubernetes_pin_configmap=name, kubernetes_poll_seconds=0.2, kubernetes_timeout_seconds=0.5
    )
    store = store_for(settings)
    write(store, 1)
    heartbeat, registry = Heartbeat(60), CollectorRegistry()
    kubeconfig = kube.kubeconfig(tmp_path)
    learner = start_for_learner(settings, heartbeat, registry=registry, kubeconfig=kubeconfig, environ=POD)
    monitor_registry = CollectorRegistry()
    monitor = start_for_monitor(settings, store, registry=monitor_registry, kubeconfig=kubeconfig, environ=POD)
    assert learner is not None and monitor is not None
    workers.extend([learner, monitor])
    heartbeat.beat("active")
    ControlPlane(store).freeze(actor="ops@host", reason="maintenance")

    def errors(reg: CollectorRegistry, operation: str) -> float:
        return value(reg, "livelearn_kubernetes_api_errors_total", model=settings.model_name, operation=operation)

    wait_for(lambda: errors(registry, "label_pod") >= 1, 30, "the 403 on the pod patch to be counted")
    wait_for(lambda: errors(registry, "create_event") >= 1, 30, "the 500 on the takeover Event to be counted")
    wait_for(lambda: errors(monitor_registry, "create_event") >= 1, 30, "the 500 on the freeze Event to be counted")
    wait_for(lambda: errors(monitor_registry, "pin_configmap") >= 2, 30, "the ConfigMap read timeouts to be counted")
    assert store.pinned() is None  # never read: nothing applied
    for worker in (learner, monitor):  # the threads go on
        done = threading.Event()
        assert worker.submit("test", done.set) and done.wait(30)


def test_the_learn_and_monitor_commands_run_the_integration(make_settings, learners, kube, tmp_path):
    pin = "shop-livelearn-pin"
    settings = make_settings(kubernetes="on", snapshot_every_events=100)
    kube.create_pod(POD["POD_NAME"], POD["POD_UID"])
    kube.create_deployment("shop-livelearn-learner", "learner-deploy-uid")
    kube.create_deployment("shop-livelearn-monitor", "monitor-deploy-uid")
    kube.set_pin(pin, "", create=True)
    env = {"KUBECONFIG": kube.kubeconfig(tmp_path), "POD_NAMESPACE": NAMESPACE}
    learner = learners(
        settings,
        **env,
        POD_NAME=POD["POD_NAME"],
        POD_UID=POD["POD_UID"],
        LIVELEARN_KUBERNETES_DEPLOYMENT="shop-livelearn-learner",
    )
    monitor = learners(
        settings,
        command="monitor",
        **env,
        POD_NAME="shop-livelearn-monitor-0",
        LIVELEARN_KUBERNETES_DEPLOYMENT="shop-livelearn-monitor",
        LIVELEARN_KUBERNETES_PIN_CONFIGMAP=pin,
        LIVELEARN_KUBERNETES_POLL_SECONDS="0.2",
    )
    produce(settings, read_events(limit=300))
    wait_until_running(settings, monitors=1)
    store = store_for(settings)
    head = wait_for(store.head, 60, "a first version")

    wait_for(lambda: kube.pod_labels(POD["POD_NAME"]).get(ROLE_LABEL) == "active", 60, "the learner's role label")
    (takeover,) = wait_for(lambda: [e for e in kube.events_list() if e["reason"] == "LearnerTakeover"], 60, "takeover")
    assert takeover["regarding"]["name"] == "shop-livelearn-learner"
    assert takeover["regarding"]["uid"] == "learner-deploy-uid"
    assert takeover["reportingController"] == "livelearn.io/learner"

    kube.set_pin(pin, str(head))
    wait_for(lambda: store.pinned() == head, 60, "the ConfigMap's pin, applied by the monitor")
    (pinned,) = wait_for(lambda: [e for e in kube.events_list() if e["reason"] == "Pinned"], 60, "the Pinned Event")
    assert pinned["regarding"]["uid"] == "monitor-deploy-uid"
    assert pinned["reportingInstance"] == "shop-livelearn-monitor-0"
    assert f"actor k8s:configmap/{pin}" in pinned["note"]
    learner.terminate()
    monitor.terminate()
