"""Operator commands: pin, unpin, roll back, resume learning, read the audit log, draw a report."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from snapshotter.audit import default_actor, read_audit
from snapshotter.control import ControlPlane
from snapshotter.store import open_store
from streaming.errors import InputError
from streaming.cli.options import ConfigOpt, JsonOpt, ModelOpt, RedisOpt, settings_from

__all__ = ["register"]

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit log.")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who (default: user@host).")]
console = Console()


def _control(config, model, redis_url) -> ControlPlane:
    return ControlPlane(open_store(settings_from(config, model, redis_url=redis_url)))


def _done(control: ControlPlane, what: str) -> None:
    store = control.store
    console.print(f"{what}: head {store.head()}, serving {store.serving()}, "
                  f"pinned {store.pinned() or '-'}, learning {'frozen' if control.frozen() else 'on'}")


def pin(number: int, reason: ReasonOpt, actor: ActorOpt = None, config: ConfigOpt = None, model: ModelOpt = None,
        redis_url: RedisOpt = None) -> None:
    """Pin version NUMBER: serving stays on it and nothing automatic moves it until unpin."""
    control = _control(config, model, redis_url)
    control.pin(number, actor=actor or default_actor(), reason=reason)
    _done(control, f"pinned version {number}")


def unpin(reason: ReasonOpt, actor: ActorOpt = None, config: ConfigOpt = None, model: ModelOpt = None,
          redis_url: RedisOpt = None) -> None:
    """Unpin: serving follows the newest stable version again."""
    control = _control(config, model, redis_url)
    control.unpin(actor=actor or default_actor(), reason=reason)
    _done(control, "unpinned")


def rollback(reason: ReasonOpt, to: Annotated[int | None, typer.Option("--to", help="Target version.")] = None,
             actor: ActorOpt = None, config: ConfigOpt = None, model: ModelOpt = None,
             redis_url: RedisOpt = None) -> None:
    """Roll the learners (and unpinned serving) back to --to N or the newest stable version before the head."""
    control = _control(config, model, redis_url)
    target = control.rollback(to=to, actor=actor or default_actor(), reason=reason)
    _done(control, f"rolled back to version {target}")


def resume(reason: ReasonOpt, actor: ActorOpt = None, config: ConfigOpt = None, model: ModelOpt = None,
           redis_url: RedisOpt = None) -> None:
    """Resume learning after a freeze."""
    control = _control(config, model, redis_url)
    control.resume(actor=actor or default_actor(), reason=reason)
    _done(control, "learning resumed")


def audit(limit: Annotated[int, typer.Option(min=1, help="Newest N entries.")] = 50, config: ConfigOpt = None,
          model: ModelOpt = None, redis_url: RedisOpt = None, as_json: JsonOpt = False) -> None:
    """The audit log: snapshots, promotions, rollbacks, pins, freezes and resumes."""
    store = open_store(settings_from(config, model, redis_url=redis_url))
    entries = read_audit(store.client, store.keys, count=limit)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table(title=f"audit of model {store.keys.model_name!r} (newest {limit})")
    for column in ("time (UTC)", "action", "actor", "from", "to", "metric", "reason"):
        table.add_column(column)
    for e in entries:
        acc = e.metrics.get("accuracy")
        table.add_row(dt.datetime.fromtimestamp(e.time, dt.UTC).strftime("%H:%M:%S.%f")[:-3], e.action, e.actor,
                      str(e.from_version or "-"), str(e.to_version or "-"),
                      "-" if acc is None else f"acc {acc:.3f}", e.reason)
    console.print(table)


def report(out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("livelearn-report.png"),
           config: ConfigOpt = None, model: ModelOpt = None, redis_url: RedisOpt = None) -> None:
    """Draw the guarded metric over events with snapshots, rollbacks and pins marked (PNG)."""
    from monitor.report import write_report

    _check_writable(out)
    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store(settings)
    try:
        write_report(store, settings, out)
    except OSError as exc:  # e.g. no permission: found only when writing
        raise InputError(f"cannot write the report to {out} ({exc.strerror or exc}); "
                         "pass a writable path to --out") from None
    console.print(f"report written to {out}")


def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a new file before reading anything from Redis."""
    if out.is_dir():
        raise InputError(f"{out} is a directory; pass a file name to --out, e.g. {out / 'livelearn-report.png'}")
    if not out.parent.is_dir():
        raise InputError(f"cannot write the report to {out}: directory {out.parent} does not exist; "
                         "create it or pass another --out")


def register(app: typer.Typer, versions_app: typer.Typer) -> None:
    versions_app.command("pin")(pin)
    versions_app.command("unpin")(unpin)
    versions_app.command("rollback")(rollback)
    learning = typer.Typer(help="Freeze state of learning.", no_args_is_help=True)
    learning.command("resume")(resume)
    app.add_typer(learning, name="learning")
    app.command("audit")(audit)
    app.command("report")(report)
