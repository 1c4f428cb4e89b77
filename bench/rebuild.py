"""A rebuild's speed against the live learner's, in the same run (issue 22's target: over the bundled dataset cycled
to 1,000,000 events, at least 50,000 events/s on one core with the compiled engine, at least 10x the live learner).

An embedded Tansu broker and redis-server are started here. The dataset cycled to ``--events`` events (ids unique)
is produced to one partition. Then, at the default settings (compiled engine, predictions published):

* **live**: a real :class:`~streaming.learner.runner.Learner` over the first ``--live-events`` of them, from
  ``run(until_caught_up=True)`` to its end (snapshots, metrics, signals, predictions as configured);
* **rebuild**: ``livelearn rebuild run`` from scratch over all of them (``run_rebuild``: read with assigned
  partitions, the learner's per-event step without publishing, a branch version every 100,000 records), timed from
  its first record read to its last version written; its CPU time too (one thread).

Prints the figures and writes JSON (``--out``, default ``bench/results/rebuild.json``). Run:
``.venv/bin/python bench/rebuild.py`` (``--events 200000`` for a shorter run).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from snapshotter.store import open_store
from streaming.config import Settings
from streaming.engines import resolve_engine
from streaming.events import encode_event
from streaming.learner.rebuild import plan_rebuild, run_rebuild
from streaming.learner.runner import Learner
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack
from streaming.transport import ensure_topics, livelearn_topics, make_producer


def produce(settings: Settings, count: int) -> float:
    per_cycle = 12_330
    raws = (encode_event(e) for e in read_events(repeat=math.ceil(count / per_cycle)))
    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)
    t0 = time.perf_counter()
    for n, raw in enumerate(raws):
        if n == count:
            break
        producer.send(settings.events_topic, raw)
    producer.flush()
    producer.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--live-events", type=int, default=100_000)
    parser.add_argument("--engine", default="compiled", choices=("compiled", "river"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rebuild.json")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with embedded_stack() as (broker, redis_server):
        tag = f"bench-rebuild-{os.getpid()}"
        common = {"kafka_bootstrap": broker.address, "redis_url": f"redis://{redis_server.address}/0"}
        live = Settings(**common, model_name=f"{tag}-live", events_topic=f"{tag}-live", engine=args.engine)
        full = Settings(**common, model_name=f"{tag}-full", events_topic=f"{tag}-full", engine=args.engine)
        for settings in (live, full):
            ensure_topics(settings, livelearn_topics(settings, 1))
        produce(live, args.live_events)
        result["produce_seconds"] = round(produce(full, args.events), 1)

        learner = Learner(live, registry=CollectorRegistry())
        gc.collect()
        gc.freeze()
        t0 = time.perf_counter()
        learner.run(until_caught_up=True)
        live_seconds = time.perf_counter() - t0
        assert learner.counters["events_seen"] == args.live_events, learner.counters
        gc.unfreeze()

        store = open_store(full)
        plan = plan_rebuild(full, store, name="bench", base=None, every=100_000)
        assert plan.records == args.events, plan.records
        t0, c0 = time.perf_counter(), time.thread_time()
        report = run_rebuild(full, store, plan, actor="bench")
        rebuild_seconds, rebuild_cpu = time.perf_counter() - t0, time.thread_time() - c0
        assert report.read == args.events, report
        assert report.learned == args.events, report
    live_rate, rebuild_rate = args.live_events / live_seconds, args.events / rebuild_seconds
    result.update(
        {
            "engine": resolve_engine(args.engine),
            "live": {
                "events": args.live_events,
                "seconds": round(live_seconds, 2),
                "events_per_second": round(live_rate),
            },
            "rebuild": {
                "events": args.events,
                "versions": len(report.versions),
                "seconds": round(rebuild_seconds, 2),
                "cpu_seconds": round(rebuild_cpu, 2),
                "events_per_second": round(rebuild_rate),
                "events_per_cpu_second": round(args.events / rebuild_cpu),
            },
            "ratio_rebuild_over_live": round(rebuild_rate / live_rate, 2),
            "machine": {
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "note": "shared 2-core VM; the broker and redis-server on the same machine",
            },
        }
    )
    r = result["rebuild"]
    print(
        f"{result['engine']} engine: live learner {result['live']['events_per_second']:,} events/s over "
        f"{args.live_events:,} events; rebuild {r['events_per_second']:,} events/s ({r['events_per_cpu_second']:,} "
        f"per CPU second) over {args.events:,} events, {r['versions']} versions; "
        f"ratio {result['ratio_rebuild_over_live']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
