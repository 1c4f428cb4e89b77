"""``livelearn versions``: list and inspect a model's numbered versions."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from snapshotter.store import open_store
from streaming.cli.options import ConfigOpt, JsonOpt, ModelOpt, RedisOpt, settings_from

__all__ = ["versions_app"]

versions_app = typer.Typer(help="List and inspect numbered model versions.", no_args_is_help=True)
console = Console()


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _metric(meta, name: str, part: str = "rolling") -> str:
    value = meta.metrics.get(part, {}).get(name)
    return "-" if value is None else f"{value:.4f}"


@versions_app.command("list")
def list_versions(config: ConfigOpt = None, model: ModelOpt = None, redis_url: RedisOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Every stored version, oldest first, with its head marker and rolling metrics."""
    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store(settings)
    metas, head, serving, pinned = store.list(), store.head(), store.serving(), store.pinned()
    stable = set(store.stable_numbers())  # abandoned lineages' versions are no longer stable
    if as_json:
        typer.echo(json.dumps({"model": settings.model_name, "head": head, "serving": serving, "pinned": pinned,
                               "versions": [m.to_dict() for m in metas]}, indent=2))
        return
    table = Table(title=f"model {settings.model_name!r}: {len(metas)} versions · head {head} · serving {serving}"
                        + (" (pinned)" if pinned else ""))
    for column in ("version", "state", "created (UTC)", "parent", "events seen", "rolling acc", "rolling F1",
                   "cumul. acc", "writer", "size"):
        table.add_column(column, justify="left" if column in ("state", "writer", "created (UTC)") else "right")
    for m in metas:
        marker = " *" if m.number == head else ""
        state = ", ".join(word for word, on in (("stable", m.number in stable), ("serving", m.number == serving),
                                                ("pinned", m.number == pinned)) if on)
        table.add_row(f"{m.number}{marker}", state, _when(m.created_at), str(m.parent or "-"), f"{m.events_seen:,}",
                      _metric(m, "accuracy"), _metric(m, "f1"), _metric(m, "accuracy", "cumulative"),
                      m.writer, f"{m.size_bytes:,} B")
    console.print(table)


@versions_app.command("show")
def show_version(number: int, config: ConfigOpt = None, model: ModelOpt = None, redis_url: RedisOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Full metadata of version NUMBER (the blob's checksum is verified)."""
    settings = settings_from(config, model, redis_url=redis_url)
    meta, _state = open_store(settings).load(number)
    if as_json:
        typer.echo(json.dumps(meta.to_dict(), indent=2))
        return
    table = Table(title=f"model {settings.model_name!r} version {number}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    doc = meta.to_dict()
    doc["created_at"] = f"{_when(meta.created_at)} UTC"
    for key, value in doc.items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=False)
        table.add_row(key, str(value))
    console.print(table)
