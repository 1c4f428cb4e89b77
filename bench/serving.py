"""Throughput and latency of `livelearn serve` under load, against a bare FastAPI app in the same run.

Starts an embedded broker and redis-server, learns part of the bundled dataset so a serving version exists,
then starts three HTTP servers as child processes, each with the same uvicorn settings (httptools, uvloop,
no access log):

* **bare**: a FastAPI app whose ``POST /predict`` returns a constant JSON document (the reference);
* **livelearn, 1 worker**: ``livelearn serve``;
* **livelearn, 2 workers**: ``livelearn serve --workers 2``.

It waits for each to be ready by polling its port (never a fixed sleep), then loads each in turn with ``wrk``
(32 connections, one thread, a ``POST /predict`` of a real feature row from the dataset): a short warm-up,
then a measured run, for several rounds with the targets interleaved, so the machine's other load hits each
target alike. Prints requests/s and p50/p99 per target (median over the rounds), the ratios that matter
(1 worker / bare, p99 1 worker / bare, 2 workers / 1 worker, also per round), and writes JSON (``--out``).
It also counts the CPU time the server (with its workers) and ``wrk`` used during each measured run: on 2
cores shared with ``wrk``, the 2-worker requests/s ratio is bounded by the cores left to the servers, so the
requests per server core show whether the workers themselves scale.

Absolute numbers depend on the machine and whatever else runs on it; the ratios are the result. ``wrk`` is a
Debian package: when it is missing the script installs it (``apt-get install -y wrk``) if run as root, else
says how. Run: ``.venv/bin/python bench/serving.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from streaming.config import Settings
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack, free_port
from streaming.local.replay import replay
from streaming.transport import ensure_topics, make_producer

ENV = {"LIVELEARN_PROMOTION": "immediate", "LIVELEARN_SNAPSHOT_EVERY_EVENTS": "500", "LIVELEARN_LOG_LEVEL": "WARNING"}
WORKER_HEADER = "x-livelearn-worker"

LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"max_us\\": %%d, \\"connect_errors\\": %%d, \\"read_errors\\": %%d, \\"write_errors\\": %%d, " ..
    "\\"non_2xx\\": %%d, \\"timeouts\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
end
"""


# -- the reference app ---------------------------------------------------------------------------------------
def serve_bare(port: int) -> None:
    """The bare reference: FastAPI, one async route answering a constant JSON document, same uvicorn settings."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    answer = {"probability": 0.5, "label": False, "version": 1, "model": "bare", "event_id": None}

    @app.post("/predict")
    async def predict() -> dict[str, object]:
        return answer

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", timeout_graceful_shutdown=5)


# -- helpers -------------------------------------------------------------------------------------------------
def ensure_wrk() -> str:
    """Path of ``wrk``; installed with apt-get when missing and running as root, else a message saying how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: run `sudo apt-get install -y wrk` (Debian/Ubuntu), then run this again")
    print("wrk is not installed: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get did not install wrk; install it by hand and run this again")
    return found


class Child:
    """A server child process with its output in a log file (shown if it dies)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path, port: int) -> None:
        self.name, self.port = name, port
        self.log = logs / f"{name.replace(' ', '-')}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def died(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return f"{self.name} exited with code {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"

    def wait_ready(self, timeout: float = 60.0, workers: int = 1) -> set[str]:
        """Poll the readiness route until it answers 200 (a refused connection means: not listening yet) and,
        with several workers, until each has answered once; returns the worker ids seen."""
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        ready = False
        while time.monotonic() < deadline:
            problem = self.died()
            if problem:
                raise RuntimeError(problem)
            try:  # a new connection each time, so the kernel may hand it to any worker
                response = httpx.get(f"{self.base}/v2/health/ready", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                ready = True
                if WORKER_HEADER in response.headers:
                    seen.add(response.headers[WORKER_HEADER])
                if len(seen) >= workers or workers == 1:
                    return seen
            time.sleep(0.02)
        if ready:
            return seen  # ready, but not every worker answered a readiness probe in time: measured anyway
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; log {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_wrk(
    wrk: str, script: Path, base: str, *, seconds: float, connections: int, threads: int, cpus: set[int] | None = None
) -> dict:
    """One wrk run (on ``cpus`` only, when given); its summary (from the script's ``done``) plus requests/s."""
    out = subprocess.run(
        [
            *(["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []),
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"{base}/predict",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^RESULT (.*)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "non_2xx", "timeouts"))
    return result


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (uvicorn's workers), from ``/proc``."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ... utime(12) stime(13)
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(p, 0.0) for p in tree)


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children so far (each finished ``wrk`` run adds its own)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def counter_total(base: str, name: str) -> float:
    """Sum of a counter's samples on ``/metrics`` (every model label)."""
    text = httpx.get(f"{base}/metrics/", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


# -- the run ---------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    wrk = ensure_wrk()
    logs = Path(tempfile.mkdtemp(prefix="livelearn-bench-serving-"))
    with embedded_stack() as (broker, redis_server):
        settings = Settings(kafka_bootstrap=broker.address, redis_url=f"redis://{redis_server.address}/0")
        ensure_topics(
            settings, {settings.events_topic: 1, settings.dead_letter_topic_name: 1, settings.predictions_topic_name: 1}
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")},
            **ENV,
            "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LIVELEARN_REDIS_URL": settings.redis_url,
        }
        events = list(read_events(limit=args.events))
        producer = make_producer(settings, linger_ms=5)
        replay(producer, settings.events_topic, events, rate=0)
        producer.close()
        learn = subprocess.run(
            [sys.executable, "-m", "streaming", "learn", "--until-caught-up"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if learn.returncode != 0:
            raise RuntimeError(f"the learner failed:\n{learn.stdout[-2000:]}{learn.stderr[-2000:]}")

        body = json.dumps({"features": events[-1].features})
        script = logs / "predict.lua"
        script.write_text(LUA % {"body": body})
        serve = [sys.executable, "-m", "streaming", "serve", "--host", "127.0.0.1"]
        children: dict[str, Child] = {}
        # Single-process servers and wrk wake each other over loopback, and the scheduler then tends to keep them on
        # one core (wake-affine): a one-worker server got 0.57-0.85 cores while wrk waited. So the bare app and the
        # one-worker server run on one core and wrk on the other; the two-worker server and wrk share both cores.
        cpus = sorted(os.sched_getaffinity(0))
        pinned = args.pin and len(cpus) >= 2 and shutil.which("taskset") is not None
        server_cpu, wrk_cpu = cpus[0], cpus[-1]
        args.pinned = pinned
        try:
            for name, command in (
                ("bare FastAPI", [sys.executable, __file__, "--bare-app"]),
                ("livelearn 1 worker", [*serve, "--workers", "1"]),
                ("livelearn 2 workers", [*serve, "--workers", "2"]),
            ):
                pin = ["taskset", "-c", str(server_cpu)] if pinned and "2 workers" not in name else []
                port = free_port()
                children[name] = Child(name, [*pin, *command, "--port", str(port)], env, logs, port)
            workers_seen = {
                name: sorted(child.wait_ready(workers=2 if "2" in name else 1)) for name, child in children.items()
            }
            for child in children.values():  # each answers /predict before it is loaded
                httpx.post(
                    f"{child.base}/predict", content=body, headers={"content-type": "application/json"}, timeout=10
                ).raise_for_status()

            load_before = os.getloadavg()
            runs: dict[str, list[dict]] = {name: [] for name in children}
            sent: dict[str, int] = dict.fromkeys(children, 1)
            for round_ in range(args.rounds):
                for name, child in children.items():
                    options: dict[str, Any] = {"connections": args.connections, "threads": args.threads}
                    if pinned and "2 workers" not in name:  # one core for the server, the other for wrk
                        options["cpus"] = {wrk_cpu}
                    warm = run_wrk(wrk, script, child.base, seconds=args.warmup, **options)
                    server0, wrk0 = tree_cpu_seconds(child.proc.pid), children_cpu_seconds()
                    measured = run_wrk(wrk, script, child.base, seconds=args.seconds, **options)
                    seconds = measured["duration_us"] / 1e6
                    measured["server_cores"] = (tree_cpu_seconds(child.proc.pid) - server0) / seconds
                    measured["wrk_cores"] = (children_cpu_seconds() - wrk0) / seconds
                    measured["rps_per_server_core"] = measured["rps"] / max(measured["server_cores"], 1e-9)
                    sent[name] += warm["requests"] + measured["requests"]
                    runs[name].append(measured)
                    print(
                        f"round {round_ + 1}/{args.rounds} {name:<20} {measured['rps']:8.0f} req/s  "
                        f"p50 {measured['p50_us'] / 1e3:6.2f} ms  p99 {measured['p99_us'] / 1e3:7.2f} ms  "
                        f"errors {measured['errors']}  server {measured['server_cores']:.2f} cores, "
                        f"wrk {measured['wrk_cores']:.2f} cores",
                        flush=True,
                    )
            load_after = os.getloadavg()
            counted = {
                name: counter_total(child.base, "livelearn_serving_predictions_total")
                for name, child in children.items()
                if name != "bare FastAPI"
            }
        finally:
            for child in children.values():
                child.stop()
    return summarise(args, runs, sent, counted, workers_seen, load_before=load_before, load_after=load_after)


def summarise(args, runs, sent, counted, workers_seen, *, load_before, load_after) -> dict:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    bare, one, two = "bare FastAPI", "livelearn 1 worker", "livelearn 2 workers"
    targets = {
        name: {
            "rps": median(name, "rps"),
            "p50_ms": median(name, "p50_us") / 1e3,
            "p99_ms": median(name, "p99_us") / 1e3,
            "server_cores": median(name, "server_cores"),
            "wrk_cores": median(name, "wrk_cores"),
            "rps_per_server_core": median(name, "rps_per_server_core"),
            "errors": sum(r["errors"] for r in runs[name]),
            "runs": runs[name],
        }
        for name in runs
    }
    per_round = [
        {
            "one_worker_over_bare_rps": runs[one][i]["rps"] / runs[bare][i]["rps"],
            "one_worker_over_bare_p99": runs[one][i]["p99_us"] / runs[bare][i]["p99_us"],
            "two_workers_over_one_rps": runs[two][i]["rps"] / runs[one][i]["rps"],
        }
        for i in range(args.rounds)
    ]
    return {
        "targets": targets,
        "ratios": {
            "one_worker_over_bare_rps": targets[one]["rps"] / targets[bare]["rps"],
            "one_worker_over_bare_p99": targets[one]["p99_ms"] / targets[bare]["p99_ms"],
            "two_workers_over_one_rps": targets[two]["rps"] / targets[one]["rps"],
            # per CPU core the servers got: ~1.0 means the workers share nothing that slows them (the rps ratio
            # is then set by how many cores are left to the servers next to wrk and the machine's other load)
            "two_workers_over_one_rps_per_server_core": (
                targets[two]["rps_per_server_core"] / targets[one]["rps_per_server_core"]
            ),
        },
        "ratios_per_round": per_round,
        "predictions_counted_by_metrics": {
            name: {"metrics": counted[name], "requests_completed_by_wrk": sent[name]} for name in counted
        },
        "workers_seen": workers_seen,
        "load": {
            "wrk": {
                "connections": args.connections,
                "threads": args.threads,
                "seconds": args.seconds,
                "warmup_seconds": args.warmup,
                "rounds": args.rounds,
            },
            "pinned": args.pinned,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
    }


def report(result: dict) -> None:
    print()
    print(f"{'target':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}   (median of rounds)")
    for name, t in result["targets"].items():
        print(f"{name:<22}{t['rps']:>10.0f}{t['p50_ms']:>10.2f}{t['p99_ms']:>10.2f}{t['errors']:>8}")
    r = result["ratios"]
    print(f"livelearn 1 worker / bare, req/s:    {r['one_worker_over_bare_rps']:.2f}  (target >= 0.8)")
    print(f"livelearn 1 worker / bare, p99:      {r['one_worker_over_bare_p99']:.2f}  (target <= 2)")
    print(f"livelearn 2 workers / 1 worker, req/s: {r['two_workers_over_one_rps']:.2f}  (target >= 1.8)")
    two, one = result["targets"]["livelearn 2 workers"], result["targets"]["livelearn 1 worker"]
    print(
        f"  the servers got {one['server_cores']:.2f} cores (1 worker) and {two['server_cores']:.2f} cores "
        f"(2 workers), wrk {two['wrk_cores']:.2f}; per server core: "
        f"{r['two_workers_over_one_rps_per_server_core']:.2f} (2 workers / 1 worker, req/s per core)"
    )
    rounds = result["ratios_per_round"]
    for key in ("one_worker_over_bare_rps", "one_worker_over_bare_p99", "two_workers_over_one_rps"):
        print(f"  per round {key}: " + ", ".join(f"{x[key]:.2f}" for x in rounds))
    for name, c in result["predictions_counted_by_metrics"].items():
        print(
            f"{name}: /metrics counted {c['metrics']:.0f} predictions; wrk completed {c['requests_completed_by_wrk']}"
        )
    m = result["machine"]
    print(
        f"machine: {m['cpu_count']} cores, load average {result['load']['loadavg_before'][0]:.2f} before / "
        f"{result['load']['loadavg_after'][0]:.2f} after; "
        + (
            "bare and 1 worker pinned to one core, wrk to the other; 2 workers and wrk share both"
            if result["load"]["pinned"]
            else "wrk and the servers share the cores"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three targets")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the single-process servers to one core and wrk to another",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (it shares the cores with the servers)")
    parser.add_argument("--events", type=int, default=3000, help="dataset rows learned before serving")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serving.json")
    parser.add_argument("--bare-app", action="store_true", help=argparse.SUPPRESS)  # the reference child
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_app:
        serve_bare(args.port)
        return
    result = run(args)
    result["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "shared": "other jobs may run on the machine: compare the ratios, not the absolute figures",
    }
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
