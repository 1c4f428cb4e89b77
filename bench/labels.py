"""The label join's memory under floods: does it stay within its configured bounds, and how fast is it?

:class:`~streaming.learner.join.LabelJoin` alone (pure, no broker), fed the bundled dataset's feature dicts
(:func:`~streaming.local.dataset.read_events`, cycled with fresh ids, ``ts`` 1 ms apart: 1,000 events/s of event
time) the way the learner feeds it (``advance`` for the record's ``ts`` and partition, then ``scored`` /
``labelled``; no partition behind):

* ``pending_1e6``: ``--events`` events that all wait (``max_pending`` = the events, ``max_bytes`` 16 GiB, the
  largest the settings accept; a 30-day wait): what each waiting event really costs against the join's own
  estimate (``bytes``: packed features + ``ENTRY_OVERHEAD``);
* ``unlabelled_defaults``: the default settings (30 min wait), events whose labels never come: the count bound
  (100,000) ends the oldest;
* ``unlabelled_byte_bound``: the same with ``max_pending`` 10⁶, so the byte bound (32 MiB, the default) ends them;
* ``orphan_flood``: defaults, labels for ids no event ever had: the orphan bound (10,000) holds them;
* ``scored_labelled``: defaults, every event labelled 1,000 events (1 s of event time) later: the throughput of
  the pair (``scored`` + ``labelled`` calls per second) and what stays in memory while about 1,000 wait (and the
  10th events whose labels never come, up to the count bound).

The wall clock the join is given stands still (past every ``ts``): each source read stays recent, so it holds the
watermark (:data:`~streaming.learner.join.IDLE_AFTER_MS`) as in a learner reading both topics all along.

Each scenario runs in a child process of its own. Memory is the resident set from ``/proc/self/status``: the
peak (``VmHWM``, reset through ``/proc/self/clear_refs`` once the dataset is loaded, so it is the scenario's own)
and the resident set at the end with the join still alive, each minus the resident set before the scenario. The
resident set rather than :mod:`tracemalloc`: it is what a container's memory limit sees (the allocator's
fragmentation and free lists included), and it costs nothing while measuring, where tracemalloc slows every
allocation several times over and would spoil the throughput figures.

The join's module is loaded alone (:func:`load_join`), not through ``streaming.learner``, whose package imports
the whole learner. Prints the figures and writes JSON (``--out``, default ``bench/results/labels.json``).
``--events`` scales every scenario (the smoke test runs 20,000). Run: ``.venv/bin/python bench/labels.py``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

from streaming.local.dataset import read_events

if TYPE_CHECKING:
    from streaming.learner.join import LabelJoin

MIB = 1024 * 1024
BASE_TS = 1_700_000_000_000
DEFAULT_WAIT_MS = 30 * 60_000
ALL = 0  # a bound as large as the events the run feeds


class Bounds(TypedDict, total=False):
    """The join's bounds a scenario sets (the others: their defaults, the settings' defaults too)."""

    max_pending: int
    max_bytes: int


#: each scenario's wait and bounds
SCENARIOS: dict[str, tuple[int, Bounds]] = {
    "pending_1e6": (30 * 86_400_000, {"max_pending": ALL, "max_bytes": 16 * 1024**3}),
    "unlabelled_defaults": (DEFAULT_WAIT_MS, {}),
    "unlabelled_byte_bound": (DEFAULT_WAIT_MS, {"max_pending": 1_000_000}),
    "orphan_flood": (DEFAULT_WAIT_MS, {}),
    "scored_labelled": (DEFAULT_WAIT_MS, {}),
}
EVENTS, LABELS = ("events", 0), ("labels", 0)  # the join's sources: one partition of each topic
LABEL_LAG = 1_000  # scored_labelled: each label comes this many events after its event,
UNLABELLED_EVERY = 10  # but for every 10th event, whose label never comes


def load_join() -> ModuleType:
    """``streaming/learner/join.py`` alone (it needs msgpack only): ``import streaming.learner.join`` runs
    ``streaming/learner/__init__.py`` first, which imports the whole learner (river, numba, the Kafka and Redis
    clients: about 1.3 s here, and their memory in every scenario's resident set)."""
    package = importlib.util.find_spec("streaming")
    assert package is not None
    assert package.submodule_search_locations is not None
    path = Path(next(iter(package.submodule_search_locations))) / "learner" / "join.py"
    spec = importlib.util.spec_from_file_location("streaming.learner.join", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up by name)
    spec.loader.exec_module(module)
    return module


def status_kib(field: str) -> int:
    """A figure of ``/proc/self/status`` in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class Heaps:
    """The most entries each of the join's heaps held (live and stale: what memory they take), sampled."""

    def __init__(self) -> None:
        self.pending = self.orphans = 0

    def sample(self, join: LabelJoin) -> None:
        self.pending = max(self.pending, len(join._pending_heap))
        self.orphans = max(self.orphans, len(join._orphan_heap))


def feed_events(join: LabelJoin, features: list[dict[str, Any]], n: int, heaps: Heaps) -> None:
    for i in range(n):
        ts = BASE_TS + i
        join.advance(ts, EVENTS)
        join.scored(f"session-{i:07d}", ts, 0.5, features[i % len(features)])
        if i % 10_000 == 0:
            heaps.sample(join)


def feed_orphans(join: LabelJoin, _features: list[dict[str, Any]], n: int, heaps: Heaps) -> None:
    for i in range(n):
        ts = BASE_TS + i
        join.advance(ts, LABELS)
        join.labelled(f"unknown-{i:07d}", ts, i % 7 == 0)
        if i % 10_000 == 0:
            heaps.sample(join)


def feed_pairs(join: LabelJoin, features: list[dict[str, Any]], n: int, heaps: Heaps) -> None:
    for i in range(n + LABEL_LAG):
        ts = BASE_TS + i
        if i < n:
            join.advance(ts, EVENTS)
            join.scored(f"session-{i:07d}", ts, 0.5, features[i % len(features)])
        labelled = i - LABEL_LAG
        if labelled >= 0 and labelled % UNLABELLED_EVERY:
            join.advance(ts, LABELS)
            join.labelled(f"session-{labelled:07d}", ts, i % 7 == 0)
        if i % 10_000 == 0:
            join.take_delays()  # as the learner does for its histogram,
            join.figures()  # and its status
            heaps.sample(join)


#: each scenario's feed and its calls per event
FEEDS: dict[str, tuple[Callable[[LabelJoin, list[dict[str, Any]], int, Heaps], None], float]] = {
    "pending_1e6": (feed_events, 1),
    "unlabelled_defaults": (feed_events, 1),
    "unlabelled_byte_bound": (feed_events, 1),
    "orphan_flood": (feed_orphans, 1),
    "scored_labelled": (feed_pairs, 2 - 1 / UNLABELLED_EVERY),  # scored, and labelled but for every 10th
}


def run_scenario(name: str, n: int) -> dict[str, Any]:
    """One scenario in this process: figures of the join and of the resident set."""
    started = time.perf_counter()
    join_module = load_join()
    import_seconds = time.perf_counter() - started
    features = [event.features for event in read_events()]
    wait_ms, bounds = SCENARIOS[name]
    if bounds.get("max_pending") == ALL:
        bounds = {**bounds, "max_pending": n}
    join: LabelJoin = join_module.LabelJoin(wait_ms, clock_ms=lambda: BASE_TS + n, **bounds)  # past every ts
    feed, calls = FEEDS[name]
    heaps = Heaps()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the scenario's own peak
    before = status_kib("VmRSS")
    started = time.perf_counter()
    feed(join, features, n, heaps)
    seconds = time.perf_counter() - started
    peak, end = status_kib("VmHWM"), status_kib("VmRSS")
    heaps.sample(join)
    figures = join.figures()
    growth_peak = (peak - before) * 1024
    return {
        "events" if name != "orphan_flood" else "labels": n,
        "bounds": {k: getattr(join, k) for k in ("max_pending", "max_bytes", "max_orphans", "remember")},
        "wait_ms": join.wait_ms,
        "seconds": round(seconds, 3),
        "calls_per_second": round(calls * n / seconds),
        "join": {k: figures[k] for k in ("pending", "pending_bytes", "orphans", "evicted", "expired", "matched")}
        | {"orphans_evicted": figures["orphans_evicted"], "remembered": len(join.resolved)},
        "within_bounds": len(join.pending) <= join.max_pending
        and join.bytes <= join.max_bytes
        and len(join.orphans) <= join.max_orphans
        and heaps.pending <= 2 * join.max_pending + 1025
        and heaps.orphans <= 2 * join.max_orphans + 1025,
        # entries of events matched (or labels met) before their time stay in the heaps, not counted in bytes,
        # until they outnumber the live ones 2x + 1024 (then the heap is rebuilt): the most each held, sampled
        "heap_entries_max": {"pending": heaps.pending, "orphans": heaps.orphans},
        "import_join_seconds": round(import_seconds, 3),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_growth_mib": round(growth_peak / MIB, 1),
        "rss_end_growth_mib": round((end - before) / 1024, 1),
        "peak_growth_over_join_bytes": round(growth_peak / join.bytes, 2) if join.bytes else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "note": "shared 2-core VM: throughput is noisy; memory figures are the resident set (VmHWM / VmRSS)",
        },
        "settings": {"events": args.events, "label_lag_events": LABEL_LAG},
        "scenarios": {},
    }
    for name in args.only.split(",") if args.only else SCENARIOS:
        done = subprocess.run(
            [sys.executable, __file__, "--scenario", name, "--events", str(args.events)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"scenario {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.splitlines()[-1])
        result["scenarios"][name] = figures
        show(name, figures)
    return result


def show(name: str, r: dict[str, Any]) -> None:
    j, b = r["join"], r["bounds"]
    print(
        f"{name}: {r['calls_per_second']:,} calls/s; pending {j['pending']:,}/{b['max_pending']:,}, "
        f"{j['pending_bytes'] / MIB:.1f}/{b['max_bytes'] / MIB:,.0f} MiB, "
        f"orphans {j['orphans']:,}/{b['max_orphans']:,}, "
        f"evicted {j['evicted']:,}, orphans evicted {j['orphans_evicted']:,}; RSS +{r['rss_peak_growth_mib']:.1f} MiB "
        f"peak, +{r['rss_end_growth_mib']:.1f} MiB at the end; heap entries {r['heap_entries_max']['pending']:,}"
        f" + {r['heap_entries_max']['orphans']:,}" + ("" if r["within_bounds"] else "  ** OVER ITS BOUNDS **")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events (or labels) each scenario feeds")
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/labels.json"))
    parser.add_argument("--scenario", help=argparse.SUPPRESS)  # internal: run one scenario in this process
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.events)))
        return
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
