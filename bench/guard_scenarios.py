"""What the quality guard does in each drift scenario, with real processes (the figures of the issue-8 note).

Starts an embedded broker and redis-server, then for each scenario a fresh model: the whole dataset (12,330
sessions) with some corruption is produced (as a backlog, or at a fixed rate while everything runs), a
`livelearn learn` and a `livelearn monitor` child process run until every metric sample is judged, and the
script reports, from the audit log and the versions:

* where the guard acted (stream positions: incident start and its change point, rollbacks, incident end,
  suppressed breaches, feature drift) and the version it went back to (with that version's position);
* the final model's accuracy on the **true** labels of the rows after the corruption began, against a plain
  river loop over the same corrupted stream (no guard) — the same model and learning rate.

Prints a table and writes JSON (``--out``). Run: ``.venv/bin/python bench/guard_scenarios.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from snapshotter.audit import read_audit
from snapshotter.incidents import position_of
from snapshotter.store import open_store
from streaming.config import Settings
from streaming.events import Event
from streaming.learner.restore import restore_state
from streaming.learner.state import spec_from_settings
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack
from streaming.local.replay import flip_labels, replay
from streaming.model import ModelSpec, OnlineModel
from streaming.transport import ensure_topics, make_producer

EVENTS = list(read_events())
SETTINGS = {
    "snapshot_every_events": 250,
    "snapshot_every_seconds": 3600,
    "keep_versions": 500,
    "status_interval_seconds": 0.2,
    "monitor_check_interval_seconds": 0.2,
    "publish_predictions": False,
}


def stuck(start: int, count: int, label: bool = True) -> list[Event]:
    return [dataclasses.replace(e, label=label) if start <= i < start + count else e for i, e in enumerate(EVENTS)]


def slow_drift(start: int, span: int, seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    out = []
    for i, event in enumerate(EVENTS):
        p = 0.0 if i < start else min(0.5, 0.5 * (i - start) / span)
        out.append(dataclasses.replace(event, label=not event.label) if rng.random() < p else event)
    return out


def scaled(feature: str, start: int, factor: float) -> list[Event]:
    return [
        dataclasses.replace(e, features={**e.features, feature: e.features[feature] * factor}) if i >= start else e
        for i, e in enumerate(EVENTS)
    ]


#: name -> (corrupted events, first corrupted row, event rate or None for a backlog)
SCENARIOS: dict[str, Callable[[], tuple[list[Event], int, float | None]]] = {
    "stuck labeller 4000+2000 (backlog)": lambda: (stuck(4000, 2000), 4000, None),
    "stuck labeller 4000+2000 (1,500/s)": lambda: (stuck(4000, 2000), 4000, 1500.0),
    "labeller stuck at 0, 4000+2000 (backlog)": lambda: (stuck(4000, 2000, label=False), 4000, None),
    "coin-flip burst 3000+1500 (1,500/s)": lambda: (list(flip_labels(EVENTS, 3000, 1500, seed=7)), 3000, 1500.0),
    "slow drift 3000->9000 (backlog)": lambda: (slow_drift(3000, 6000), 3000, None),
    "clean (backlog)": lambda: (EVENTS, 0, None),
    "ProductRelated_Duration x50 from 6000 (backlog)": lambda: (
        scaled("ProductRelated_Duration", 6000, 50),
        6000,
        None,
    ),
}


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
    for name, value in settings.model_dump().items():
        if value is not None and value != []:
            env[f"LIVELEARN_{name.upper()}"] = str(
                value.get_secret_value() if hasattr(value, "get_secret_value") else value
            )
    return env


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def as_contract(event: Event) -> dict[str, object]:
    """Features as the event contract hands them to the model (booleans become the categories true/false)."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in event.features.items()}


def accuracy(model: OnlineModel, rows: list[Event], truth: list[Event]) -> float:
    hits = sum((model.predict_proba_one(as_contract(r)) > 0.5) == t.label for r, t in zip(rows, truth, strict=True))
    return hits / len(rows)


def run(
    name: str,
    broker: str,
    redis_address: str,
    n: int,
    *,
    every_seconds: float = 3600,
    rate_override: float | None = None,
) -> dict[str, object]:
    events, start, rate = SCENARIOS[name]()
    rate = rate_override if rate is not None and rate_override else rate
    settings = Settings(
        model_name=f"bench-guard-{n}-{int(time.time())}",
        kafka_bootstrap=broker,
        redis_url=f"redis://{redis_address}/0",
        events_topic=f"bench-guard-{n}-{int(time.time())}",
        **{**SETTINGS, "snapshot_every_seconds": every_seconds},
    )
    ensure_topics(settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1})
    producer = make_producer(settings, linger_ms=5)
    if rate is None:
        replay(producer, settings.events_topic, events)
    env = env_for(settings)
    children = [subprocess.Popen([sys.executable, "-m", "streaming", c], env=env) for c in ("learn", "monitor")]
    store = open_store(settings)
    t0 = time.monotonic()
    if rate is not None:
        wait(lambda: store.status() is not None, 90, "the learner")
        replay(producer, settings.events_topic, events, rate=rate)
    producer.close()
    wait(lambda: (store.status() or {}).get("stream_position") == len(events), 300, "the end of the stream")
    last = store.client.xrevrange(store.keys.history, count=1)
    wait(lambda: store.client.hget(store.keys.guard, "cursor") == last[0][0], 120, "the monitor")
    elapsed = time.monotonic() - t0
    for child in children:
        child.terminate()
        child.wait(60)
    audit = read_audit(store.client, store.keys)

    def at(entry_action: str) -> list[int]:
        return [int(e.metrics.get("stream_position", -1)) for e in audit if e.action == entry_action]

    rollbacks = [
        {
            "position": int(e.metrics.get("stream_position", -1)),
            "by": e.actor.split()[0],
            "to_version": e.to_version,
            "target_position": position_of(store.meta(e.to_version)) if e.to_version else None,
        }
        for e in audit
        if e.action == "rollback"
    ]
    starts = [e for e in audit if e.action == "incident_start"]
    served = {  # every version serving moved to (the version log holds the routine promotions)
        e.to_version for e in read_audit(store.client, store.keys, actions={"promote"}) if e.to_version is not None
    } | {int(e.fields["serving_to"]) for e in audit if e.fields.get("serving_to", "").isdigit()}
    meta, state = store.load(store.head())
    final, _ = restore_state(state, ModelSpec.from_dict(state.spec), window=10)
    unguarded = OnlineModel(spec_from_settings(settings))
    for event in events[: position_of(meta)]:
        unguarded.learn_one(as_contract(event), event.label)
    rows, truth = events[start : position_of(meta)], EVENTS[start : position_of(meta)]
    return {
        "scenario": name,
        "seconds": round(elapsed, 1),
        "incident_start": at("incident_start"),
        "change_point": [int(e.fields["change_point"]) for e in starts],
        "quarantined": [[int(n) for n in e.fields.get("quarantined", "").split(",") if n] for e in starts],
        "rollbacks": rollbacks,
        # versions an incident quarantined that had been served before it (confirmed on a block that looked calm)
        "served_then_quarantined": sorted(
            n for e in starts for n in map(int, filter(None, e.fields.get("quarantined", "").split(","))) if n in served
        ),
        "incident_end": at("incident_end"),
        "breach_suppressed": at("breach_suppressed"),
        "feature_drift": [
            (e.metrics.get("signal"), int(e.metrics.get("stream_position", -1)))
            for e in audit
            if e.action == "feature_drift"
        ],
        "final_version": meta.number,
        "evaluated_rows": f"{start}..{position_of(meta)} (true labels)",
        "accuracy_guarded": round(accuracy(final, rows, truth), 4),
        "accuracy_unguarded": round(accuracy(unguarded, rows, truth), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/guard_scenarios.json"))
    parser.add_argument(
        "--snapshot-every-seconds",
        type=float,
        default=3600,
        help="timed snapshots (default 3600: versions by events only; 0.25 is the service's default)",
    )
    parser.add_argument("--rate", type=float, default=None, help="events/s of the scenarios produced at a rate")
    parser.add_argument("--only", default="", help="only the scenarios whose name contains this")
    args = parser.parse_args()
    results = []
    with embedded_stack() as (broker, redis_server):
        for n, name in enumerate(SCENARIOS):
            if args.only not in name:
                continue
            result = run(
                name,
                broker.address,
                redis_server.address,
                n,
                every_seconds=args.snapshot_every_seconds,
                rate_override=args.rate,
            )
            results.append(result)
            print(json.dumps(result))
    print(
        f"\n{'scenario':50} {'incident@':>10} {'cp':>6} {'rollback@->v(pos)':>22} {'end@':>6} {'guard':>7} {'none':>7}"
        "  served then quarantined"
    )
    for r in results:
        rb = ", ".join(f"{x['position']}->v{x['to_version']}({x['target_position']})" for x in r["rollbacks"]) or "-"
        start, cp, end = (",".join(map(str, r[k])) or "-" for k in ("incident_start", "change_point", "incident_end"))
        print(
            f"{r['scenario']:50} {start:>10} {cp:>6} {rb:>22} {end:>6} "
            f"{r['accuracy_guarded']:>7} {r['accuracy_unguarded']:>7}  {r['served_then_quarantined'] or '-'}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "snapshot_every_seconds": args.snapshot_every_seconds,
                "rate": args.rate,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
