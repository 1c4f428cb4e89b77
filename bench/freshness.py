"""Freshness: from an event produced to the API serving a version that includes it.

Starts an embedded broker and redis-server, then ``livelearn learn`` and ``livelearn serve`` as child
processes with **default settings** (only the addresses and the API port are set; ``--env KEY=VALUE``
overrides one for a comparison). For each rate (``--rates``, default 50, 400 and 2,000 events/s) a producer
sends the bundled dataset's events at that fixed rate for ``--seconds`` and stamps each with its send time;
once all are acknowledged their offsets are read back from the topic (one partition: the offset is the stream
position). A watcher asks the API
``POST /predict`` every 5 ms which version it serves and records when each version was first served; a
version's offsets come from its metadata. An event's freshness is the time from its send to the first time
the API served a version whose offsets lie past it. p50 / p99 / max per rate; events never served within
``--grace`` seconds after the producer stopped are counted, not hidden: the p99 is also given counting them
as never served, and the versions written past the furthest position served are listed with what they are
(a candidate the quality guard holds back, or not eligible), so a tail says whether it is latency or the guard.

Prints the figures and writes JSON (``--out``, default ``bench/results/freshness.json``). The machine is
shared and noisy: repeat. Run: ``.venv/bin/python bench/freshness.py``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from snapshotter.codec import VersionMeta
from snapshotter.states import version_states
from snapshotter.store import VersionStore, open_store
from streaming.config import Settings
from streaming.events import EventLimits, decode_event, encode_event
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack, free_port
from streaming.transport import TopicPartition, ensure_topics, make_consumer, make_producer


class ServedVersions(threading.Thread):
    """Asks the API every 5 ms which version it serves; records when each was first served and its position
    (read from its metadata at once: retention may drop it later)."""

    def __init__(self, base: str, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.base, self.settings, self.stop = base, settings, threading.Event()
        self.first_served: dict[int, tuple[float, int]] = {}  # version -> (time, stream position)
        self.created: dict[int, float] = {}  # version -> created_at (the learner's clock: the same machine)

    def run(self) -> None:
        store = open_store(self.settings)
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/predict", json={"features": {"PageValues": 1.0}})
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    number, now = int(response.json()["version"]), time.time()
                    if number not in self.first_served:
                        meta = store.meta(number)
                        self.first_served[number] = (now, meta.offsets.get(self.settings.events_topic, {}).get("0", 0))
                        self.created[number] = meta.created_at
                time.sleep(0.005)


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v2/health/ready").status_code == 200
    except httpx.HTTPError:
        return False  # not listening yet


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_s": statistics.median(ordered),
        "p99_s": ordered[max(0, round(0.99 * len(ordered)) - 1)],
        "max_s": ordered[-1],
        "n": len(ordered),
    }


def p99_counting(delays: list[float], unserved: int) -> float | None:
    """The p99 over every event sent, an unserved one counted as infinitely late (``None`` if the p99 is one)."""
    n = len(delays) + unserved
    if not n:
        return None
    rank = max(0, round(0.99 * n) - 1)
    return sorted(delays)[rank] if rank < len(delays) else None


def position_runs(positions: list[int]) -> list[list[int]]:
    """Sorted positions as [first, last] runs of consecutive ones."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return runs


def produce(settings: Settings, rate: float, seconds: float, start_index: int) -> list[tuple[float, str]]:
    """Send ``rate`` events/s for ``seconds``; returns (send time, event id) per event, all acknowledged."""
    producer = make_producer(settings, linger_ms=5)
    sent: list[tuple[float, str]] = []
    deliveries = []
    events = read_events(repeat=20)
    for _ in range(start_index):
        next(events)
    start = time.monotonic()
    for event in events:
        if len(sent) >= rate * seconds:
            break
        stamp = time.time()
        deliveries.append(
            producer.send(settings.events_topic, key=(event.user_id or "").encode(), value=encode_event(event))
        )
        sent.append((stamp, event.event_id or ""))
        ahead = len(sent) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    if not producer.flush(timeout=60) or any(d.failed() or not d.is_done for d in deliveries):
        raise RuntimeError("the broker did not acknowledge every event within 60 s")
    producer.close()
    return sent


def offsets_of(settings: Settings, ids: set[str], timeout: float = 60.0) -> dict[str, int]:
    """The offset of each event id in ``ids``, read back from the (one-partition) events topic: the stream
    position of each event, whatever the client's delivery reports hold."""
    consumer = make_consumer(settings)
    tp = TopicPartition(settings.events_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    limits = EventLimits()
    found: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(ids) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=10_000).values():
                for record in records:
                    event_id = decode_event(record.value, settings.event_format, limits).event_id
                    if event_id in ids:
                        found[event_id] = record.offset
    finally:
        consumer.close()
    if len(found) < len(ids):
        raise RuntimeError(f"read back {len(found)} of {len(ids)} events within {timeout:.0f} s")
    return found


def held_back(store: VersionStore, versions: list[VersionMeta], served_to: int, last_offset: int) -> dict[str, Any]:
    """Why events past the furthest position served (if any) were not served: the versions written past it,
    each with what it is now (``candidate``: eligible, waiting for the guard to see the data up to it calm; no
    state: not eligible, its rolling metric missed the threshold) and its rolling metrics. The guard holding a
    version back is the product working, not latency; the figures say which it was."""
    if served_to > last_offset:
        return {"unserved_tail": None}
    states = version_states(store)
    past = []
    for meta in versions:
        position = sum(sum(p.values()) for p in meta.offsets.values())
        if position > served_to:
            rolling = meta.metrics.get("rolling", {})
            past.append(
                {
                    "version": meta.number,
                    "position": position,
                    "eligible": meta.stable,
                    "states": states.get(meta.number, []),
                    "rolling": {k: rolling[k] for k in ("accuracy", "samples") if k in rolling},
                }
            )
    return {"unserved_tail": {"served_to_position": served_to, "versions_past_it": past}}


def measure(settings: Settings, watch: ServedVersions, rate: float, *, seconds: float, grace: float, skip: int) -> dict:
    store = open_store(settings)
    sent = produce(settings, rate, seconds, skip)
    offsets = offsets_of(settings, {event_id for _, event_id in sent})
    stamps = [(t, offsets[event_id]) for t, event_id in sent]
    last_offset = max(o for _, o in stamps)
    deadline = time.time() + grace
    while time.time() < deadline and not any(p > last_offset for _, p in watch.first_served.values()):
        time.sleep(0.1)
    served = sorted(watch.first_served.values())
    times = [t for t, _ in served]
    # the furthest position served by each time (a rollback could serve an older one; freshness needs the event in)
    reach: list[int] = []
    for _, position in served:
        reach.append(max(position, reach[-1] if reach else 0))
    delays, unserved, late = [], 0, []
    for stamp, offset in stamps:
        i = bisect.bisect_left(reach, offset + 1, lo=bisect.bisect_left(times, stamp))
        if i < len(served):
            delays.append(max(times[i], stamp) - stamp)
            late.append((delays[-1], offset))
        else:
            unserved += 1
    # where the time goes, per version served during this rate: its newest event sent -> written -> served
    sent_at = {o: t for t, o in stamps}
    learner_side, serving_side = [], []
    for number, (served_at, position) in watch.first_served.items():
        if position - 1 in sent_at and number in watch.created:
            learner_side.append(watch.created[number] - sent_at[position - 1])
            serving_side.append(served_at - watch.created[number])
    versions = store.list()
    return {
        **held_back(store, versions, reach[-1] if reach else 0, last_offset),
        "rate": rate,
        "events": len(stamps),
        "served_versions": sum(1 for t in times if t >= stamps[0][0]),
        "versions_stored": len(versions),
        "freshness": percentiles(delays) if delays else None,
        "unserved_within_grace": unserved,
        # the same p99 with each unserved event counted as never served (null: beyond the grace period)
        "p99_counting_unserved_s": p99_counting(delays, unserved),
        # where the slowest 1% of served events lie in the stream (runs of positions): which data, which moment
        "slowest_1pct_positions": position_runs(sorted(o for _, o in sorted(late)[-max(1, len(late) // 100) :])),
        "newest_event_sent_to_version_written": percentiles(learner_side) if learner_side else None,
        "version_written_to_served": percentiles(serving_side) if serving_side else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 400, 2000])
    parser.add_argument("--seconds", type=float, default=30, help="producing time per rate")
    parser.add_argument("--grace", type=float, default=40, help="how long to wait for the last event to be served")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for learn and serve (comparisons)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "freshness.json")
    parser.add_argument("--logs", type=Path, help="write the learn and serve logs in this directory")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.env)
    results: dict[str, Any] = {"overrides": overrides, "rates": []}
    with embedded_stack() as (broker, redis_server):
        port = free_port()
        settings = Settings(kafka_bootstrap=broker.address, redis_url=f"redis://{redis_server.address}/0")
        ensure_topics(
            settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1}
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
        env.update(
            {
                "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "LIVELEARN_REDIS_URL": settings.redis_url,
                "LIVELEARN_API_PORT": str(port),
                **overrides,
            }
        )
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "streaming", cmd],
                env=env,
                stdout=(args.logs / f"{cmd}.log").open("wb") if args.logs else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            for cmd in ("learn", "serve")
        ]
        base = f"http://127.0.0.1:{port}"
        watch = ServedVersions(base, settings)
        try:
            warm = 1500  # enough scored events for a stable version (min samples, threshold)
            produce(settings, 1000, warm / 1000, 0)
            deadline = time.time() + 90
            while time.time() < deadline and not ready(base):
                time.sleep(0.1)
            watch.start()
            skip = warm
            for rate in args.rates:
                result = measure(settings, watch, rate, seconds=args.seconds, grace=args.grace, skip=skip)
                skip += result["events"]
                results["rates"].append(result)
                f = result["freshness"] or {}
                counted = result["p99_counting_unserved_s"]
                print(
                    f"{rate:>6.0f} ev/s  {result['events']:>6} events  freshness p50 {f.get('p50_s', 0):.3f} s  "
                    f"p99 {f.get('p99_s', 0):.3f} s  max {f.get('max_s', 0):.3f} s  "
                    f"({result['served_versions']} versions served, {result['versions_stored']} stored, "
                    f"{result['unserved_within_grace']} events not served within {args.grace:.0f} s; p99 counting "
                    f"them {'beyond the grace' if counted is None else f'{counted:.3f} s'})",
                    flush=True,
                )
                tail = result["unserved_tail"]
                if tail:
                    print(f"          not served past stream position {tail['served_to_position']}; versions past it:")
                    for v in tail["versions_past_it"]:
                        print(
                            f"            {v['version']} at {v['position']}: "
                            f"{', '.join(v['states']) or ('eligible' if v['eligible'] else 'not eligible')}, "
                            f"rolling {v['rolling']}"
                        )
                for part in ("newest_event_sent_to_version_written", "version_written_to_served"):
                    p = result[part] or {}
                    print(
                        f"          {part.replace('_', ' ')}: p50 {p.get('p50_s', 0):.3f} s  "
                        f"p99 {p.get('p99_s', 0):.3f} s"
                    )
        finally:
            watch.stop.set()
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    results["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "note": "shared 2-core VM, other jobs running: figures are noisy",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
