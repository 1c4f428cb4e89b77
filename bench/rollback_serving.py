"""Rollback latency and serving latency on loopback, against real processes.

Starts an embedded broker and redis-server, then `livelearn learn`, `livelearn monitor` and
`livelearn serve` as child processes (as `livelearn up` does), and measures:

* **automatic rollback**: a burst of coin-flip labels is streamed; from the rollback's decision (its audit
  entry: the learner's data-quality incident, as the labels stop agreeing with the scores, or the monitor's
  confirmed breach) to the learner running on the new lineage (the time the learner applied it, from its status)
  and to the API answering with the rollback's serving version;
* **manual rollbacks** (20, alternating between two stable versions, so the serving version really
  changes each time): the same two latencies;
* **serving latency**: 2,000 sequential `POST /predict` and 2,000 `POST /v2/models/{name}/infer` (one row)
  over one keep-alive connection: p50 / p99 / max.

Prints the figures and writes JSON (``--out``). Run: ``.venv/bin/python bench/rollback_serving.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from snapshotter.audit import read_audit
from snapshotter.control import ControlPlane
from snapshotter.store import open_store
from streaming.config import Settings
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack, free_port
from streaming.local.replay import flip_labels, replay
from streaming.transport import ensure_topics, make_producer

ENV = {
    "LIVELEARN_STATUS_INTERVAL_SECONDS": "0.2",
    "LIVELEARN_MONITOR_CHECK_INTERVAL_SECONDS": "0.2",
    "LIVELEARN_MONITOR_PATIENCE": "2",
    "LIVELEARN_SNAPSHOT_EVERY_EVENTS": "250",
    "LIVELEARN_MONITOR_COOLDOWN_SECONDS": "600",
    "LIVELEARN_API_TOKEN": "bench",
}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(0.99 * len(ordered)) - 1] * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "n": len(ordered),
    }


def wait_ready(base: str, procs: list[subprocess.Popen], timeout: float) -> None:
    """Poll ``/v2/health/ready`` until it is 200; a refused connection only means `serve` is not listening yet.
    Fails at once if a child exits, and after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [proc.args for proc in procs if proc.poll() is not None]
        if dead:
            raise RuntimeError(f"a child process exited before serving was ready: {dead}")
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"serving not ready within {timeout:.0f} s at {base}")


class VersionWatch(threading.Thread):
    """Polls the API every 5 ms and records when each served version was first seen."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.seen, self.stop = base, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            last = None
            while not self.stop.is_set():
                version = client.post("/predict", json={"features": {"PageValues": 1.0}}).json()["version"]
                if version != last:
                    self.seen.append((time.time(), version))
                    last = version
                time.sleep(0.005)

    def first_after(self, t: float, version: int) -> float | None:
        current = [v for ts, v in self.seen if ts <= t][-1:] or [None]
        if current[0] == version:
            return t  # already serving it
        return next((ts for ts, v in self.seen if ts > t and v == version), None)


def run(args) -> dict:
    with embedded_stack() as (broker, redis_server):
        port = free_port()
        settings = Settings(
            kafka_bootstrap=broker.address, redis_url=f"redis://{redis_server.address}/0", api_port=port
        )
        ensure_topics(
            settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1}
        )
        env = {
            **os.environ,
            **ENV,
            "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LIVELEARN_REDIS_URL": settings.redis_url,
            "LIVELEARN_API_PORT": str(port),
        }
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "streaming", cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for cmd in ("learn", "monitor", "serve")
        ]
        store = open_store(settings)
        base = f"http://127.0.0.1:{port}"
        try:
            producer = make_producer(settings, linger_ms=5)
            replay(producer, settings.events_topic, read_events(limit=2500), rate=2000)
            wait_ready(base, procs, timeout=60)
            watch = VersionWatch(base)
            watch.start()
            burst = flip_labels(read_events(limit=9000), 2500, 1500, probability=0.5, seed=1)
            replay(producer, settings.events_topic, list(burst)[2500:], rate=1500)
            producer.close()
            time.sleep(2)

            def status() -> dict:
                return store.status()

            auto = read_audit(store.client, store.keys, actions={"rollback"})
            automatic = None
            if auto:
                rb = auto[0]
                applied = status()["last_rollback"]["applied_at"] if status().get("last_rollback") else None
                served = watch.first_after(rb.time, int(rb.fields["serving_to"]))
                automatic = {
                    "decision_to_learner_ms": (applied - rb.time) * 1e3 if applied else None,
                    "decision_to_serving_ms": (served - rb.time) * 1e3 if served else None,
                    "from": rb.from_version,
                    "to": rb.to_version,
                }
            control = ControlPlane(store)
            stable = store.stable_numbers()
            targets = [stable[-2], stable[-1]] if len(stable) >= 2 else stable
            learner_ms, serving_ms = [], []
            for i in range(args.manual):
                target = targets[i % len(targets)]
                epoch = store.epoch()
                t0 = time.time()
                control.rollback(to=target, actor="bench", reason="latency measurement")
                while status()["epoch"] <= epoch:
                    time.sleep(0.002)
                learner_ms.append((status()["last_rollback"]["applied_at"] - t0) * 1e3)
                while not watch.first_after(t0, target):
                    time.sleep(0.002)
                serving_ms.append((watch.first_after(t0, target) - t0) * 1e3)
                time.sleep(0.3)
            watch.stop.set()

            timings = {"predict": [], "infer": []}
            body = {"features": next(iter(read_events(limit=1))).features}
            infer = {
                "inputs": [
                    {
                        "name": k,
                        "shape": [1],
                        "datatype": "BYTES" if isinstance(v, str) else "BOOL" if isinstance(v, bool) else "FP64",
                        "data": [v],
                    }
                    for k, v in body["features"].items()
                ]
            }
            with httpx.Client(base_url=base, timeout=5) as client:
                for _ in range(200):  # warm-up
                    client.post("/predict", json=body)
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    client.post("/predict", json=body).raise_for_status()
                    timings["predict"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    client.post(f"/v2/models/{settings.model_name}/infer", json=infer).raise_for_status()
                    timings["infer"].append(time.perf_counter() - t0)
            return {
                "automatic_rollback": automatic,
                "manual_rollback": {
                    "to_learner": percentiles([x / 1e3 for x in learner_ms]),
                    "to_serving": percentiles([x / 1e3 for x in serving_ms]),
                },
                "serving_latency": {
                    "predict": percentiles(timings["predict"]),
                    "v2_infer": percentiles(timings["infer"]),
                },
            }
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manual", type=int, default=20, help="manual rollbacks to time")
    parser.add_argument("--requests", type=int, default=2000, help="requests per route")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rollback_serving.json")
    args = parser.parse_args()
    result = run(args)
    result["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    auto = result["automatic_rollback"]
    if auto:
        print(
            f"automatic rollback v{auto['from']}→v{auto['to']}: decision → learner "
            f"{auto['decision_to_learner_ms']:.0f} ms, decision → serving {auto['decision_to_serving_ms']:.0f} ms"
        )
    else:
        print("automatic rollback: none happened (check the burst)")
    manual = result["manual_rollback"]
    for what in ("to_learner", "to_serving"):
        m = manual[what]
        print(
            f"manual rollback {what:<11} p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms, "
            f"max {m['max_ms']:.0f} ms over {m['n']}"
        )
    for route, m in result["serving_latency"].items():
        print(
            f"serving {route:<9} p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, max {m['max_ms']:.2f} ms "
            f"over {m['n']} sequential requests"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
