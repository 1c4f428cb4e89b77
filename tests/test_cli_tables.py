"""The operator tables at 80 columns, with ``--wide``, and piped: no cell cut short, plain text to a pipe.

``livelearn versions list`` and ``livelearn audit`` run as processes of their own, on a pseudo-terminal (their
standard output is a terminal, as in a shell) or a pipe, over an in-memory Redis (fakeredis, installed in place
of ``open_store`` before the command starts): no server, so these are quick.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streaming.cli.tables import Column, choose_columns, column_widths, plain_lines

#: The child: a store with versions (a long writer name, a pin, a rollback) in fakeredis, then the command.
CHILD = textwrap.dedent(
    """
    import sys
    import fakeredis
    import snapshotter.store as stores
    from snapshotter.codec import SnapshotState
    from snapshotter.control import ControlPlane

    server = fakeredis.FakeServer()

    def open_fake(settings):
        return stores.VersionStore.for_settings(fakeredis.FakeRedis(server=server), settings.store)

    store = stores.VersionStore(fakeredis.FakeRedis(server=server), "shop", promotion="immediate")
    for n in range(1, 7):
        state = SnapshotState(spec={"inputs": ["x"]}, model={}, metrics={}, counters={"events_seen": n * 250_000})
        store.write(state, writer="learner-7f9c2d.eu-west-1.compute.internal:123456", lease_value=None,
                    offsets={"events": {"0": n * 100_000}}, parent=store.head(), stable=n < 6,
                    metrics={"rolling": {"accuracy": 0.8123, "f1": 0.7012}, "cumulative": {"accuracy": 0.8011}})
    control = ControlPlane(store)
    control.pin(2, actor="alice@laptop", reason="release candidate for the spring campaign, checked by hand")
    control.rollback(to=3, actor="bob@ops-bastion", reason="accuracy fell below the threshold after the deploy")
    stores.open_store = open_fake
    from streaming.cli.app import main
    sys.argv = ["livelearn", *sys.argv[1:]]
    main()
    """
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
VERSION_HEADERS = [
    "version",
    "state",
    "created (UTC)",
    "parent",
    "events seen",
    "rolling acc",
    "rolling F1",
    "cumul. acc",
    "writer",
    "size",
    "arm",
]


def environment(**extra: str) -> dict[str, str]:
    """No LIVELEARN_* nor width of the test's own; a Redis URL that is never dialled (the store is in memory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVELEARN_") and k not in ("COLUMNS", "LINES")}
    env.pop("TTY_COMPATIBLE", None)
    env.pop("FORCE_COLOR", None)
    return {**env, "LIVELEARN_MODEL_NAME": "shop", "LIVELEARN_REDIS_URL": "redis://127.0.0.1:1/0", **extra}


def on_a_terminal(*args: str, columns: int = 80, cwd: Path) -> str:
    """The command's output on a pseudo-terminal ``columns`` wide (ANSI sequences removed)."""
    primary, secondary = os.openpty()
    env = environment(COLUMNS=str(columns), LINES="50", TERM="xterm")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=cwd
    )
    os.close(secondary)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([primary], [], [], 60)
            if not ready:
                raise AssertionError(f"no output within a minute: {output!r}")
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        assert child.wait(60) == 0, output.decode(errors="replace")
    return ANSI.sub("", output.decode()).replace("\r\n", "\n")


def piped(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=environment(), cwd=cwd, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def headers(text: str) -> list[str]:
    """The drawn table's headings, each put together from the lines it wraps onto."""
    lines = [line.strip().strip("┃").split("┃") for line in text.splitlines() if line.startswith("┃")]
    return [" ".join(part[i].strip() for part in lines if part[i].strip()) for i in range(len(lines[0]))]


def assert_fits(text: str, columns: int) -> None:
    """Nothing cut short and nothing wider than the terminal."""
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= columns, text


def test_versions_list_at_80_columns_keeps_the_most_important_columns_whole(tmp_path):
    text = on_a_terminal("versions", "list", cwd=tmp_path)
    assert_fits(text, 80)
    # "stable, serving, pinned" takes the room of the date: the next in priority after events seen and accuracy
    assert headers(text) == ["version", "state", "events seen", "rolling acc"], text
    assert "--wide also shows: created (UTC), parent, rolling F1, cumul. acc, writer, size" in text, text
    # each version's number (the head marked), state and count whole, on its row
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if re.match(r"│ +\d", line)}
    assert list(rows) == ["1", "2", "3 *", "4", "5", "6"], text
    assert "│ stable, serving, pinned │" in rows["2"], text
    assert re.search(r"│ +1,500,000 │", rows["6"]), text


def test_wide_draws_every_column_whole(tmp_path):
    text = on_a_terminal("versions", "list", "--wide", cwd=tmp_path)
    assert "…" not in text, text
    assert headers(text) == VERSION_HEADERS, text
    assert "learner-7f9c2d.eu-west-1.compute.internal:123456" in text
    assert "--wide also shows" not in text


def test_versions_list_piped_is_tab_separated_with_every_column(tmp_path):
    text = piped("versions", "list", cwd=tmp_path)
    lines = text.splitlines()
    assert lines[0].startswith("# model 'shop': ") and "head 3" in lines[0], text
    assert lines[1].split("\t") == VERSION_HEADERS, text
    rows = [line.split("\t") for line in lines[2:]]
    assert rows and all(len(row) == len(VERSION_HEADERS) for row in rows), text
    assert {row[8] for row in rows} == {"learner-7f9c2d.eu-west-1.compute.internal:123456"}
    assert not re.search("[─│┃━┏┗]", text), text
    assert "--wide" not in text  # every column already


def test_json_is_unchanged_by_the_width(tmp_path):
    doc = json.loads(piped("versions", "list", "--json", cwd=tmp_path))
    assert doc["model"] == "shop" and doc["head"] == 3
    assert {"number", "state", "writer", "events_seen"} <= set(doc["versions"][0])


def test_audit_at_80_columns_keeps_when_what_and_why_whole(tmp_path):
    text = on_a_terminal("audit", cwd=tmp_path)
    assert_fits(text, 80)
    rows = [line for line in text.splitlines() if re.search(DATE.pattern + r"\.\d{3}", line)]
    assert [row.split("│")[2].strip() for row in rows] == ["pin", "manual_rollback"], text
    assert headers(text) == ["time (UTC)", "action", "to", "serving", "reason"], text
    assert "--wide also shows: actor, position, from, accuracy" in text, text
    reasons = " ".join(line.split("│")[-2].strip() for line in text.splitlines() if line.startswith("│"))
    assert "accuracy fell below the threshold after the deploy" in reasons, text  # wrapped, every word whole


def test_audit_piped_keeps_each_reason_in_one_field(tmp_path):
    lines = piped("audit", cwd=tmp_path).splitlines()
    header = lines[1].split("\t")
    assert header == ["time (UTC)", "action", "actor", "position", "from", "to", "serving", "accuracy", "reason"]
    by_action = {row.split("\t")[1]: dict(zip(header, row.split("\t"), strict=True)) for row in lines[2:]}
    assert by_action["manual_rollback"]["reason"] == "accuracy fell below the threshold after the deploy"
    assert by_action["manual_rollback"]["actor"] == "bob@ops-bastion"
    assert by_action["pin"]["serving"] == "5→2"


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 200])
def test_the_columns_chosen_fit_and_follow_priority(width):
    columns = [Column("a"), Column("bb", 2), Column("ccc", 1, right=True), Column("reason", 3, wraps=True)]
    rows = [["x" * 10, "y" * 30, "z" * 20, "a long reason " * 5]]
    shown = choose_columns(columns, rows, width)
    sizes = column_widths([columns[i] for i in shown], [[row[i] for i in shown] for row in rows], width)
    assert 0 in shown
    assert sum(sizes) + 3 * len(sizes) + 1 <= max(width, 10 + 3 + 1)
    ranks = sorted(columns[i].priority for i in shown)
    assert ranks == sorted(c.priority for c in columns)[: len(ranks)]  # the least important go first
    for i, size in zip(shown, sizes, strict=True):
        if not columns[i].wraps:
            assert size >= len(rows[0][i])  # a one-line cell fits whole


def test_plain_text_flattens_tabs_and_line_breaks():
    assert plain_lines("", [Column("a"), Column("b")], [["x\ty", "one\ntwo"]]) == ["a\tb", "x y\tone two"]
