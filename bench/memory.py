"""Learner memory under constant load: is the resident set flat (no leak)?

Starts an embedded broker and redis-server, then `livelearn learn` and `livelearn monitor` as child
processes with default settings (predictions on, timed snapshots, retention), and a producer in this
process streaming the bundled dataset over and over (fresh event ids) at a constant rate. Every
``--sample-seconds`` it reads each child's resident set (``VmRSS`` in ``/proc/PID/status``) and the
learner's ``events_seen`` from its status.

Verdict: after ``--warmup-seconds`` (model, metric windows, dedupe window and retention fill up), the
least-squares slope of the learner's RSS must stay under ``--max-slope-mib-per-minute``, and the RSS at
the end within ``--max-growth-ratio`` of the RSS at the end of warm-up. A leak of one small object per
event (~100 bytes) at 1,000 events/s grows ~5.7 MiB a minute, well above the default bound.

Run: ``.venv/bin/python bench/memory.py --minutes 10 --rate 1000 --out bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from snapshotter.status import read_status
from snapshotter.store import open_store
from streaming.config import Settings
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack
from streaming.local.replay import replay
from streaming.transport import ensure_topics, make_producer


def rss_mib(pid: int) -> float:
    """The process's resident set in MiB, from ``/proc`` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute.

    >>> round(slope_per_minute([(0, 10.0), (60, 11.0), (120, 12.0)]), 6)
    1.0
    """
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60 if var else 0.0


def run(args: argparse.Namespace) -> dict:
    with embedded_stack() as (broker, redis_server):
        settings = Settings(kafka_bootstrap=broker.address, redis_url=f"redis://{redis_server.address}/0")
        ensure_topics(
            settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1}
        )
        env = {
            **os.environ,
            "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LIVELEARN_REDIS_URL": settings.redis_url,
        }
        logdir = Path(tempfile.mkdtemp(prefix="livelearn-memory-"))
        logs = {cmd: logdir / f"{cmd}.log" for cmd in ("learn", "monitor")}
        procs = {  # logs go to files: an unread pipe fills up and blocks the child's logging
            cmd: subprocess.Popen(
                [sys.executable, "-m", "streaming", cmd],
                env=env,
                stdout=log.open("wb"),  # the child owns it
                stderr=subprocess.STDOUT,
            )
            for cmd, log in logs.items()
        }
        store = open_store(settings)
        stop = threading.Event()
        total = int(args.minutes * 60 * args.rate) + args.rate * 60
        producer = make_producer(settings, linger_ms=5)
        feeder = threading.Thread(
            target=replay,
            args=(producer, settings.events_topic, read_events(repeat=total // 12_330 + 1, limit=total)),
            kwargs={"rate": args.rate, "should_stop": stop.is_set},
            daemon=True,
        )
        samples: list[dict] = []
        try:
            deadline = time.monotonic() + 120
            while read_status(store.client, store.keys) is None:  # the learner is up and has published a status
                dead = [cmd for cmd, proc in procs.items() if proc.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the learner did not publish a status (exited: {dead})")
                time.sleep(0.1)
            feeder.start()
            start = time.monotonic()
            end = start + args.minutes * 60
            while time.monotonic() < end:
                dead = [cmd for cmd, proc in procs.items() if proc.poll() is not None]
                if dead:
                    tail = logs[dead[0]].read_text()[-2000:]
                    raise RuntimeError(f"{dead} exited during the run: {tail}")
                status = read_status(store.client, store.keys) or {}
                samples.append(
                    {
                        "t": round(time.monotonic() - start, 2),
                        "events_seen": status.get("counters", {}).get("events_seen"),
                        "lag": status.get("lag"),
                        **{f"{cmd}_rss_mib": round(rss_mib(proc.pid), 2) for cmd, proc in procs.items()},
                    }
                )
                print(f"  {samples[-1]}", flush=True)
                time.sleep(args.sample_seconds)
        finally:
            stop.set()
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(30)
            producer.close()
    return summarise(args, samples)


def summarise(args: argparse.Namespace, samples: list[dict]) -> dict:
    result: dict = {"machine": f"{platform.node()} {os.cpu_count()} cpu", "settings": vars(args), "samples": samples}
    steady = [s for s in samples if s["t"] >= args.warmup_seconds]
    if len(steady) < 3:
        result["verdict"] = "too short: fewer than 3 samples after warm-up"
        return result
    for cmd in ("learn", "monitor"):
        key = f"{cmd}_rss_mib"
        slope = slope_per_minute([(s["t"], s[key]) for s in steady])
        first, last = steady[0][key], steady[-1][key]
        result[cmd] = {
            "rss_after_warmup_mib": first,
            "rss_end_mib": last,
            "rss_max_mib": max(s[key] for s in steady),
            "slope_mib_per_minute": round(slope, 3),
            "growth_ratio": round(last / first, 4),
        }
    learn = result["learn"]
    flat = learn["slope_mib_per_minute"] <= args.max_slope_mib_per_minute and learn["growth_ratio"] <= (
        args.max_growth_ratio
    )
    events = [s["events_seen"] for s in samples if s["events_seen"] is not None]
    result["events_learned_during_run"] = events[-1] - events[0] if events else 0
    result["verdict"] = "flat" if flat else "GROWING"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000, help="events per second produced")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument("--max-slope-mib-per-minute", type=float, default=0.5)
    parser.add_argument("--max-growth-ratio", type=float, default=1.05)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args)
    for cmd in ("learn", "monitor"):
        if cmd in result:
            r = result[cmd]
            print(
                f"{cmd}: RSS {r['rss_after_warmup_mib']:.1f} MiB after warm-up -> {r['rss_end_mib']:.1f} MiB at the end"
                f" (max {r['rss_max_mib']:.1f}), slope {r['slope_mib_per_minute']:+.3f} MiB/min"
            )
    print(f"events learned during the run: {result.get('events_learned_during_run')}; verdict: {result['verdict']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
