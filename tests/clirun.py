"""Running ``livelearn`` in the test's own process, as operators type it, and checking its one-line errors."""

from __future__ import annotations

import sys

import pytest

from streaming.cli.app import main


def run_livelearn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    """``livelearn ARGV`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["livelearn", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def one_line_error(result: tuple[int, str, str], *needles: str) -> None:
    """The command failed with one line, ``error: ...``, holding every needle."""
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
