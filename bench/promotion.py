"""Issue 20's serving targets under load: a promoted challenger served, a canary abort applied, no request failed.

Starts an embedded broker and redis-server, then `livelearn learn` (with the challenger ``fast:lr=0.05``) and
`livelearn serve` as child processes (as `livelearn up` does), replays the bundled data so that the learner writes
stable versions holding both arms, and goes on replaying it at ``--rate`` events/s while it measures, so that
serving keeps moving to new versions as it does in production. Meanwhile ``--clients`` threads, each with its own
keep-alive ``httpx.Client`` and its own ``user_id`` values, send ``POST /predict`` back to back. Measured:

* **promotion**: ``--switches`` promotions alternating ``fast`` ↔ ``base`` (``ArmControl.promote(..., current=...)``,
  the script `livelearn challengers promote` runs; ``base`` is the former champion learning on in shadow, kept by a
  cool-down larger than the data): the time from just before the script call until every client has received an
  answer with ``arm`` = the new champion (per switch: the slowest client);
* **canary abort**: ``--aborts`` times, a 50 % canary on the other arm (``ControlPlane.set_canary``), held until every
  client got answers from both arms, then ``abort_canary``: the time until every client's answers are all the
  champion's (per client: the first answer after the abort from which on every answer is the champion's, checked
  over the next ``SETTLED`` answers and again up to the next canary; per abort: the slowest client);
* **failures**: every non-200 answer and transport error over the whole load, and the request rate achieved.

Targets (issue 20): p99 ≤ 1 s for both, no failed request. Prints the figures and writes JSON (``--out``).
Run: ``.venv/bin/python bench/promotion.py`` (about 20 s with the defaults on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from snapshotter.challengers import ArmControl
from snapshotter.control import ControlPlane, arms_held, main_arm
from snapshotter.store import VersionStore, open_store
from streaming.config import BASE, Settings
from streaming.errors import StaleEpochError
from streaming.local.dataset import read_events
from streaming.local.embedded import embedded_stack, free_port
from streaming.local.replay import replay
from streaming.transport import Producer, ensure_topics, make_producer

#: The challenger the learner runs beside the champion (issue 20's example).
CHALLENGER = "fast"
ENV = {
    "LIVELEARN_CHALLENGERS": json.dumps([f"{CHALLENGER}:lr=0.05"]),
    # the former champion stays an arm through every switch: the cool-down outlasts the data
    "LIVELEARN_CHALLENGER_COOLDOWN_LABELS": "100000000",
    "LIVELEARN_SNAPSHOT_EVERY_EVENTS": "250",
}
#: Events replayed at full speed before the load: enough for stable versions (the guard's minimum samples).
WARM_EVENTS = 3000
#: Consecutive champion answers each client must get after an abort before it is timed (at 50 %, a client still on
#: the split gets 20 in a row with probability 1e-6).
SETTLED = 20
#: How long one switch or abort may take before the bench gives up on it (a target missed 30 times over).
GIVE_UP_S = 30.0
USERS_PER_CLIENT = 64


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds of ``values`` (seconds) and their count."""
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[math.ceil(0.99 * len(ordered)) - 1] * 1e3,  # nearest rank: the max of fewer than 100
        "max_ms": ordered[-1] * 1e3,
        "n": len(ordered),
    }


class Client(threading.Thread):
    """One client: ``POST /predict`` back to back on its own keep-alive connection, each request with the next of
    its own user ids; records when each answer came (monotonic seconds) and which arm gave it, and counts every
    failed request (non-200 or transport error)."""

    def __init__(self, index: int, base: str, features: list[dict[str, Any]], stop: threading.Event) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.base, self.features, self.stop = base, features, stop
        self.users = [f"client{index}-visitor{n}" for n in range(USERS_PER_CLIENT)]
        self.answers: list[tuple[float, str]] = []  # appended by this thread only, read by the measuring one
        self.requests = 0
        self.failures: list[str] = []

    def run(self) -> None:
        bodies = itertools.cycle(
            {"features": features, "user_id": user} for features, user in zip(self.features, self.users, strict=False)
        )
        with httpx.Client(base_url=self.base, timeout=10) as client:
            for body in bodies:
                if self.stop.is_set():
                    return
                self.requests += 1
                try:
                    answer = client.post("/predict", json=body)
                except httpx.TransportError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
                self.answers.append((time.monotonic(), answer.json()["arm"]))

    def since(self, t0: float, start: int) -> list[tuple[float, str]]:
        """The answers received after ``t0``, looked for from index ``start`` (the count before ``t0``) on."""
        return [a for a in self.answers[start:] if a[0] > t0]


def wait(condition: Callable[[], object], what: str, timeout: float = GIVE_UP_S) -> None:
    """Poll ``condition`` every millisecond (the figures are measured from the clients' own timestamps, so the
    polling only decides when to look)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.001)


def first_of(answers: list[tuple[float, str]], arm: str) -> float | None:
    return next((t for t, got in answers if got == arm), None)


def settled_at(answers: list[tuple[float, str]], champion: str) -> float | None:
    """When a client's answers became all the champion's: the first answer after the last one from another arm,
    once ``SETTLED`` champion answers followed; ``None`` before that."""
    others = [i for i, (_, arm) in enumerate(answers) if arm != champion]
    first = others[-1] + 1 if others else 0
    return answers[first][0] if len(answers) - first >= SETTLED else None


@dataclasses.dataclass
class Move:
    """One move of what serving answers with (a promotion or an abort): when the script was called, where each
    client's answers were then, the arm every answer should come from afterwards, and when each client got there."""

    clients: list[Client]
    starts: list[int]
    t0: float
    arm: str
    reached: list[float] = dataclasses.field(default_factory=list)
    learned: float = 0.0  # a promotion: seconds until the learner's version with the new champion was seen

    @classmethod
    def now(cls, clients: list[Client], arm: str) -> Move:
        return cls(clients, [len(c.answers) for c in clients], time.monotonic(), arm)

    def answers(self) -> Iterator[list[tuple[float, str]]]:
        return (c.since(self.t0, s) for c, s in zip(self.clients, self.starts, strict=True))

    def wait(self, when: Callable[[list[tuple[float, str]], str], float | None], what: str) -> float:
        """Wait until ``when`` finds the time for every client; the slowest client's seconds since the call."""

        def found() -> bool:
            self.reached = [t for t in (when(a, self.arm) for a in self.answers()) if t is not None]
            return len(self.reached) == len(self.clients)

        wait(found, what)
        return max(self.reached) - self.t0

    def stragglers(self, until: float) -> int:
        """Answers from another arm after a client had got there and before ``until`` (the next move): 0, or
        serving went back."""
        return sum(
            sum(1 for t, arm in a if at < t < until and arm != self.arm)
            for a, at in zip(self.answers(), self.reached, strict=True)
        )


def time_switch(stack: Stack, clients: list[Client], target: str, current: str) -> Move:
    """Promote ``target`` (the champion now: ``current``); timed until every client got an answer from it, then
    until the learner wrote its first version with ``target`` as the champion (``learned``: the next switch finds
    the former champion learning in shadow, as an operator backing out would)."""
    move = Move.now(clients, target)
    stack.arms.promote(target, actor="bench", reason="promotion latency", current=current)
    move.wait(first_of, f"every client to be answered by {target}")
    wait(lambda: stack.head_arm() == target, f"the learner to make {target} the champion")
    move.learned = time.monotonic() - move.t0
    return move


def time_abort(control: ControlPlane, clients: list[Client], champion: str, other: str) -> Move:
    """Set a 50 % canary on ``other``, wait until every client got both arms, abort; timed until every client's
    answers are all the champion's."""
    split = Move.now(clients, other)
    for attempt in itertools.count(1):
        try:
            control.set_canary(other, 50, actor="bench", reason="canary abort latency")
            break
        except StaleEpochError:  # serving moved to a newer version meanwhile: read it again, as the CLI says
            if attempt == 10:
                raise
    split.wait(lambda a, arm: first_of(a, arm) and first_of(a, champion), f"every client to get {champion} and {other}")
    move = Move.now(clients, champion)
    control.abort_canary(actor="bench", reason="canary abort latency")
    move.wait(settled_at, "every client to be answered by the champion only")
    return move


class Stack:
    """The servers, `learn` and `serve` for one run, with the store and the two control planes."""

    def __init__(self, settings: Settings, base: str, procs: list[subprocess.Popen[bytes]]) -> None:
        self.settings, self.base, self.procs = settings, base, procs
        self.store: VersionStore = open_store(settings)
        self.arms, self.control = ArmControl(self.store), ControlPlane(self.store)

    def check_alive(self) -> None:
        dead = [proc.args for proc in self.procs if proc.poll() is not None]
        if dead:
            raise RuntimeError(f"a child process exited: {dead}")

    def serving_both_arms(self) -> bool:
        """``serve`` answers from a version holding the champion and the challenger."""
        self.check_alive()
        try:
            version = httpx.post(f"{self.base}/predict", json={"features": {"PageValues": 1.0}}, timeout=2)
        except httpx.TransportError:
            return False  # not listening yet
        if version.status_code != 200:
            return False
        return CHALLENGER in arms_held(self.store.meta(int(version.json()["version"])).extra)

    def head_arm(self) -> str:
        """The champion's arm in the learner's newest version."""
        head = self.store.head()
        return main_arm(self.store.meta(head).extra) if head is not None else BASE


@contextmanager
def running(workers: int, logs: Path | None) -> Iterator[Stack]:
    """The embedded servers, then `livelearn learn` and `livelearn serve` with the bench's settings (none of the
    caller's ``LIVELEARN_*``); stopped in reverse."""
    with embedded_stack() as (broker, redis_server):
        port = free_port()
        settings = Settings(kafka_bootstrap=broker.address, redis_url=f"redis://{redis_server.address}/0")
        topics = (settings.events_topic, settings.dead_letter_topic_name, settings.predictions_topic_name)
        ensure_topics(settings, dict.fromkeys(topics, 1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_")}
        env |= ENV | {
            "LIVELEARN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "LIVELEARN_REDIS_URL": settings.redis_url,
            "LIVELEARN_API_PORT": str(port),
        }
        if logs:
            logs.mkdir(parents=True, exist_ok=True)
        commands = (["learn"], ["serve", "--workers", str(workers)])
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "streaming", *cmd],
                env=env,
                stdout=(logs / f"{cmd[0]}.log").open("wb") if logs else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            for cmd in commands
        ]
        try:
            yield Stack(settings, f"http://127.0.0.1:{port}", procs)
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(30)


class Feed(threading.Thread):
    """The rest of the bundled data at ``rate`` events/s while the load runs (versions keep coming)."""

    def __init__(self, producer: Producer, topic: str, rate: float, stop: threading.Event) -> None:
        super().__init__(name="feed", daemon=True)
        self.producer, self.topic, self.rate, self.stop = producer, topic, rate, stop
        self.sent = 0

    def run(self) -> None:
        if self.rate <= 0:  # none (replay reads a rate of 0 as "unpaced")
            return
        events = itertools.islice(read_events(repeat=10), WARM_EVENTS, None)
        self.sent = replay(self.producer, self.topic, events, rate=self.rate, should_stop=self.stop.is_set).events


def measure(stack: Stack, clients: list[Client], args: argparse.Namespace) -> dict[str, Any]:
    """The switches, then the aborts, with the clients running; the answers from the old arm after each move
    (once a client got there) counted up to the next move."""
    moves: dict[str, list[Move]] = {"switch_to_served": [], "canary_abort": []}
    champion, stragglers, last = stack.arms.champion(), 0, None
    for kind in [*["switch_to_served"] * args.switches, *["canary_abort"] * args.aborts]:
        stragglers += last.stragglers(time.monotonic()) if last else 0
        other = CHALLENGER if champion != CHALLENGER else BASE
        if kind == "switch_to_served":
            last = time_switch(stack, clients, other, champion)
            champion = other
        else:
            last = time_abort(stack.control, clients, champion, other)
        moves[kind].append(last)
    stragglers += last.stragglers(time.monotonic()) if last else 0
    return {
        **{kind: percentiles([max(m.reached) - m.t0 for m in made]) for kind, made in moves.items() if made},
        "switch_to_learner": percentiles([m.learned for m in moves["switch_to_served"]]) if args.switches else None,
        "answers_from_the_old_arm_after_a_move": stragglers,
        "champion_at_the_end": champion,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with running(args.workers, args.logs) as stack:
        producer = make_producer(stack.settings, linger_ms=5)
        replay(producer, stack.settings.events_topic, read_events(limit=WARM_EVENTS), rate=4000)
        wait(stack.serving_both_arms, "serve to answer from a version holding both arms", timeout=180)
        features = [e.features for e in read_events(limit=USERS_PER_CLIENT)]
        stop = threading.Event()
        feed = Feed(producer, stack.settings.events_topic, args.rate, stop)
        clients = [Client(i, stack.base, features, stop) for i in range(args.clients)]
        for thread in (feed, *clients):
            thread.start()
        started = time.monotonic()
        try:
            wait(lambda: all(len(c.answers) >= SETTLED for c in clients), "every client's first answers")
            figures = measure(stack, clients, args)
        finally:
            stop.set()
            for thread in (*clients, feed):
                thread.join(30)
            producer.close()
        elapsed = time.monotonic() - started
        stack.check_alive()
    requests = sum(c.requests for c in clients)
    failures = [f for c in clients for f in c.failures]
    return {
        **figures,
        "failed_requests": len(failures),
        "failures_first": failures[:5],
        "requests": requests,
        "requests_per_second": requests / elapsed,
        "load_seconds": elapsed,
        "clients": args.clients,
        "serve_workers": args.workers,
        "events_during_load": feed.sent,
        "events_per_second_during_load": args.rate,
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def report(result: dict[str, Any]) -> None:
    what = {
        "switch_to_served": "promotion → served by the new champion",
        "switch_to_learner": "promotion → the learner's version with it",
        "canary_abort": "canary abort → every client on the champion",
    }
    for key, text in what.items():
        if result.get(key):
            m = result[key]
            print(
                f"{text:<45} p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms, max {m['max_ms']:.0f} ms over {m['n']}"
            )
    print(
        f"failed requests {result['failed_requests']} of {result['requests']:,} "
        f"({result['requests_per_second']:.0f} req/s from {result['clients']} clients; "
        f"answers from the old arm after a move: {result['answers_from_the_old_arm_after_a_move']}; "
        f"{result['events_during_load']:,} events replayed meanwhile); load average {result['machine']['load_average']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=20, help="promotions to time (alternating fast ↔ base)")
    parser.add_argument("--aborts", type=int, default=10, help="canary aborts to time")
    parser.add_argument("--clients", type=int, default=8, help="client threads sending POST /predict")
    parser.add_argument("--workers", type=int, default=1, help="`livelearn serve --workers`")
    parser.add_argument("--rate", type=float, default=200, help="events/s replayed while the load runs (0: none)")
    parser.add_argument("--logs", type=Path, help="write the learn and serve logs in this directory")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "promotion.json")
    args = parser.parse_args()
    result = run(args)
    result["machine"] = machine()
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
