"""A least-privilege Redis user: REQUIRED_REDIS_COMMANDS on ``livelearn:*`` keys and channels is all livelearn needs.

The ACL test runs on a private redis-server (ACL users are server-wide, the session's server is shared).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from conftest import produce, settings_env, wait_for
from prometheus_client import CollectorRegistry

from monitor.guard import Monitor
from snapshotter.connection import REQUIRED_REDIS_COMMANDS, redis_acl_rules
from snapshotter.control import ControlPlane
from snapshotter.store import open_store
from streaming.local.dataset import read_events
from streaming.serving.models import ServingModels

pytestmark = pytest.mark.first_lane

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_ACL_COMMAND = " ".join(["ACL SETUSER livelearn", *redis_acl_rules("CHANGE-ME")])


def livelearn(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args], capture_output=True, text=True, env=env, timeout=120
    )


def denied(admin: redis.Redis) -> list[tuple[str, str]]:
    """(reason, object) of every ACL refusal the server logged."""
    return [(e[b"reason"].decode(), e[b"object"].decode()) for e in admin.execute_command("ACL", "LOG")]


def test_a_user_with_exactly_the_documented_commands_runs_livelearn(private_redis, make_settings, learners, tmp_path):
    server, admin = private_redis
    admin.execute_command("ACL", "SETUSER", "livelearn", *redis_acl_rules("s3cret"))
    url = f"redis://livelearn:s3cret@{server.address}/1"  # database 1: SELECT is on the list too

    # the ACL is really enforced: no other keys, channels or commands
    user = redis.Redis.from_url(url)
    for refused in (
        lambda: user.set("other:key", 1),
        lambda: user.publish("other", "x"),
        user.flushdb,
        lambda: user.keys("*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()
    user.close()
    admin.execute_command("ACL", "LOG", "RESET")

    settings = make_settings(
        redis_url=url,
        snapshot_every_events=300,
        snapshot_every_seconds=3600,  # versions by count only: head 4 at any speed
        keep_versions=2,
        keep_stable_versions=1,
        rolling_window=100,
        history_every_events=50,
        monitor_min_samples=50,
        monitor_threshold=0.5,
        label_wait="10m",  # the label join on (labels inside the events: learned as ever): its Redis use checked too
    )
    produce(settings, read_events(limit=1200))
    learners(settings, "--until-caught-up").wait()  # lease, snapshots with retention, status, history, check-ins
    store = open_store(settings)
    assert store.head() == 4
    assert len(store.numbers()) < 4
    assert store.join_state() is not None  # written with each version, read back on activation

    assert store.serving() in store.stable_numbers()  # confirmed by the learner (promotion guard)
    decisions = Monitor(settings, registry=CollectorRegistry()).check_once(block_ms=100)  # one monitor step
    assert decisions
    assert store.client.hget(store.keys.guard, "cursor") is not None

    serving = ServingModels(store, refresh_seconds=0.1)  # what `serve` does: pub/sub plus reads
    serving.start()
    try:
        wait_for(lambda: serving.current is not None, 30, "serving to load the serving version")
    finally:
        serving.stop()

    env = settings_env(settings)
    oldest = store.numbers()[0]
    for args in (
        ("versions", "list", "--json"),
        ("versions", "show", "4"),
        ("versions", "learned", "--since", "3"),
        ("versions", "pin", "4", "--reason", "acl"),
        ("versions", "unpin", "--reason", "acl"),
        ("versions", "rollback", "--to", str(oldest), "--reason", "acl"),
        ("audit", "--json"),
        ("report", "--out", str(tmp_path / "report.png")),
    ):
        result = livelearn(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
    ControlPlane(store).freeze(actor="test", reason="acl")
    result = livelearn("learning", "resume", "--reason", "acl", env=env)
    assert result.returncode == 0, result.stderr

    # Nothing livelearn sent was refused. redis-py's optional connection set-up (CLIENT SETINFO, and
    # CLIENT MAINT_NOTIFICATIONS with RESP3) is refused and ignored by redis-py: it is not on the list.
    assert {obj for _reason, obj in denied(admin)} <= {"client"}, denied(admin)


def test_every_command_a_lua_script_runs_is_on_the_list():
    sources = [
        path
        for package in ("snapshotter", "monitor", "streaming")
        for pattern in ("*.py", "*.lua")
        for path in (ROOT / package).rglob(pattern)
    ]
    called = {
        name.upper()
        for path in sources
        for name in re.findall(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]", path.read_text())
    }
    assert {"SET", "XADD", "PUBLISH"} <= called  # the pattern finds the scripts' calls
    assert called - set(REQUIRED_REDIS_COMMANDS) == set()


def test_the_production_page_shows_the_same_list():
    page = (ROOT / "docs" / "operations" / "production.md").read_text()
    assert DOCUMENTED_ACL_COMMAND in page
    rows = re.findall(r"^\| `([A-Z]+(?:\\\|[A-Z]+)?)` \| (.*) \|$", page, re.MULTILINE)
    assert [(command.replace("\\|", "|"), purpose) for command, purpose in rows] == list(
        REQUIRED_REDIS_COMMANDS.items()
    )
