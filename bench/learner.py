"""End-to-end learner throughput against the bare river loop, on the same events.

Replays the bundled dataset ``--repeat`` times (default 17: 209,610 events) into a one-partition
topic of an embedded Tansu broker (or ``--bootstrap``), then times, in one run:

* **end to end**: a real :class:`streaming.learner.runner.Learner` from its first poll until it has caught
  up (broker -> decode -> predict -> metrics -> learn -> snapshots to a real redis-server);
* **bare river loop**: ``predict_proba_one`` + ``learn_one`` on the same feature dicts in-process;
* **model only**: encode + predict + learn per event with each engine (river, compiled), same run, in
  µs/event (``--engine`` picks the learner's engine; the bare river loop stays the reference);
* **stages**: Kafka consumption alone, event decoding, the 14 prequential metric updates, and publishing
  one prediction per event to the predictions topic, to show what dominates the cost;
* **snapshot write** time (encode + Lua write), over the learner's own snapshots and 50 extra writes.

``--client`` picks the Kafka client (``auto``: confluent-kafka when installed); ``--client both`` runs the
whole measurement once per client in the same process, on the same servers and events, and prints both (the
JSON's top level is the default client's, ``clients`` holds each). The machine is shared: compare figures of
one run only. Prints the figures and writes them as JSON (``--out``). Run: ``.venv/bin/python bench/learner.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.prequential import PrequentialMetrics
from snapshotter.codec import pack
from streaming.config import Settings
from streaming.engines import ENGINES, new_model, resolve_engine
from streaming.events import EventLimits, decode_event, encode_event
from streaming.learner.runner import Learner
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack
from streaming.model import ModelSpec, OnlineModel
from streaming.transport import TopicPartition, choose_client, ensure_topics, make_consumer, make_producer


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def model_only(events: list, engine: str) -> float:
    """Seconds per event of the model alone on ``engine``: encode, predict, learn (the learner's calls)."""
    model = new_model(ModelSpec(), engine)
    t0 = time.perf_counter()
    for ev in events:
        x = model.encode(ev.features, learn=True)
        model.predict_encoded(x)
        model.learn_encoded(x, ev.label)
    return (time.perf_counter() - t0) / len(events)


def run(
    bootstrap: str,
    redis_url: str,
    repeat: int,
    snapshot_every: int,
    predictions: bool = True,
    *,
    client: str = "auto",
    engine: str = "auto",
) -> dict:
    settings = Settings(
        kafka_bootstrap=bootstrap,
        kafka_client=client,
        redis_url=redis_url,
        model_name=f"bench-{os.getpid()}-{client}-{engine}",
        events_topic=f"bench-{os.getpid()}-{client}-{engine}",
        snapshot_every_events=snapshot_every,
        snapshot_every_seconds=3600,
        poll_max_records=2000,
        publish_predictions=predictions,
        engine=engine,
    )
    ensure_topics(
        settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1}
    )
    raws = [encode_event(e) for e in read_events(repeat=repeat)]
    n = len(raws)

    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)

    def produce_all() -> None:  # keeps no futures alive: they would inflate every later GC pass
        for raw in raws:
            producer.send(settings.events_topic, raw)
        producer.flush()

    produce_s, _ = timed(produce_all)
    producer.close()

    learner = Learner(settings, registry=CollectorRegistry())
    gc.collect()
    gc.freeze()  # as `livelearn learn` does before its loop
    checkpoints = learner.checkpoints
    capture = checkpoints.capture
    jobs = []  # every snapshot of the run: its copy on the learner thread, its encode and write on the writer's
    on_learner: list[float] = []

    def timed_capture(*args, **kwargs):  # the copy of the state at its offsets (the learner then goes on)
        t0 = time.perf_counter()
        try:
            job = capture(*args, **kwargs)
        finally:
            on_learner.append(time.perf_counter() - t0)
        jobs.append(job)
        return job

    checkpoints.capture = timed_capture
    e2e_s, _ = timed(lambda: learner.run(until_caught_up=True))
    assert learner.counters["events_seen"] == n, learner.counters
    in_run = [job.encode_seconds + job.write_seconds for job in jobs if job.meta is not None]

    state = learner.state.snapshot_state()
    writes = []
    for _ in range(50):
        t0 = time.perf_counter()
        learner.store.write(state, writer="bench", lease_value=None, offsets={}, metrics={}, parent=None)
        writes.append(time.perf_counter() - t0)

    # stage costs on the same events
    consumer = make_consumer(settings)
    tp = TopicPartition(settings.events_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)

    def consume_only() -> int:
        got = 0
        while got < n:
            for records in consumer.poll(timeout_ms=500, max_records=2000).values():
                got += len(records)
        return got

    consume_s, _ = timed(consume_only)
    consumer.close()
    limits = EventLimits()
    decode_s, events = timed(lambda: [decode_event(r, "msgpack", limits) for r in raws])
    model = OnlineModel(ModelSpec())

    def bare() -> list[float]:
        probs = []
        for ev in events:
            probs.append(model.predict_proba_one(ev.features))
            model.learn_one(ev.features, ev.label)
        return probs

    bare_s, probs = timed(bare)
    pm = PrequentialMetrics(settings.rolling_window)
    metrics_s, _ = timed(lambda: [pm.update(ev.label, p) for ev, p in zip(events, probs, strict=True)])
    publisher = make_producer(settings, linger_ms=20)

    def publish_predictions() -> None:  # what the learner sends per event to the predictions topic
        for ev, p in zip(events, probs, strict=True):
            doc = {
                "event_id": ev.event_id,
                "user_id": ev.user_id,
                "ts": ev.ts,
                "probability": p,
                "label": p > 0.5,
                "version": 1,
                "model": settings.model_name,
            }
            publisher.send(settings.predictions_topic_name, pack(doc), key=(ev.user_id or ev.event_id).encode())
        publisher.flush()

    publish_s, _ = timed(publish_predictions)
    publisher.close()
    sample = events[:30_000]
    per_engine = {name: model_only(sample, name) for name in ("river", "compiled")}  # kernel compiled before t0
    return {
        "client": choose_client(settings),
        "events": n,
        "engine": resolve_engine(engine),
        "model_only_us_per_event": {name: seconds * 1e6 for name, seconds in per_engine.items()},
        "model_only_speedup": per_engine["river"] / per_engine["compiled"],
        "end_to_end": {"seconds": e2e_s, "events_per_second": n / e2e_s},
        "bare_river_loop": {"seconds": bare_s, "events_per_second": n / bare_s},
        "ratio_bare_over_end_to_end": (n / bare_s) / (n / e2e_s),
        "stages_seconds": {
            "kafka_consume_only": consume_s,
            "decode_and_validate": decode_s,
            "predict_and_learn": bare_s,
            "prequential_metrics_14": metrics_s,
            "predictions_publish": publish_s,
        },
        "snapshot_write_seconds": {
            "in_run_count": len(in_run),
            "in_run_p50": statistics.median(in_run),
            "in_run_max": max(in_run),
            "learner_thread_p50": statistics.median(on_learner),
            "learner_thread_max": max(on_learner),
            "extra_p50": statistics.median(writes),
            "extra_p95": sorted(writes)[int(0.95 * len(writes)) - 1],
            "blob_bytes": learner.last_snapshot.size_bytes,
        },
        "produce_seconds": produce_s,
    }


def report(result: dict) -> None:
    e2e, bare = result["end_to_end"], result["bare_river_loop"]
    topic = "on" if result["publish_predictions"] else "off"
    print(
        f"client {result['client']}, engine {result['engine']}: "
        f"events {result['events']:,}  (predictions topic {topic})"
    )
    print(f"end to end            {e2e['events_per_second']:>10,.0f} events/s  ({e2e['seconds']:.2f} s)")
    print(f"bare river loop       {bare['events_per_second']:>10,.0f} events/s  ({bare['seconds']:.2f} s)")
    print(f"ratio bare / e2e      {result['ratio_bare_over_end_to_end']:.2f}x")
    only = result["model_only_us_per_event"]
    print(
        f"model only            river {only['river']:.1f} us/event, compiled {only['compiled']:.1f} us/event "
        f"({result['model_only_speedup']:.1f}x, same run, 30,000 events)"
    )
    for stage, seconds in result["stages_seconds"].items():
        print(f"  stage {stage:<22} {seconds:6.2f} s  ({seconds / result['events'] * 1e6:6.1f} us/event)")
    print(f"  produce the events           {result['produce_seconds'] / result['events'] * 1e6:6.1f} us/event")
    snap = result["snapshot_write_seconds"]
    print(
        f"snapshot in the run   p50 {snap['in_run_p50'] * 1e3:.2f} ms, max {snap['in_run_max'] * 1e3:.2f} ms "
        f"over {snap['in_run_count']} (encode + Redis write, on the writer thread)"
    )
    print(
        f"  on the learner thread p50 {snap['learner_thread_p50'] * 1e3:.2f} ms, max "
        f"{snap['learner_thread_max'] * 1e3:.2f} ms (the copy of the state at a snapshot)"
    )
    print(
        f"snapshot write alone  p50 {snap['extra_p50'] * 1e3:.2f} ms, p95 {snap['extra_p95'] * 1e3:.2f} ms "
        f"over 50 (encode + Lua write); blob {snap['blob_bytes']:,} B"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=17, help="dataset replays (17 x 12,330 = 209,610 events)")
    parser.add_argument("--snapshot-every", type=int, default=10_000)
    parser.add_argument("--bootstrap", help="use this Kafka instead of an embedded Tansu")
    parser.add_argument("--redis-url", help="use this Redis instead of an embedded redis-server")
    parser.add_argument("--no-predictions", action="store_true", help="learner does not publish predictions")
    parser.add_argument(
        "--client",
        choices=["auto", "confluent", "kafka-python", "both"],
        default="auto",
        help="Kafka client (both: one measurement per client, same run)",
    )
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="the learner's engine (LIVELEARN_ENGINE)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file (default: bench/results/learner.json, or learner-no-predictions.json)",
    )
    args = parser.parse_args()
    name = "learner-no-predictions.json" if args.no_predictions else "learner.json"
    args.out = args.out or Path(__file__).parent / "results" / name
    clients = ["confluent", "kafka-python"] if args.client == "both" else [args.client]

    def measure(bootstrap: str, redis_url: str) -> dict[str, dict]:
        results = {}
        for client in clients:
            one = run(
                bootstrap,
                redis_url,
                args.repeat,
                args.snapshot_every,
                not args.no_predictions,
                client=client,
                engine=args.engine,
            )
            one["publish_predictions"] = not args.no_predictions
            report(one)
            results[one["client"]] = one
        return results

    if args.bootstrap and args.redis_url:
        per_client = measure(args.bootstrap, args.redis_url)
    else:
        with embedded_stack() as (broker, redis_server):
            per_client = measure(
                args.bootstrap or broker.address, args.redis_url or f"redis://{redis_server.address}/0"
            )
    result = dict(next(iter(per_client.values())))
    if len(per_client) > 1:
        result["clients"] = per_client
        names = list(per_client)
        a, b = (per_client[c]["end_to_end"]["events_per_second"] for c in names)
        print(f"same run: end to end {names[0]} / {names[1]} = {a / b:.2f}x")
    result["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "broker": "tansu (embedded)" if not args.bootstrap else "given",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
