"""The benchmarks run end to end and write the figures they promise (a smoke test with tiny loads, not a timing).

Each runs as the README says (``python bench/NAME.py``), in a child process with its own embedded servers, and
must exit 0 with its JSON keys in place: a bench broken by a change (an interface it used moved) is caught here,
not by the next person measuring. The figures themselves are not judged: they belong to the benchmarks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_bench(name: str, out: Path, *args: str, timeout: float = 600) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"bench/{name}.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_learner_bench_compares_livelearn_river_and_the_user_loop_round_by_round(tmp_path):
    result = run_bench("learner", tmp_path / "learner.json", "--repeat", "1", "--rounds", "2")
    assert result["events"] == 12_330 and result["settings"] == "defaults"
    first, second = result["rounds"]
    assert first["order"] != second["order"]  # interleaved: the order rotates
    for column in ("livelearn", "river", "user_loop"):
        assert first[column]["steady"] > 0 and first[column]["start_to_end"] > 0
    assert first["livelearn_over_river_steady"] == pytest.approx(
        first["livelearn"]["steady"] / first["river"]["steady"]
    )


def test_learner_bench_times_the_step_in_process_on_both_engines(tmp_path):
    result = run_bench("learner", tmp_path / "step.json", "--step", "--repeat", "1", "--rounds", "1")
    assert result["events"] == 12_330
    assert set(result["us_per_event"]) == {"compiled", "river"} and all(v > 0 for v in result["us_per_event"].values())


def test_learner_bench_stages_measure_end_to_end_against_bare_river(tmp_path):
    result = run_bench("learner", tmp_path / "learner.json", "--repeat", "1", "--stages")
    assert result["events"] == 12_330
    assert result["end_to_end"]["events_per_second"] > 0 and result["bare_river_loop"]["events_per_second"] > 0


def test_freshness_bench_sees_every_event_served(tmp_path):
    result = run_bench("freshness", tmp_path / "freshness.json", "--rates", "100", "--seconds", "3", "--grace", "60")
    (rate,) = result["rates"]
    assert rate["events"] == 300
    assert rate["unserved_within_grace"] == 0
    assert rate["freshness"]["n"] == 300 and rate["freshness"]["p50_s"] <= rate["freshness"]["p99_s"]
    assert rate["p99_counting_unserved_s"] == rate["freshness"]["p99_s"] and rate["unserved_tail"] is None


def test_freshness_bench_with_labels_later_sees_every_label_served(tmp_path):
    args = ("--label-delay", "30s..2m", "--rates", "100", "--seconds", "3", "--grace", "60")
    result = run_bench("freshness", tmp_path / "freshness-labels.json", *args)
    (rate,) = result["rates"]
    assert rate["events"] == rate["labels"] == 300 and rate["label_wait_event_time_s"] == 240
    assert rate["labels_unserved_within_grace"] == 0 and rate["label_to_served"]["n"] == 300
    assert rate["join_counts"]["matched"] == 300 and rate["join_pending_at_end"] == 0
    assert rate["newest_version_offsets"]["events.labels"] == {"0": 300}  # the labels topic, read to its end


def test_rollback_serving_bench_times_a_real_rollback_and_the_routes(tmp_path):
    result = run_bench("rollback_serving", tmp_path / "rollback.json", "--manual", "2", "--requests", "50")
    automatic = result["automatic_rollback"]  # the burst's rollback was seen, applied and served
    assert automatic["to"] <= automatic["from"] and automatic["decision_to_learner_ms"] >= 0
    assert automatic["decision_to_serving_ms"] >= 0
    assert result["manual_rollback"]["to_serving"]["n"] == 2
    assert result["serving_latency"]["predict"]["n"] == 50


def test_snapshots_bench_writes_restores_and_times_the_stall(tmp_path):
    result = run_bench(
        "snapshots", tmp_path / "snapshots.json", "--repeat", "3", "--stall-events", "3000", "--stall-variant", "now"
    )
    big = result["sizes"]["100k"]
    assert big["weights"] >= 100_000
    assert big["now"]["write"]["n"] == 3 and big["now"]["restore"]["n"] == 3
    stall = result["stall"]["100k, now"]
    assert stall["events"] == 3000 and stall["snapshots_written"] >= 1
    assert stall["stall_around_snapshot"]["n"] >= 1
    assert set(result["stall"]) == {"dataset-like 1k, now", "100k, now"}  # the variants asked for, no others


def test_labels_bench_measures_the_join_under_each_flood(tmp_path):
    result = run_bench("labels", tmp_path / "labels.json", "--events", "20000")
    scenarios = result["scenarios"]
    assert set(scenarios) == {
        "pending_1e6",
        "unlabelled_defaults",
        "unlabelled_byte_bound",
        "orphan_flood",
        "scored_labelled",
    }
    for figures in scenarios.values():
        assert figures["within_bounds"] and figures["calls_per_second"] > 0 and figures["rss_peak_growth_mib"] >= 0
    assert scenarios["pending_1e6"]["join"]["pending"] == 20_000
    assert scenarios["orphan_flood"]["join"]["orphans"] == 10_000  # the default orphan bound holds
    assert scenarios["orphan_flood"]["join"]["orphans_evicted"] == 10_000


def test_challengers_bench_times_the_step_with_and_without_a_challenger(tmp_path):
    result = run_bench("challengers", tmp_path / "challengers.json", "--events", "3000", "--rounds", "2")
    variants = result["variants"]
    assert set(variants) == {"champion_only", "one_challenger", "one_challenger_segments"}
    assert variants["champion_only"]["overhead_median"] == 0
    for figures in variants.values():
        assert figures["us_per_event_median"] > 0
        assert figures["events_per_cpu_second"] == pytest.approx(1e6 / figures["us_per_event_median"])


def test_promotion_bench_serves_each_promotion_and_abort_without_failing_a_request(tmp_path):
    result = run_bench("promotion", tmp_path / "promotion.json", "--switches", "2", "--aborts", "1", "--clients", "2")
    assert result["failed_requests"] == 0, result["failures_first"]  # a request failed under the moves: a bug
    assert result["answers_from_the_old_arm_after_a_move"] == 0
    assert result["switch_to_served"]["n"] == 2 and result["switch_to_learner"]["n"] == 2
    assert result["canary_abort"]["n"] == 1
    for figures in (result["switch_to_served"], result["switch_to_learner"], result["canary_abort"]):
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert result["champion_at_the_end"] == "base"  # fast, then backed out
    assert result["requests"] > 0 and result["requests_per_second"] > 0 and result["clients"] == 2
    assert len(result["machine"]["load_average"]) == 3


def test_archive_bench_exports_and_imports_every_version_byte_for_byte(tmp_path):
    result = run_bench("archive", tmp_path / "archive.json", "--versions", "3")
    for where in ("s3", "directory"):
        assert result[where]["byte_identical"] == result[where]["versions"] == 3
        assert result[where]["export_seconds"] > 0 and result[where]["import_seconds"] > 0


def test_rebuild_bench_times_a_rebuild_against_the_live_learner(tmp_path):
    result = run_bench("rebuild", tmp_path / "rebuild.json", "--events", "3000", "--live-events", "2000")
    assert result["rebuild"]["events"] == 3000 and result["rebuild"]["versions"] == 1
    assert result["ratio_rebuild_over_live"] == pytest.approx(
        result["rebuild"]["events_per_second"] / result["live"]["events_per_second"], rel=0.01
    )
