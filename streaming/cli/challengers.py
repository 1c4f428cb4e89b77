"""``livelearn challengers list`` and ``livelearn compare``: the challengers learning in shadow, as operators see them.

A challenger (``LIVELEARN_CHALLENGERS``, :mod:`streaming.learner.arms`) learns beside the serving model (the
champion) from the same labelled events and is compared with it on each (:mod:`monitor.compare`).

* ``challengers list``: one row per challenger — its declaration, what it learned, the labels compared, the relative
  log-loss gain with its interval, the decision and why — from the active learner's live status while it is fresh,
  else from the head version's metadata (the title says which).
* ``compare [NAME]``: the whole comparison of one challenger as a version's blob holds it (the head by default):
  both arms' mean log loss and accuracy, the loss difference and the relative gain with their intervals, McNemar,
  the segments, the decision and its reason. The decision is taken again with this command's settings
  (``compare_*``); a note says so when the learner, with its own, decided otherwise. ``--png`` draws the challenger
  over the stream (:mod:`monitor.compare_report`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from streaming.cli.options import ConfigOpt, JsonOpt, ModelOpt, RedisOpt, WideOpt, settings_from
from streaming.cli.tables import Column, print_table
from streaming.errors import InputError

if TYPE_CHECKING:
    from monitor.compare import ComparisonResult
    from snapshotter.store import VersionStore
    from streaming.config import ChallengerSettings

__all__ = ["HOW_TO_DECLARE", "challengers_app", "compare", "list_challengers", "percent", "register"]

challengers_app = typer.Typer(
    help="The challengers learning in shadow beside the serving model, compared with it.", no_args_is_help=True
)
console = Console()
notes = Console(stderr=True)

#: How a challenger is declared, for the messages that find none.
HOW_TO_DECLARE = (
    """declare one with LIVELEARN_CHALLENGERS='["fast:lr=0.05"]' (livelearn learn) or livelearn up --challenger """
    "fast:lr=0.05"
)
#: The columns of ``challengers list``; at 80 columns the name, labels, gain, interval and decision.
_LIST_COLUMNS = (
    Column("challenger"),
    Column("declared", 3),
    Column("learned", 4, right=True),
    Column("labels", right=True),
    Column("gain", right=True),
    Column("interval", 1),
    Column("decision"),
    Column("reason", 2, wraps=True, least=16),
)
_SEGMENT_COLUMNS = (
    Column("segment"),
    Column("labels", right=True),
    Column("gain", right=True),
    Column("interval"),
    Column("blocking"),
)


def percent(value: float | None, digits: int = 2) -> str:
    """A ratio as a signed percentage; ``-`` when it is not known (``None``, infinite or NaN).

    >>> percent(0.02104), percent(-0.5, 0), percent(None), percent(float("-inf"))
    ('+2.10 %', '-50 %', '-', '-')
    """
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 100:+.{digits}f} %"


def _interval(lower: float | None, upper: float | None) -> str:
    return f"[{percent(lower)}, {percent(upper)}]"


def _current_arms(store: VersionStore) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every challenger's figures now, and where they come from: the active learner's status while it is fresh (it
    expires within a few status intervals), else the head version's metadata."""
    status = store.status()
    if status is not None:
        source = {"source": "status", "writer": status["writer"], "version": status["version"]}
        return dict(status.get("arms") or {}), source
    head = store.head()
    if head is None:
        return {}, {"source": None, "version": None}
    return dict(store.meta(head).extra.get("arms") or {}), {"source": "version", "version": head}


def _source_text(source: dict[str, Any]) -> str:
    if source["source"] == "status":
        return f"live status of learner {source['writer']}"
    if source["source"] == "version":
        return f"version {source['version']}: no live learner status"
    return "no version stored and no live learner"


def _list_row(name: str, arm: dict[str, Any]) -> list[str]:
    comparison = arm.get("comparison") or {}
    return [
        name,
        str(arm.get("declared", name)),
        f"{arm.get('learned', 0):,}",
        f"{comparison.get('labels', 0):,}",
        percent(comparison.get("relative_gain")),
        _interval(comparison.get("gain_lower"), comparison.get("gain_upper")),
        str(comparison.get("decision", "-")),
        str(comparison.get("reason", "")),
    ]


@challengers_app.command("list")
def list_challengers(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Each challenger with the labels compared, its relative log-loss gain over the serving model (percent, with
    its anytime-valid interval), the decision and why: from the active learner's live status, else from the head
    version."""
    from snapshotter.store import open_store

    settings = settings_from(config, model, redis_url=redis_url)
    arms, source = _current_arms(open_store(settings))
    if as_json:
        typer.echo(json.dumps({"model": settings.model_name, **source, "arms": arms}, indent=2))
        return
    if not arms:
        console.print(
            f"model {settings.model_name!r} has no challengers ({_source_text(source)}): {HOW_TO_DECLARE}",
            highlight=False,
            soft_wrap=True,
        )
        return
    print_table(
        f"challengers of model {settings.model_name!r} ({_source_text(source)})",
        _LIST_COLUMNS,
        [_list_row(name, arm) for name, arm in arms.items()],
        wide=wide,
        caption="gain: relative log-loss gain over the serving model (positive: the challenger is better) · "
        "interval: anytime-valid, valid however often it is read · promote: the lower end is above compare_min_gain "
        "after compare_min_labels labels · livelearn compare NAME: the whole comparison",
    )


def _pick(name: str | None, arms: dict[str, Any], number: int) -> str:
    """The challenger to show: the one named, else the only one (one-line errors otherwise)."""
    held = ", ".join(arms)
    if not arms:
        raise InputError(f"version {number} holds no challenger: {HOW_TO_DECLARE}")
    if name is None:
        if len(arms) == 1:
            return next(iter(arms))
        raise InputError(
            f"version {number} holds {len(arms)} challengers ({held}): name one, e.g. livelearn compare "
            f"{next(iter(arms))}"
        )
    if name not in arms:
        raise InputError(f"version {number} holds no challenger {name!r}; it holds {held}")
    return name


def _check_png(out: Path) -> None:
    """Refuse a ``--png`` that cannot be a new file before reading anything from Redis."""
    if out.is_dir():
        raise InputError(f"{out} is a directory; pass a file name to --png, e.g. {out / 'livelearn-compare.png'}")
    if not out.parent.is_dir():
        raise InputError(
            f"cannot write the comparison to {out}: directory {out.parent} does not exist; create it or pass another "
            "--png"
        )


def _number(value: float, fmt: str = "{:+.4f}") -> str:
    return fmt.format(value) if math.isfinite(value) else "-"


def _started(arm: dict[str, Any]) -> str:
    started = arm.get("started") or {}
    if started.get("from") == "champion":
        return f"started from the champion of version {started.get('version') or '-'}"
    return "started cold"


def _comparison_rows(name: str, arm: dict[str, Any], result: ComparisonResult, min_gain: float) -> list[list[str]]:
    """The comparison as (field, value) rows."""
    return [
        ["labels", f"{result.labels:,} compared, {result.skipped:,} skipped (a NaN score)"],
        ["learned", f"{arm.get('learned', 0):,} events, {_started(arm)}"],
        ["log loss", f"champion {result.champion_log_loss:.4f} · {name} {result.challenger_log_loss:.4f} (mean)"],
        ["accuracy", f"champion {result.champion_accuracy:.4f} · {name} {result.challenger_accuracy:.4f}"],
        [
            "loss difference",
            f"{_number(result.loss_difference)} [{_number(result.difference_lower)}, "
            f"{_number(result.difference_upper)}] (champion minus {name}; std {result.difference_std:.4f})",
        ],
        [
            "relative gain",
            f"{percent(result.relative_gain)} {_interval(result.gain_lower, result.gain_upper)} "
            f"(min_gain {min_gain * 100:.2f} %)",
        ],
        [
            "McNemar",
            f"b {result.mcnemar_b:,} (only the champion right) · c {result.mcnemar_c:,} (only {name} right) · "
            f"p {result.mcnemar_p:.4f}",
        ],
        ["decision", result.decision],
        ["reason", result.reason],
    ]


def _plain(value: Any) -> Any:
    """``value`` with every non-finite float as ``None`` (JSON has no infinity), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def compare(
    name: Annotated[str | None, typer.Argument(help="The challenger (default: the only one).")] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="The version whose comparison to show (default: the head).")
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option("--png", help="Also draw the challenger over the stream (the metric history) into this PNG."),
    ] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """The whole comparison of challenger NAME with the serving model, as version --version holds it: both arms'
    mean log loss and accuracy, the loss difference and relative gain with their anytime-valid intervals, McNemar,
    the segments, the decision and its reason (taken with these settings' compare_*)."""
    from monitor.compare import Comparison
    from snapshotter.store import open_store
    from streaming.errors import SnapshotCorruptError

    if png is not None:
        _check_png(png)
    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store(settings)
    number = store.head() if version is None else version
    if number is None:
        raise InputError(f"model {settings.model_name!r} has no version yet: nothing to compare")
    meta, state = store.load(number)
    chosen = _pick(name, state.arms, number)
    arm, rule = state.arms[chosen], settings.arms
    if not isinstance(arm, dict) or not isinstance(arm.get("comparison"), dict):
        raise SnapshotCorruptError(f"version {number}: challenger {chosen}'s comparison is missing")
    result = Comparison.load(
        arm["comparison"],
        alpha=rule.alpha,
        min_gain=rule.min_gain,
        min_labels=rule.min_labels,
        segment_margin=rule.segment_margin,
    ).result()
    learner = ((meta.extra.get("arms") or {}).get(chosen) or {}).get("comparison", {}).get("decision")
    if png is not None:
        _draw(store, settings.arms, chosen, png, quiet=as_json)
    if as_json:
        doc = {
            "model": settings.model_name,
            "version": number,
            "challenger": chosen,
            **{key: arm.get(key) for key in ("declared", "learned", "started")},
            "rule": {
                "alpha": rule.alpha,
                "min_gain": rule.min_gain,
                "min_labels": rule.min_labels,
                "segment_margin": rule.segment_margin,
            },
            "learner_decision": learner,
            "result": result.to_dict(),
        }
        typer.echo(json.dumps(_plain(doc), indent=2))
        return
    _print_comparison(settings.model_name, number, chosen, arm, result, rule.min_gain, wide=wide)
    if learner is not None and learner != result.decision:
        notes.print(
            f"note: the learner decided {learner!r} when it wrote version {number}: its compare_* settings differ "
            "from these",
            highlight=False,
            soft_wrap=True,
        )


def _print_comparison(
    model: str, number: int, name: str, arm: dict[str, Any], result: ComparisonResult, min_gain: float, *, wide: bool
) -> None:
    print_table(
        f"model {model!r} version {number}: challenger {arm.get('declared', name)} against the champion",
        (Column("field"), Column("value", wraps=True, least=30)),
        _comparison_rows(name, arm, result, min_gain),
        caption="gain: relative log-loss gain over the champion (positive: the challenger is better), with its "
        "anytime-valid interval · McNemar: on the events the arms classify differently at 0.5 (reported, never "
        "decides)",
        header=False,
        wide=wide,
    )
    if result.segments:
        rows = [
            [
                segment.name,
                f"{segment.labels:,}",
                percent(segment.relative_gain),
                _interval(segment.gain_lower, segment.gain_upper),
                "blocks a promotion" if segment.name in result.blocking_segments else "",
            ]
            for segment in result.segments
        ]
        print_table(f"segments of challenger {name} (intervals at alpha / segments)", _SEGMENT_COLUMNS, rows, wide=wide)


def _draw(store: VersionStore, rule: ChallengerSettings, name: str, out: Path, *, quiet: bool) -> None:
    from monitor.compare_report import write_compare_report

    try:
        write_compare_report(store, rule, name, out)
    except OSError as exc:  # e.g. no permission: found only when writing
        raise InputError(
            f"cannot write the comparison to {out} ({exc.strerror or exc}); pass a writable path to --png"
        ) from None
    (notes if quiet else console).print(f"comparison of {name} drawn to {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """``livelearn challengers list`` and ``livelearn compare``, in a help panel of their own."""
    from streaming.cli import arm_commands

    arm_commands.register(challengers_app)
    app.add_typer(challengers_app, name="challengers", rich_help_panel="Challengers")
    app.command("compare", rich_help_panel="Challengers")(compare)
