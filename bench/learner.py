"""The learner's throughput against river's bare loop and the loop a user would write, at the default settings.

Replays the bundled dataset ``--repeat`` times (default 17: 209,610 events, ids unique) into one-partition topics of
an embedded Tansu broker and a redis-server (or ``--bootstrap`` / ``--redis-url``), then, for ``--rounds`` rounds
(default 3), runs three columns **interleaved** (the order rotates each round), each as a process of its own:

* **livelearn**: ``livelearn learn --until-caught-up`` at the **default settings** (snapshot cadence, poll size,
  guard, metrics, predictions published; only the addresses, model, topic, ``--engine`` and ``--client`` set);
* **river**: river's bare loop in memory, ``predict_proba_one`` + ``learn_one`` over the same feature dicts
  (``bench/loops/river_loop.py``: the events loaded from a file first);
* **user loop**: what a user would write instead — confluent-kafka + msgpack + river, one prediction produced per
  event (``bench/loops/user_loop.py``).

Two figures per column: **start to end**, the events over the process's whole life (spawn to exit: imports, the
engine's compile, connections, the final snapshot); **steady state**, the events from 10 % to 90 % of the stream
over the time between them (the predictions' timestamps for livelearn and the user loop, the loop's own clock for
river). Ratios are of one round's columns (same load); the medians over the rounds are reported.

``--step`` times the learner's own step in process (``BatchStep``: decode, dedupe, score, publish to a producer that
only counts, learn, metrics, signals, samples; no broker, no Redis), both engines, best of ``--rounds`` (JSON
``learner-step.json``). ``--stages`` runs the former in-process measurement instead (a :class:`Learner` from its
first poll, the stage costs: consumption, decoding, the metrics, publishing, snapshot writes), also at the default
settings. Prints the
figures and writes JSON (``--out``). Run: ``.venv/bin/python bench/learner.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
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


def step_in_process(repeat: int, rounds: int) -> dict:
    """The learner's own step (``BatchStep`` with no hooks: decode, dedupe, score, publish, learn, metrics, signals,
    samples) over the dataset ``repeat`` times in polls of 1,000, at the default settings, predictions encoded and
    handed to a producer that only counts: µs per event, best of ``rounds``, per engine (interleaved)."""
    from streaming.learner.batch import BatchStep
    from streaming.learner.offline import Discard
    from streaming.learner.outputs import Outputs
    from streaming.learner.prometheus import LearnerMetrics
    from streaming.learner.state import LearnerState, spec_from_settings
    from streaming.learner.step import EventStep
    from streaming.transport import Record

    records = [Record("events", 0, i, None, encode_event(e), [], 0) for i, e in enumerate(read_events(repeat=repeat))]
    tp = TopicPartition("events", 0)

    class Writer:
        def release_writer(self) -> None:
            pass

        def hold_writer(self) -> None:
            pass

    def once(engine: str) -> float:
        settings = Settings(engine=engine)
        state = LearnerState.fresh(spec_from_settings(settings), settings)
        telemetry = LearnerMetrics(CollectorRegistry(), settings.model_name)
        outputs = Outputs(Discard(), settings, telemetry)  # (predictions encoded, then counted and dropped)
        batch, positions = BatchStep(state, EventStep(settings, telemetry), outputs, [], Writer()), {tp: 0}
        t0 = time.perf_counter()
        for i in range(0, len(records), 1000):
            batch.process({tp: records[i : i + 1000]}, positions)
            state.samples.clear()
        return (time.perf_counter() - t0) / len(records)

    engines = ("compiled", "river")
    for engine in engines:
        once(engine)  # compiled, warm
    best = {engine: min(once(engine) for _ in range(rounds)) for engine in engines}
    return {"events": len(records), "rounds": rounds, "us_per_event": {e: s * 1e6 for e, s in best.items()}}


LOOPS = Path(__file__).resolve().parent / "loops"
COLUMNS = ("livelearn", "river", "user_loop")


def _steady_from_predictions(settings: Settings, n: int) -> float:
    """Events per second from 10 % to 90 % of the stream, by the timestamps of the predictions produced for them."""
    consumer = make_consumer(settings)
    tp = TopicPartition(settings.predictions_topic_name, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    stamps: list[int] = []
    deadline = time.monotonic() + 120
    while len(stamps) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500, max_records=5000).values():
            stamps += [record.timestamp for record in records]
    consumer.close()
    assert len(stamps) >= n, f"{len(stamps)} predictions of {n}"
    first, last = stamps[n // 10], stamps[(9 * n) // 10]
    return ((9 * n) // 10 - n // 10) / max((last - first) / 1000, 1e-3)


def _column(
    column: str,
    *,
    tag: str,
    bootstrap: str,
    redis_url: str,
    raws: list[bytes],
    river_file: Path,
    engine: str,
    client: str,
) -> dict:
    n = len(raws)
    if column == "river":
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(LOOPS / "river_loop.py"), str(river_file)], capture_output=True, text=True, check=True
        )
        seconds = time.perf_counter() - t0
        inner = json.loads(done.stdout)
        return {"start_to_end": n / seconds, "steady": inner["steady_events"] / inner["steady_seconds"]}
    settings = Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        model_name=tag,
        events_topic=tag,
        engine=engine,
        kafka_client=client,
    )
    ensure_topics(settings, {tag: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1})
    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)
    for raw in raws:
        producer.send(tag, raw, key=b"k")
    producer.flush()
    producer.close()
    if column == "livelearn":
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
        env.update(
            LIVELEARN_KAFKA_BOOTSTRAP=bootstrap,
            LIVELEARN_REDIS_URL=redis_url,
            LIVELEARN_MODEL_NAME=tag,
            LIVELEARN_EVENTS_TOPIC=tag,
            LIVELEARN_ENGINE=engine,
            LIVELEARN_KAFKA_CLIENT=client,
            LIVELEARN_LOG_LEVEL="WARNING",
        )
        command = [sys.executable, "-m", "streaming", "learn", "--until-caught-up"]
    else:
        env = dict(os.environ)
        command = [sys.executable, str(LOOPS / "user_loop.py"), bootstrap, tag, settings.predictions_topic_name, str(n)]
    t0 = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    return {"start_to_end": n / seconds, "steady": _steady_from_predictions(settings, n)}


def compare(bootstrap: str, redis_url: str, repeat: int, rounds: int, *, engine: str, client: str) -> dict:
    """The three columns, ``rounds`` rounds, interleaved (the order rotates): events/s per round and the ratios."""
    events = list(read_events(repeat=repeat))
    raws = [encode_event(e) for e in events]
    river_file = Path(tempfile.mkstemp(suffix=".msgpack")[1])
    contract = [
        [{k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in e.features.items()}, e.label]
        for e in events
    ]
    river_file.write_bytes(pack(contract))
    per_round: list[dict] = []
    try:
        for r in range(rounds):
            order = COLUMNS[r % 3 :] + COLUMNS[: r % 3]
            figures = {}
            for column in order:
                tag = f"bench-{os.getpid()}-{column}-{r}"
                figures[column] = _column(
                    column,
                    tag=tag,
                    bootstrap=bootstrap,
                    redis_url=redis_url,
                    raws=raws,
                    river_file=river_file,
                    engine=engine,
                    client=client,
                )
            for kind in ("steady", "start_to_end"):
                figures[f"livelearn_over_river_{kind}"] = figures["livelearn"][kind] / figures["river"][kind]
                figures[f"livelearn_over_user_loop_{kind}"] = figures["livelearn"][kind] / figures["user_loop"][kind]
            per_round.append({"order": list(order), **figures})
            print(
                f"round {r + 1}: "
                + ", ".join(
                    f"{c} {figures[c]['steady']:,.0f} steady / {figures[c]['start_to_end']:,.0f} start-to-end ev/s"
                    for c in COLUMNS
                )
            )
    finally:
        river_file.unlink(missing_ok=True)
    median = {
        key: statistics.median(r[key] for r in per_round) for key in per_round[0] if key.startswith("livelearn_over")
    }
    columns = {
        c: {kind: statistics.median(r[c][kind] for r in per_round) for kind in ("steady", "start_to_end")}
        for c in COLUMNS
    }
    return {
        "events": len(events),
        "rounds": per_round,
        "median_events_per_second": columns,
        "median_ratios": median,
        "engine": resolve_engine(engine),
        "settings": "defaults",
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three columns")
    parser.add_argument("--stages", action="store_true", help="the in-process measurement and its stage costs")
    parser.add_argument(
        "--step", action="store_true", help="the learner's step alone, in process, no broker (--repeat 4 is enough)"
    )
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
    if args.step:
        result = step_in_process(args.repeat, args.rounds)
        out = args.out or Path(__file__).parent / "results" / "learner-step.json"
        out.write_text(json.dumps({"machine": platform.platform(), **result}, indent=2) + "\n")
        figures = " · ".join(f"{engine} {us:.1f}" for engine, us in result["us_per_event"].items())
        print(f"the learner's step in process, {result['events']:,} events, best of {args.rounds}: {figures} µs/event")
        print(f"written {out}")
        return
    if not args.stages:
        compare_main(args)
        return
    name = "learner-no-predictions.json" if args.no_predictions else "learner-stages.json"
    args.out = args.out or Path(__file__).parent / "results" / name
    clients = ["confluent", "kafka-python"] if args.client == "both" else [args.client]

    def measure(bootstrap: str, redis_url: str) -> dict[str, dict]:
        results = {}
        for client in clients:
            one = run(
                bootstrap,
                redis_url,
                args.repeat,
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


def compare_main(args: argparse.Namespace) -> None:
    client = "confluent" if args.client in ("auto", "both") else args.client
    if args.bootstrap and args.redis_url:
        result = compare(args.bootstrap, args.redis_url, args.repeat, args.rounds, engine=args.engine, client=client)
    else:
        with embedded_stack() as (broker, redis_server):
            result = compare(
                args.bootstrap or broker.address,
                args.redis_url or f"redis://{redis_server.address}/0",
                args.repeat,
                args.rounds,
                engine=args.engine,
                client=client,
            )
    result["client"] = client
    result["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
        "broker": "tansu (embedded)" if not args.bootstrap else "given",
    }
    m, ratios = result["median_events_per_second"], result["median_ratios"]
    print(f"{result['events']:,} events, {args.rounds} rounds, engine {result['engine']}, client {client}, defaults")
    for column in COLUMNS:
        print(
            f"  {column:<10} steady {m[column]['steady']:>10,.0f} ev/s   "
            f"start to end {m[column]['start_to_end']:>10,.0f} ev/s"
        )
    print(
        f"  livelearn / river: steady {ratios['livelearn_over_river_steady']:.2f}x, start to end "
        f"{ratios['livelearn_over_river_start_to_end']:.2f}x; livelearn / user loop: steady "
        f"{ratios['livelearn_over_user_loop_steady']:.2f}x, start to end "
        f"{ratios['livelearn_over_user_loop_start_to_end']:.2f}x (medians of the rounds' ratios)"
    )
    out = args.out or Path(__file__).parent / "results" / "learner.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
