"""Snapshot write and restore cost by model size, and the learner's stall around a snapshot.

Against a real redis-server (and, for the stall, a real Tansu broker) started by
:mod:`streaming.local.embedded`:

* **write / restore** of models with about 1k, 10k and 100k weights (one-hot categories: ``F`` string
  features with ``C`` values each, plus a few numbers, learned through the real model with its size caps;
  the state is a real :class:`LearnerState` with metrics, idempotence window and watch): ``--repeat``
  writes (capture the state + build its document + encode + SHA-256 + the Lua write script) and restores
  (read blob and metadata + verify + decode + build the model), p50 / p99 / max, the blob size, and the
  stages of a write (``capture``: the learner thread's part, the rest runs in the snapshot writer thread).
  ``before`` is the path before the writer thread, interleaved in the same run: the river-shaped document
  (``dump_state``: a ``{name: float}`` map of every weight), msgpack of the whole document, and a restore
  through that map;
* **stall** in a real :class:`~streaming.learner.runner.Learner` run with predictions on: the step of each run of
  events (``EventStep.process_run``: the events between two metric samples or captures, stepped together) is wrapped
  to timestamp it, the snapshot work (capture and write) is wrapped to know when it ran; the stall of a snapshot is
  the longest gap between two consecutive runs that overlaps its life, from the start of its capture (learner thread)
  to the end of its write (writer thread) — and, for a learner without the writer thread, of each piece of snapshot
  work. ``writer_thread_per_version`` is the writer thread's time on each version (its encode and its write, not the
  wait for the outputs between them). The longest gaps of the whole run are printed next to it (the machine's own
  noise: other jobs, the Kafka poll, GC). The events are produced before the learner starts, so the gaps are not waits
  for data. Each snapshot's longest gap is split (``stall_split``, :data:`SPLIT`): the learner thread on a CPU /
  waiting in the run queue for one / off CPU (the GIL, a socket), read from Linux's per-thread ``schedstat`` at both
  ends of the gap; the writer thread's CPU time in it; the cyclic GC (``gc.callbacks``), the Kafka poll and the
  capture inside it; ``longest_stalls_split_ms`` the 5 longest, whole; ``gc_collections`` the run's collections per
  generation (the one ~100 ms full collection is the learner's :func:`~streaming.runtime.refreeze` at activation,
  before its first event). Variants: ``now, unpaced`` lets the snapshot writer work while the learner is between
  batches (as before the pacing, :data:`~streaming.learner.writer.PACE_SECONDS`), ``now, 1 ms GIL slices`` sets the
  switch interval while it works.

Prints the figures and writes JSON (``--out``, default ``bench/results/snapshots.json``). The machine is
shared and noisy: compare ratios and repeat. Run: ``.venv/bin/python bench/snapshots.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from snapshotter import codec
from snapshotter.codec import FORMAT_VERSION, EncodedSnapshot, encode_snapshot, sha256_hex
from snapshotter.store import VersionStore, connect_settings
from streaming.config import Settings
from streaming.events import Event, encode_event
from streaming.learner import checkpoint, restore, runner, writer
from streaming.learner.restore import restore_state
from streaming.learner.runner import Learner
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.local.embedded import embedded_stack
from streaming.transport import ensure_topics, make_consumer, make_producer

#: model sizes: (string features, values per feature) -> about features x values weights
SIZES = {"1k": (10, 100), "10k": (50, 200), "100k": (100, 1000)}
STALL_VARIANTS = ("before", "now", "now, unpaced", "now, 1 ms GIL slices")  # the learner runs of each size


class _PlainPacker:
    """The encoder before the packing cache: msgpack of the whole document every time."""

    reused = 0

    @staticmethod
    def pack(doc: Any) -> bytes:
        return codec.pack(doc)


_CURRENT = (codec._PACKER, codec.gc_paused, restore.gc_paused)
#: the code as it is, and as it was before the packing cache and the GC pause (same run, interleaved)
VARIANTS = {
    "now": _CURRENT,
    "before": (_PlainPacker(), contextlib.nullcontext, contextlib.nullcontext),
}


PACE_SECONDS = writer.PACE_SECONDS


def use(variant: str) -> None:
    codec._PACKER, codec.gc_paused, restore.gc_paused = VARIANTS[variant]  # type: ignore[assignment]


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[max(0, round(0.99 * len(ordered)) - 1)] * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "n": len(ordered),
    }


#: how the longest gap around each snapshot is split (``stall_split``), measured per gap, in seconds
SPLIT = {
    "learner_on_cpu": "the learner thread ran on a CPU (Python, C, the poll's own work)",
    "learner_run_queue_wait": "the learner thread was runnable, waiting for a CPU (the machine's other load)",
    "learner_off_cpu": "the learner thread slept: waiting for the GIL, a socket (the poll), a lock",
    "writer_on_cpu": "the snapshot writer thread ran on a CPU meanwhile",
    "gc": "cyclic garbage collections (any thread) inside the gap",
    "gc_gen2": "of which full (generation 2) collections",
    "kafka_poll": "the Kafka poll inside the gap",
    "snapshot_work_learner_thread": "the snapshot work on the learner thread (capture) inside the gap",
    "without_run_queue_wait": "the gap minus the learner thread's run-queue wait",
}


class ThreadClock:
    """One thread's cumulative on-CPU and run-queue-wait nanoseconds (Linux ``/proc/.../schedstat``; ~0.5 us a
    read). Run-queue wait is the time the thread was runnable and no CPU was free: the machine's doing."""

    def __init__(self, native_id: int) -> None:
        try:
            self.fd: int | None = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
        except OSError:  # not Linux: zeros
            self.fd = None

    def read(self) -> tuple[int, int]:
        if self.fd is None:
            return 0, 0
        run, wait, _ = os.pread(self.fd, 80, 0).split()
        return int(run), int(wait)


def overlap(a: float, b: float, intervals: list[tuple[float, float]]) -> float:
    """Seconds of ``intervals`` inside ``[a, b]``."""
    return sum(min(b, e) - max(a, s) for s, e in intervals if s < b and e > a)


def wide_events(features: int, values: int, n: int, seed: int = 7) -> list[Event]:
    """``values`` rounds that teach every feature a new value, then ``n`` events of known values."""
    rng = random.Random(seed)
    events = []
    for i in range(values + n):
        v = i if i < values else rng.randrange(values)
        x: dict[str, Any] = {f"f{j}": f"v{v}" for j in range(features)}
        x["amount"] = rng.random() * 100
        x["pages"] = float(rng.randrange(20))
        events.append(Event(f"e{i}", 1_700_000_000_000 + i, x, label=rng.random() < 0.3, user_id=f"u{i % 500}"))
    return events


def learned_state(settings: Settings, features: int, values: int) -> LearnerState:
    state = LearnerState.fresh(spec_from_settings(settings), settings)
    for event in wide_events(features, values, 2000):
        x = state.model.encode(event.features, learn=True)
        p = state.model.predict_encoded(x)
        assert event.label is not None
        state.metrics.update(event.label, p)
        state.recent.seen_before(0, event.event_id)
        state.model.learn_encoded(x, event.label)
        state.counters["events_seen"] += 1
    return state


def write_restore(settings: Settings, repeat: int) -> dict[str, Any]:
    """Writes then restores of each size, the variants interleaved (one write or restore each in turn)."""
    client = connect_settings(settings)
    out: dict[str, Any] = {}
    for name, (features, values) in SIZES.items():
        state = learned_state(settings, features, values)
        weights = len(state.model.dump_state()["weights"])
        keys = ("capture", "dump", "encode", "sha", "write", "restore", "write_cpu", "restore_cpu")
        runs = {v: {k: [] for k in keys} for v in VARIANTS}
        stores = {v: VersionStore(client, f"bench-snap-{name}-{v}-{os.getpid()}", keep=5) for v in VARIANTS}
        numbers: dict[str, int] = {}
        sizes: dict[str, int] = {}
        gc.collect()
        for _ in range(repeat):
            for variant, r in runs.items():
                use(variant)
                t0 = time.perf_counter()
                captured = state.capture() if variant == "now" else None
                tc = time.perf_counter()
                snap = captured.document() if captured is not None else state.snapshot_state()
                t1 = time.perf_counter()
                blob = encode_snapshot(snap)
                t2 = time.perf_counter()
                sha256_hex(blob)
                t3 = time.perf_counter()
                r["capture"].append(tc - t0)
                r["dump"].append(t1 - tc)
                r["encode"].append(t2 - t1)
                r["sha"].append(t3 - t2)
                t0, c0 = time.perf_counter(), time.thread_time()
                doc = state.capture().document() if variant == "now" else state.snapshot_state()
                meta = stores[variant].write(
                    EncodedSnapshot.of(doc), writer="bench", lease_value=None, offsets={}, metrics={}, parent=None
                )
                r["write"].append(time.perf_counter() - t0)
                r["write_cpu"].append(time.thread_time() - c0)
                numbers[variant], sizes[variant] = meta.number, meta.size_bytes
        spec = spec_from_settings(settings)
        for _ in range(repeat):
            for variant, r in runs.items():
                use(variant)
                t0, c0 = time.perf_counter(), time.thread_time()
                _meta, loaded = stores[variant].load(numbers[variant], packed_weights=variant == "now")
                restored = restore_state(loaded, spec, settings.rolling_window)
                del _meta, loaded  # the decoded document: a restore frees it too
                r["restore"].append(time.perf_counter() - t0)
                r["restore_cpu"].append(time.thread_time() - c0)
                del restored  # freed outside the timing: a restore does not free the model it built
        use("now")
        out[name] = {
            "weights": weights,
            "blob_bytes": sizes["now"],
            **{
                variant: {
                    "write": stats(r["write"]),
                    "restore": stats(r["restore"]),
                    # CPU time of this process only (not redis-server's): the work, whatever the other load does
                    "write_cpu": stats(r["write_cpu"]),
                    "restore_cpu": stats(r["restore_cpu"]),
                    "stages_of_write": {
                        "capture": stats(r["capture"]),  # on the learner thread ("now"); the rest: writer thread
                        "dump_state": stats(r["dump"]),
                        "encode": stats(r["encode"]),
                        "sha256": stats(r["sha"]),
                    },
                }
                for variant, r in runs.items()
            },
        }
    return out


def stall(settings: Settings, features: int, values: int, events: int) -> dict[str, Any]:
    """A real learner over a backlog of wide events with predictions on: gaps between event steps."""
    ensure_topics(
        settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1}
    )
    producer = make_producer(settings, linger_ms=20, batch_size=256 * 1024)
    for event in wide_events(features, values, events - values):
        producer.send(settings.events_topic, key=(event.user_id or "").encode(), value=encode_event(event))
    producer.flush()
    producer.close()

    polls: list[tuple[float, float]] = []  # (start, end) of each Kafka poll: not the snapshot's doing

    def timed_consumer(*args: Any, **kwargs: Any) -> Any:
        consumer = make_consumer(*args, **kwargs)
        poll = consumer.poll

        def timed_poll(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return poll(*a, **k)
            finally:
                polls.append((t0, time.perf_counter()))

        consumer.poll = timed_poll
        return consumer

    runner.make_consumer = timed_consumer  # type: ignore[attr-defined]
    learner = Learner(settings, registry=CollectorRegistry())
    steps: list[tuple[float, float]] = []  # (start, end) of each event step
    # the learner thread's and the writer thread's schedstat (on-CPU ns, run-queue wait ns) at each step's start/end
    clocks: list[tuple[int, int, int, int, int, int, int, int]] = []
    work: list[tuple[float, float]] = []  # (start, end) of snapshot work
    work_cpu: list[float] = []  # its CPU time (this thread)
    process = learner.step.process_run
    learner_clock = ThreadClock(threading.get_native_id())
    writer_clock: list[ThreadClock] = []  # opened once the writer thread runs (on activation)
    no_clock = (0, 0)

    def timed_process(*args: Any, **kwargs: Any) -> Any:
        if not writer_clock and learner.checkpoints.writer is not None:
            writer_clock.append(ThreadClock(learner.checkpoints.writer._thread.native_id))
        w0 = writer_clock[0].read() if writer_clock else no_clock
        l0 = learner_clock.read()
        t0 = time.perf_counter()
        result = process(*args, **kwargs)
        t1 = time.perf_counter()
        l1 = learner_clock.read()
        w1 = writer_clock[0].read() if writer_clock else no_clock
        steps.append((t0, t1))
        clocks.append((*l0, *l1, *w0, *w1))
        return result

    learner.step.process_run = timed_process  # type: ignore[method-assign]
    checkpoints = learner.checkpoints
    background: list[tuple[float, float]] = []  # (start, end) of the writer thread's work (encode, write)
    background_cpu: list[float] = []
    written_after: list[float] = []  # capture → version written (the writer thread's queue, outputs, encode, write)
    lives: list[tuple[float, float]] = []  # (capture start, write end) of each snapshot written

    per_version: list[float] = []  # the writer thread's time on each version written (its encode and its write)
    pending_encode = [0.0]

    def timed(
        original: Any,
        into: list[tuple[float, float]],
        cpu: list[float],
        captured_arg: bool = False,
        piece: bool = False,
    ) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                into.append((t0, time.perf_counter()))
                cpu.append(time.thread_time() - c0)
                if piece and threading.get_ident() != learner_thread:
                    pending_encode[0] = into[-1][1] - t0
                if captured_arg:
                    per_version.append(pending_encode[0] + into[-1][1] - t0)
                    pending_encode[0] = 0.0
                    after = time.monotonic() - args[0].at
                    written_after.append(after)
                    end = time.perf_counter()
                    lives.append((end - after - args[0].seconds, end))

        return wrapped

    # the learner thread's part (older learners: snapshot, capture, write_captured), and the writer thread's
    for method in ("snapshot", "capture", "write_captured"):
        original = getattr(checkpoints, method, None)
        if original is not None:
            setattr(checkpoints, method, timed(original, work, work_cpu))
    encode_captured = getattr(checkpoint, "encode_captured", None)
    if encode_captured is not None:  # the writer thread (started on activation: patched before)
        checkpoint.encode_captured = timed(encode_captured, background, background_cpu, piece=True)  # type: ignore[attr-defined]
        checkpoints._write = timed(checkpoints._write, background, background_cpu, captured_arg=True)  # type: ignore[method-assign]
    collections: list[tuple[float, float, int, bool]] = []  # (start, end, generation, in the learner thread)
    learner_thread = threading.get_ident()
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections.append(
                (started[0], time.perf_counter(), info["generation"], threading.get_ident() == learner_thread)
            )

    gc.collect()
    gc.freeze()  # as `livelearn learn` does before its loop
    gc.callbacks.append(on_gc)
    t0 = time.perf_counter()
    try:
        learner.run(until_caught_up=True)
    finally:
        gc.callbacks.remove(on_gc)
    seconds = time.perf_counter() - t0
    gc.unfreeze()
    assert learner.counters["events_seen"] == events, learner.counters
    gaps = [(steps[i][1], steps[i + 1][0]) for i in range(len(steps) - 1)]
    around: list[float] = []
    around_without_poll: list[float] = []
    split: dict[str, list[float]] = {key: [] for key in SPLIT}
    # the longest gap overlapping each snapshot's life (or, for a learner without the writer thread, each piece)
    for start, end in lives or work:
        overlapping = [(i, a, b) for i, (a, b) in enumerate(gaps) if a <= end and b >= start]
        if overlapping:
            i, a, b = max(overlapping, key=lambda gap: gap[2] - gap[1])
            around.append(b - a)
            polled = overlap(a, b, polls)
            around_without_poll.append(b - a - polled)
            # where the gap went: the learner thread on a CPU, waiting for one, or neither (the GIL, a socket)
            run0, wait0, wrun0 = clocks[i][2], clocks[i][3], clocks[i][6]  # the end of the step before the gap
            run1, wait1, wrun1 = clocks[i + 1][0], clocks[i + 1][1], clocks[i + 1][4]  # the start of the one after
            split["learner_on_cpu"].append((run1 - run0) / 1e9)
            split["learner_run_queue_wait"].append((wait1 - wait0) / 1e9)
            split["learner_off_cpu"].append(max(0.0, b - a - (run1 - run0 + wait1 - wait0) / 1e9))
            split["writer_on_cpu"].append(max(0, wrun1 - wrun0) / 1e9)
            split["gc"].append(overlap(a, b, [(s, e) for s, e, _, _ in collections]))
            split["gc_gen2"].append(overlap(a, b, [(s, e) for s, e, g, _ in collections if g == 2]))
            split["kafka_poll"].append(polled)
            split["snapshot_work_learner_thread"].append(overlap(a, b, work))
            split["without_run_queue_wait"].append(b - a - (wait1 - wait0) / 1e9)
    others = sorted(b - a for a, b in gaps)
    return {
        "events": events,
        "weights": len(learner.state.model.dump_state()["weights"]),
        "events_per_second": events / seconds,
        "snapshot_work_pieces": len(work) + len(background),
        "snapshots_timed": len(lives or work),
        "writer_thread_work": stats([b - a for a, b in background]) if background else None,
        "writer_thread_work_cpu": stats(background_cpu) if background_cpu else None,
        "writer_thread_per_version": stats(per_version) if per_version else None,
        "capture_to_written": stats(written_after) if written_after else None,
        "snapshot_work": stats([b - a for a, b in work]) if work else None,
        "snapshot_work_cpu": stats(work_cpu) if work_cpu else None,
        "stall_around_snapshot": stats(around) if around else None,
        "stall_around_snapshot_without_kafka_poll": stats(around_without_poll) if around_without_poll else None,
        "gap_between_events_all": {
            "p50_us": statistics.median(others) * 1e6,
            "p99_us": others[round(0.99 * len(others)) - 1] * 1e6,
            "p999_ms": others[round(0.999 * len(others)) - 1] * 1e3,
            "longest_ms": [round(g * 1e3, 2) for g in others[-5:]],
        },
        "snapshots_written": learner.last_snapshot.number if learner.last_snapshot else 0,
        # the longest gap of each snapshot, split (seconds → ms stats across snapshots; see SPLIT)
        "stall_split": {key: stats(values) for key, values in split.items() if values},
        "longest_stalls_split_ms": [
            {"gap": round(around[j] * 1e3, 2), **{key: round(split[key][j] * 1e3, 2) for key in SPLIT}}
            for j in sorted(range(len(around)), key=around.__getitem__)[-5:]
        ],
        "gc_collections": {
            f"gen{g}": {
                "count": len(durations),
                "total_ms": sum(durations) * 1e3,
                "max_ms": max(durations, default=0.0) * 1e3,
                "in_learner_thread": sum(1 for s, e, gen, mine in collections if gen == g and mine),
            }
            for g in range(3)
            for durations in [[e - s for s, e, gen, _ in collections if gen == g]]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="writes and restores per model size")
    parser.add_argument("--stall-events", type=int, default=30_000, help="events in each learner run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "snapshots.json")
    parser.add_argument("--stall-only", action="store_true", help="the learner runs only (no write/restore loop)")
    parser.add_argument(
        "--stall-variant",
        action="append",
        choices=STALL_VARIANTS,
        help="a learner-run variant (repeatable; default all of them)",
    )
    args = parser.parse_args()
    variants = args.stall_variant or list(STALL_VARIANTS)
    result: dict[str, Any] = {"format_version": FORMAT_VERSION}
    with embedded_stack() as (broker, redis_server):
        base = {"kafka_bootstrap": broker.address, "redis_url": f"redis://{redis_server.address}/0"}
        result["sizes"] = {} if args.stall_only else write_restore(Settings(**base), args.repeat)
        result["stall"] = {}
        for name, (features, values) in (("dataset-like 1k", (10, 100)), ("100k", SIZES["100k"])):
            for run, variant in enumerate(variants):
                use(variant.split(",")[0])
                writer.SWITCH_INTERVAL = 0.001 if "1 ms" in variant else None  # while the writer works, or Python's
                # "unpaced": the writer works while the learner is between batches too (as before the pacing)
                writer.PACE_SECONDS = 0.0 if "unpaced" in variant else PACE_SECONDS
                tag = f"bench-stall-{name.split()[-1]}-{variant.replace(' ', '').replace(',', '-')}-{run}-{os.getpid()}"
                settings = Settings(**base, model_name=tag, events_topic=tag, snapshot_every_seconds=3600)
                key = f"{name}, {variant}" + (f" ({run})" if variants.count(variant) > 1 else "")
                result["stall"][key] = stall(settings, features, values, args.stall_events)
            use("now")
            writer.SWITCH_INTERVAL = None
            writer.PACE_SECONDS = PACE_SECONDS
    result["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "note": "shared 2-core VM, other jobs running: figures are noisy; 'before' and 'now' interleaved in one run",
    }
    print(f"snapshot format version {FORMAT_VERSION}; {args.repeat} writes and restores per size")
    for name, sized in result["sizes"].items():
        for variant in VARIANTS:
            r = sized[variant]
            w, rs, st = r["write"], r["restore"], r["stages_of_write"]
            print(
                f"  {name:>5} {variant:>6} ({sized['weights']:>6} weights, {sized['blob_bytes']:>9,} B)  write p50 "
                f"{w['p50_ms']:6.2f} p99 {w['p99_ms']:6.2f} max {w['max_ms']:6.2f} ms | restore p50 "
                f"{rs['p50_ms']:6.2f} p99 {rs['p99_ms']:6.2f} max {rs['max_ms']:6.2f} ms | dump "
                f"{st['dump_state']['p50_ms']:.2f} encode {st['encode']['p50_ms']:.2f} "
                f"(capture {st['capture']['p50_ms']:.2f}) "
                f"sha {st['sha256']['p50_ms']:.2f} ms (p50)"
            )
            wc, rc = r["write_cpu"], r["restore_cpu"]
            print(
                f"               CPU time of this process: write p50 {wc['p50_ms']:6.2f} p99 {wc['p99_ms']:6.2f} ms | "
                f"restore p50 {rc['p50_ms']:6.2f} p99 {rc['p99_ms']:6.2f} ms"
            )
    for name, r in result["stall"].items():
        s = r["stall_around_snapshot"] or {}
        print(
            f"  stall, learner run '{name}' ({r['weights']} weights, {r['events']:,} events, predictions on, "
            f"{r['events_per_second']:,.0f} ev/s): around {r['snapshots_timed']} snapshots "
            f"p50 {s.get('p50_ms', 0):.2f} p99 {s.get('p99_ms', 0):.2f} max {s.get('max_ms', 0):.2f} ms; "
            f"gap between events p50 {r['gap_between_events_all']['p50_us']:.0f} us, p99.9 "
            f"{r['gap_between_events_all']['p999_ms']:.2f} ms, longest {r['gap_between_events_all']['longest_ms']} ms"
        )
        n = r["stall_around_snapshot_without_kafka_poll"] or {}
        print(
            f"        the same gaps without the Kafka poll in them: p50 {n.get('p50_ms', 0):.2f} "
            f"p99 {n.get('p99_ms', 0):.2f} max {n.get('max_ms', 0):.2f} ms"
        )
        w, c = r["snapshot_work"] or {}, r["snapshot_work_cpu"] or {}
        print(
            f"        learner thread's snapshot work per piece: wall p50 {w.get('p50_ms', 0):.2f} "
            f"p99 {w.get('p99_ms', 0):.2f} ms, CPU p50 {c.get('p50_ms', 0):.2f} p99 {c.get('p99_ms', 0):.2f} ms"
        )
        if r["writer_thread_work"]:
            w, c, a = r["writer_thread_work"], r["writer_thread_work_cpu"], r["capture_to_written"] or {}
            print(
                f"        writer thread's work per piece (encode or write): wall p50 {w['p50_ms']:.2f} "
                f"p99 {w['p99_ms']:.2f} ms, CPU p50 {c['p50_ms']:.2f} p99 {c['p99_ms']:.2f} ms; capture to "
                f"written p50 {a.get('p50_ms', 0):.2f} p99 {a.get('p99_ms', 0):.2f} ms"
            )
            v = r["writer_thread_per_version"] or {}
            print(
                f"        writer thread's time per version (its encode and write): p50 {v.get('p50_ms', 0):.2f} "
                f"p99 {v.get('p99_ms', 0):.2f} max {v.get('max_ms', 0):.2f} ms"
            )
        if r.get("stall_split"):
            sp = r["stall_split"]
            print(
                "        the same gaps split (p50/p99 ms): "
                + ", ".join(f"{key} {sp[key]['p50_ms']:.2f}/{sp[key]['p99_ms']:.2f}" for key in SPLIT if key in sp)
            )
            print(
                "        GC in the run: "
                + ", ".join(
                    f"{g} {c['count']}x {c['total_ms']:.1f} ms (max {c['max_ms']:.2f})"
                    for g, c in r["gc_collections"].items()
                )
            )
            for row in r["longest_stalls_split_ms"][::-1][:3]:
                print(f"        a longest gap: {row}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
