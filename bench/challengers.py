"""What one challenger learning in shadow costs the active learner, per event (issue 20's target: ≤ 15 % on the
compiled engine).

The learner's own per-event step (:class:`~streaming.learner.step.EventStep` over records as a poll returns them,
predictions published to a producer that discards them, the default settings otherwise: guard, metrics, samples,
dedupe) runs over the bundled dataset (12,330 events, labels inside, cycled with fresh ids) in one process, with
no challenger, with one (``fast:lr=0.05``) and with one compared by a segment (``VisitorType``). The variants run
round by round, interleaved, each round a fresh learner state, so a load change on the machine hits all of them
alike; the figure per variant is the median of its rounds' CPU time per event (``time.process_time``), and the
overhead is each round's ratio to the plain round next to it (median).

No broker and no Redis: the step is the part a challenger adds to (a version's capture and write grow by the arm's
model too, once per snapshot, not per event). Prints the figures and writes JSON (``--out``, default
``bench/results/challengers.json``). ``--events`` per round and ``--rounds`` scale it (the smoke test runs a few
thousand). Run: ``.venv/bin/python bench/challengers.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streaming.config import Settings
from streaming.events import Event, encode_event
from streaming.learner.offline import Discard  # the offline step's producer: accepts every send
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.local.dataset import read_events
from streaming.transport import Record, TopicPartition

VARIANTS: dict[str, dict[str, Any]] = {
    "champion_only": {},
    "one_challenger": {"challengers": ["fast:lr=0.05"]},
    "one_challenger_segments": {"challengers": ["fast:lr=0.05"], "compare_segments": ["VisitorType"]},
}


def records(count: int) -> list[Record]:
    """``count`` encoded events of the bundled dataset, cycled with fresh ids, on one partition."""
    events = list(read_events())
    out = []
    for i in range(count):
        e = events[i % len(events)]
        event = Event(f"{e.event_id}-{i}", e.ts + i, e.features, e.label, e.user_id)
        out.append(Record("events", 0, i, None, encode_event(event, "msgpack"), [], -1))
    return out


def one_round(variant: str, batch: list[Record], engine: str) -> float:
    """CPU seconds per event of one fresh learner stepping ``batch``."""
    settings = Settings(engine=engine, event_format="msgpack", **VARIANTS[variant])
    telemetry = LearnerMetrics(CollectorRegistry(), settings.model_name)
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    step = EventStep(settings, telemetry)
    outputs = Outputs(Discard(), settings, telemetry)
    tp = TopicPartition("events", 0)
    positions = {tp: 0}
    start = time.process_time()
    for record in batch:
        positions[tp] = record.offset + 1
        step.process(state, record, outputs, positions)
        if state.samples and len(state.samples) > 64:
            state.samples.clear()  # (the status would ship them)
        state.incident_events.clear()
    return (time.process_time() - start) / len(batch)


def run(args: argparse.Namespace) -> dict[str, Any]:
    batch = records(args.events)
    one_round("champion_only", batch[:500], args.engine)  # compile and warm up before timing
    rounds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            rounds[name].append(one_round(name, batch, args.engine))
    plain = rounds["champion_only"]
    result: dict[str, Any] = {
        "engine": args.engine,
        "events_per_round": args.events,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        "load_avg_1m": os.getloadavg()[0],
        "variants": {},
    }
    for name, seconds in rounds.items():
        ratios = [s / p for s, p in zip(seconds, plain, strict=True)]
        result["variants"][name] = {
            "us_per_event_median": statistics.median(seconds) * 1e6,
            "events_per_cpu_second": 1 / statistics.median(seconds),
            "overhead_median": statistics.median(ratios) - 1,
            "overhead_max": max(ratios) - 1,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engine", default="compiled", choices=("compiled", "river"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/challengers.json"))
    args = parser.parse_args()
    result = run(args)
    print(f"engine {result['engine']}, {args.events:,} events x {args.rounds} rounds, load {result['load_avg_1m']:.2f}")
    for name, figures in result["variants"].items():
        print(
            f"  {name:<26} {figures['us_per_event_median']:7.2f} µs/event  "
            f"{figures['events_per_cpu_second']:>9,.0f} events/CPU s  overhead {figures['overhead_median']:+.1%}"
            f" (max {figures['overhead_max']:+.1%})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
