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
(a candidate the quality guard holds back, or not eligible) with the reason the learner's status gives (``held``),
so a tail says whether it is latency or the guard, and why.

**Labels that come later** (``--label-delay 30s..2m``; off by default, so the figures above stay comparable): learn
and serve run with the label join (``LIVELEARN_LABEL_WAIT``, default twice the longest delay, and a labels topic);
the events go without their labels and each label (a :class:`~streaming.events.Label`, keyed like its event) goes to
the labels topic a seeded random delay of *event time* later (:func:`~streaming.local.replay.delay_labels`). Every
record is sent when its ``ts`` is due on a clock that runs ``rate`` times faster than the wall clock (the dataset's
sessions are one second of event time apart): at 400 events/s, ``30s..2m`` of event time is 75 to 300 ms of wall
time; the rates default to 50 and 400 events/s. The learner learns each pair when it reads the label record (or its
event, for a label read first), so a label's freshness is the time from the label record's send to the first time
the API served a version whose offsets lie past that record on the labels topic and past its event on the events
topic; also given from the *event's* send (the delay included). Labels not served within the grace are counted, with
what the label join did meanwhile (matched, expired, late, orphans: from the versions' metadata) and the versions
past the furthest position served.

Prints the figures and writes JSON (``--out``, default ``bench/results/freshness.json``, with labels
``freshness-labels.json``). The machine is shared and noisy: repeat. Run: ``.venv/bin/python bench/freshness.py``.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
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
from streaming.events import EventLimits, Label, decode_event, encode_event, encode_label
from streaming.learner.join import COUNTS
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack, free_port
from streaming.local.replay import delay_labels, parse_delay
from streaming.transport import TopicPartition, ensure_topics, make_consumer, make_producer


class ServedVersions(threading.Thread):
    """Asks the API every 5 ms which version it serves; records when each was first served and its position
    (read from its metadata at once: retention may drop it later)."""

    def __init__(self, base: str, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.base, self.settings, self.stop = base, settings, threading.Event()
        self.first_served: dict[int, tuple[float, int]] = {}  # version -> (time, stream position)
        self.created: dict[int, float] = {}  # version -> created_at (the learner's clock: the same machine)
        self.label_positions: dict[int, int] = {}  # version -> its position on the labels topic (the join on)

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
                        if self.settings.labels.topic:
                            self.label_positions[number] = meta.offsets.get(self.settings.labels.topic, {}).get("0", 0)
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


def offsets_of(settings: Settings, ids: set[str], timeout: float = 60.0, topic: str | None = None) -> dict[str, int]:
    """The offset of each event id in ``ids``, read back from the (one-partition) events topic (or ``topic``: the
    labels topic, whose records are labels): the stream position of each record, whatever the client's delivery
    reports hold."""
    consumer = make_consumer(settings)
    tp = TopicPartition(topic or settings.events_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    limits = EventLimits()
    found: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < len(ids) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=10_000).values():
                for record in records:
                    event_id = decode_event(record.value, settings.event_format, limits, labels=True).event_id
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
    status = store.status() or {}
    held = status.get("held")  # the learner's own account of what it holds back, and why
    return {"unserved_tail": {"served_to_position": served_to, "versions_past_it": past, "held": held}}


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


def produce_with_labels(
    settings: Settings, rate: float, seconds: float, start_index: int, delay: tuple[int, int]
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """Send ``rate`` events/s for ``seconds`` without their labels, and each label to the labels topic a random delay
    of event time later (:func:`delay_labels`, seed 0), keyed like its event; every record when its ``ts`` is due
    on a clock ``rate`` times faster than the wall clock (the sessions are 1 s of event time apart), so the labels
    due after the last event go out over the longest delay / ``rate`` after it. Returns (send time, event id) per
    event and per label, all acknowledged."""
    assert settings.labels.topic
    events = list(itertools.islice(read_events(repeat=20), start_index, start_index + math.ceil(rate * seconds)))
    keys = {event.event_id: (event.user_id or event.event_id).encode() for event in events}
    producer = make_producer(settings, linger_ms=5)
    sent: list[tuple[float, str]] = []
    labels: list[tuple[float, str]] = []
    deliveries = []
    start, first_ts = time.monotonic(), events[0].ts
    for record in delay_labels(events, delay):
        ahead = (record.ts - first_ts) / 1000 / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        stamp = time.time()
        if isinstance(record, Label):
            deliveries.append(producer.send(settings.labels.topic, encode_label(record), key=keys[record.event_id]))
            labels.append((stamp, record.event_id))
        else:
            deliveries.append(producer.send(settings.events_topic, encode_event(record), key=keys[record.event_id]))
            sent.append((stamp, record.event_id))
    if not producer.flush(timeout=60) or any(d.failed() or not d.is_done for d in deliveries):
        raise RuntimeError("the broker did not acknowledge every event and label within 60 s")
    producer.close()
    return sent, labels


def join_figures(
    store: VersionStore, settings: Settings, events_read: int = 0, timeout: float = 30.0
) -> dict[str, int]:
    """The label join's counts, pending events and orphans in the newest version's metadata (zeros before any),
    once a version has read ``events_read`` events (or after ``timeout``: what the newest has)."""
    deadline = time.monotonic() + timeout
    while True:
        head = store.head()
        meta = store.meta(head) if head is not None else None
        read = meta.offsets.get(settings.events_topic, {}).get("0", 0) if meta else 0
        if read >= events_read or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    figures = (meta.extra.get("labels") or {}) if meta else {}
    return {name: int(figures.get(name) or 0) for name in (*COUNTS, "pending", "orphans")}


def label_read(meta: VersionMeta, settings: Settings) -> int:
    """How far ``meta`` read the labels topic (its position on partition 0)."""
    return meta.offsets.get(settings.labels.topic or "", {}).get("0", 0)


def measure_labels(
    settings: Settings,
    watch: ServedVersions,
    rate: float,
    *,
    seconds: float,
    grace: float,
    skip: int,
    delay: tuple[int, int],
) -> dict[str, Any]:
    """One rate with labels sent after their events (see the module docstring)."""
    assert settings.labels.topic
    store = open_store(settings)
    counts_before = join_figures(store, settings, skip)  # the events before this rate all read
    events, labels = produce_with_labels(settings, rate, seconds, skip, delay)
    event_at = offsets_of(settings, {event_id for _, event_id in events})
    label_at = offsets_of(settings, {event_id for _, event_id in labels}, topic=settings.labels.topic)
    event_sent = {event_id: t for t, event_id in events}
    # per label: its send, its record's offset, its event's offset and send
    stamps = [(t, label_at[event_id], event_at[event_id], event_sent[event_id]) for t, event_id in labels]
    last_label, last_event = max(s[1] for s in stamps), max(event_at.values())

    def reaches_end() -> bool:
        return any(
            p > last_event and watch.label_positions.get(n, 0) > last_label for n, (_, p) in watch.first_served.items()
        )

    deadline = time.time() + grace
    while time.time() < deadline and not reaches_end():
        time.sleep(0.1)
    served = sorted((t, p, watch.label_positions.get(n, 0)) for n, (t, p) in watch.first_served.items())
    times = [t for t, _, _ in served]
    # the furthest positions served by each time, per topic (a rollback could serve an older one)
    reach_events = list(itertools.accumulate((p for _, p, _ in served), max))
    reach_labels = list(itertools.accumulate((q for _, _, q in served), max))
    from_label, from_event, unserved = [], [], []
    for stamp, label_offset, event_offset, event_stamp in stamps:
        i = max(
            bisect.bisect_left(times, stamp),
            bisect.bisect_left(reach_labels, label_offset + 1),
            bisect.bisect_left(reach_events, event_offset + 1),
        )
        if i < len(served):
            from_label.append(max(times[i], stamp) - stamp)
            from_event.append(times[i] - event_stamp)
        else:
            unserved.append((label_offset, event_offset))
    # where the time goes, per version served during this rate: its newest label sent -> written -> served
    label_sent_at = {offset: t for t, offset, _, _ in stamps}
    learner_side, serving_side = [], []
    for number, (served_at, _) in watch.first_served.items():
        newest = watch.label_positions.get(number, 0) - 1
        if newest in label_sent_at and number in watch.created:
            learner_side.append(watch.created[number] - label_sent_at[newest])
            serving_side.append(served_at - watch.created[number])
    counts_after = join_figures(store, settings)
    versions = store.list()
    served_to = max((p + q for _, p, q in served), default=0)
    wait = settings.labels.wait_seconds
    return {
        # a version's position here is its events + labels offsets; everything was served past last + 1
        **held_back(store, versions, served_to, last_event + last_label + 1),
        "rate": rate,
        "events": len(events),
        "labels": len(labels),
        "label_delay_event_time_s": [delay[0] / 1000, delay[1] / 1000],
        "label_delay_wall_s": [delay[0] / 1000 / rate, delay[1] / 1000 / rate],
        "label_wait_event_time_s": wait,
        "label_wait_wall_s": wait / rate,
        "served_versions": sum(1 for t in times if t >= events[0][0]),
        "versions_stored": len(versions),
        "label_to_served": percentiles(from_label) if from_label else None,
        "event_to_served_with_its_label": percentiles(from_event) if from_event else None,
        "labels_unserved_within_grace": len(unserved),
        "labels_unserved_share": len(unserved) / len(labels),
        # the first of them: (label offset, event offset), and how far the newest version read each topic
        "unserved_labels_at": sorted(unserved)[:20],
        # of them, those the learner had not read at all (no version past their record): not the guard holding them
        "unserved_not_read": sum(1 for at, _ in unserved if versions and at >= label_read(versions[-1], settings)),
        "newest_version_offsets": versions[-1].offsets if versions else None,
        "p99_counting_unserved_s": p99_counting(from_label, len(unserved)),
        # what the join did during this rate (the newest version's counts), and what waits at its end
        "join_counts": {k: counts_after[k] - counts_before[k] for k in COUNTS if counts_after[k] != counts_before[k]},
        "join_pending_at_end": counts_after["pending"],
        "join_orphans_at_end": counts_after["orphans"],
        "newest_label_sent_to_version_written": percentiles(learner_side) if learner_side else None,
        "version_written_to_served": percentiles(serving_side) if serving_side else None,
    }


def print_result(result: dict[str, Any], grace: float) -> None:
    """One rate's figures, without labels later."""
    f = result["freshness"] or {}
    counted = result["p99_counting_unserved_s"]
    print(
        f"{result['rate']:>6.0f} ev/s  {result['events']:>6} events  freshness p50 {f.get('p50_s', 0):.3f} s  "
        f"p99 {f.get('p99_s', 0):.3f} s  max {f.get('max_s', 0):.3f} s  "
        f"({result['served_versions']} versions served, {result['versions_stored']} stored, "
        f"{result['unserved_within_grace']} events not served within {grace:.0f} s; p99 counting "
        f"them {'beyond the grace' if counted is None else f'{counted:.3f} s'})",
        flush=True,
    )
    print_tail(result, ("newest_event_sent_to_version_written", "version_written_to_served"))


def print_label_result(result: dict[str, Any], grace: float) -> None:
    """One rate's figures with labels later."""
    f, e = result["label_to_served"] or {}, result["event_to_served_with_its_label"] or {}
    low, high = result["label_delay_event_time_s"]
    wall_low, wall_high = result["label_delay_wall_s"]
    counted = result["p99_counting_unserved_s"]
    print(
        f"{result['rate']:>6.0f} ev/s  {result['events']:>6} events, {result['labels']} labels {low:.0f}..{high:.0f} s "
        f"of event time later ({wall_low:.3f}..{wall_high:.3f} s of wall time; "
        f"wait {result['label_wait_event_time_s']:.0f} s = {result['label_wait_wall_s']:.3f} s)\n"
        f"          label sent -> served with it: p50 {f.get('p50_s', 0):.3f} s  p99 {f.get('p99_s', 0):.3f} s  "
        f"max {f.get('max_s', 0):.3f} s;  from its event's send: p50 {e.get('p50_s', 0):.3f} s  "
        f"p99 {e.get('p99_s', 0):.3f} s  max {e.get('max_s', 0):.3f} s\n"
        f"          {result['served_versions']} versions served, {result['versions_stored']} stored, "
        f"{result['labels_unserved_within_grace']} labels ({result['labels_unserved_share']:.2%}) not served within "
        f"{grace:.0f} s ({result['unserved_not_read']} of them never read by the learner); p99 counting them "
        f"{'beyond the grace' if counted is None else f'{counted:.3f} s'}\n"
        f"          join: {result['join_counts']}, at the end {result['join_pending_at_end']} pending, "
        f"{result['join_orphans_at_end']} orphans",
        flush=True,
    )
    print_tail(result, ("newest_label_sent_to_version_written", "version_written_to_served"))


def print_tail(result: dict[str, Any], parts: tuple[str, ...]) -> None:
    """The versions that held a tail back (if any), and where the time went."""
    tail = result["unserved_tail"]
    if tail:
        print(f"          not served past stream position {tail['served_to_position']}; versions past it:")
        for v in tail["versions_past_it"]:
            print(
                f"            {v['version']} at {v['position']}: "
                f"{', '.join(v['states']) or ('eligible' if v['eligible'] else 'not eligible')}, "
                f"rolling {v['rolling']}"
            )
        if tail.get("held"):
            print(f"          the learner holds {tail['held']['candidates']} back: {tail['held']['reason']}")
    for part in parts:
        p = result[part] or {}
        print(f"          {part.replace('_', ' ')}: p50 {p.get('p50_s', 0):.3f} s  p99 {p.get('p99_s', 0):.3f} s")


def start_services(
    settings: Settings, port: int, overrides: dict[str, str], logs: Path | None
) -> list[subprocess.Popen[bytes]]:
    """``livelearn learn`` and ``livelearn serve`` with default settings but the addresses, the API port, the label
    join's (with labels later) and ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
    env.update(
        {
            "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LIVELEARN_REDIS_URL": settings.redis_url,
            "LIVELEARN_API_PORT": str(port),
            **(
                {"LIVELEARN_LABEL_WAIT": str(settings.label_wait), "LIVELEARN_LABELS_TOPIC": settings.labels.topic}
                if settings.labels.topic
                else {}
            ),
            **overrides,
        }
    )
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "streaming", cmd],
            env=env,
            stdout=(logs / f"{cmd}.log").open("wb") if logs else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for cmd in ("learn", "serve")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", help="events/s (default 50 400 2000; with labels 50 400)")
    parser.add_argument("--seconds", type=float, default=30, help="producing time per rate")
    parser.add_argument("--grace", type=float, default=40, help="how long to wait for the last event to be served")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for learn and serve (comparisons)")
    parser.add_argument(
        "--label-delay", help="send the labels later, on a labels topic: MIN..MAX of event time (e.g. 30s..2m)"
    )
    parser.add_argument("--label-wait", type=float, help="with --label-delay: the join's wait, event-time seconds")
    parser.add_argument("--out", type=Path, help="default bench/results/freshness.json (-labels.json with labels)")
    parser.add_argument("--logs", type=Path, help="write the learn and serve logs in this directory")
    args = parser.parse_args()
    delay = parse_delay(args.label_delay) if args.label_delay else None
    rates = args.rates or ([50.0, 400.0] if delay else [50.0, 400.0, 2000.0])
    out = args.out or Path(__file__).parent / "results" / ("freshness-labels.json" if delay else "freshness.json")
    overrides = dict(item.split("=", 1) for item in args.env)
    results: dict[str, Any] = {"overrides": overrides, "rates": []}
    with embedded_stack() as (broker, redis_server):
        port = free_port()
        joined: dict[str, Any] = {}
        if delay:  # the join's wait: twice the longest delay unless told
            joined = {"label_wait": args.label_wait or 2 * delay[1] / 1000, "labels_topic": "events.labels"}
            results["label_delay"] = args.label_delay
        settings = Settings(kafka_bootstrap=broker.address, redis_url=f"redis://{redis_server.address}/0", **joined)
        topics = [settings.events_topic, settings.dead_letter_topic_name, settings.predictions_topic_name]
        ensure_topics(settings, dict.fromkeys([*topics, *filter(None, [settings.labels.topic])], 1))
        procs = start_services(settings, port, overrides, args.logs)
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
            for rate in rates:
                if delay:
                    result = measure_labels(
                        settings, watch, rate, seconds=args.seconds, grace=args.grace, skip=skip, delay=delay
                    )
                    print_label_result(result, args.grace)
                else:
                    result = measure(settings, watch, rate, seconds=args.seconds, grace=args.grace, skip=skip)
                    print_result(result, args.grace)
                skip += result["events"]
                results["rates"].append(result)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
