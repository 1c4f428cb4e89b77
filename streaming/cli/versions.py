"""``livelearn versions``: list, inspect, pin, unpin and roll back a model's numbered versions."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from streaming.cli.options import ActorOpt, ConfigOpt, JsonOpt, ModelOpt, ReasonOpt, RedisOpt, WideOpt, settings_from
from streaming.cli.tables import Column, print_table

if TYPE_CHECKING:
    from snapshotter.control import ControlPlane
    from snapshotter.store import VersionStore

__all__ = ["register", "versions_app"]

versions_app = typer.Typer(help="List, inspect, pin and roll back numbered model versions.", no_args_is_help=True)
console = Console()


def open_store_from(config: Any, model: str | None, redis_url: str | None) -> VersionStore:
    from snapshotter.store import open_store

    return open_store(settings_from(config, model, redis_url=redis_url))


def control_from(config: Any, model: str | None, redis_url: str | None) -> ControlPlane:
    from snapshotter.control import ControlPlane

    return ControlPlane(open_store_from(config, model, redis_url))


def actor_or_default(actor: str | None) -> str:
    from snapshotter.audit import default_actor

    return actor or default_actor()


def done(control: ControlPlane, what: str) -> None:
    """One line with the state an operator action left."""
    store = control.store
    console.print(
        f"{what}: head {store.head()}, serving {store.serving()}, "
        f"pinned {store.pinned() or '-'}, learning {'frozen' if control.frozen() else 'on'}"
    )


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _metric(meta: Any, name: str, part: str = "rolling") -> str:
    value = meta.metrics.get(part, {}).get(name)
    return "-" if value is None else f"{value:.4f}"


#: The columns of ``versions list``; at 80 columns the version, its state, events seen, rolling accuracy and when.
_LIST_COLUMNS = (
    Column("version", right=True),
    Column("state"),
    Column("created (UTC)", 3),
    Column("parent", 4, right=True),
    Column("events seen", 1, right=True),
    Column("rolling acc", 2, right=True),
    Column("rolling F1", 5, right=True),
    Column("cumul. acc", 6, right=True),
    Column("writer", 8),
    Column("size", 7, right=True),
    Column("arm", 9),
)


def _list_row(meta: Any, states: list[str], head: int | None) -> list[str]:
    return [
        f"{meta.number}{' *' if meta.number == head else ''}",
        ", ".join(s for s in states if s != "head"),
        _when(meta.created_at),
        str(meta.parent or "-"),
        f"{meta.events_seen:,}",
        _metric(meta, "accuracy"),
        _metric(meta, "f1"),
        _metric(meta, "accuracy", "cumulative"),
        meta.writer,
        f"{meta.size_bytes:,} B",
        _arms(meta.extra),
    ]


def _arms(extra: dict[str, Any]) -> str:
    """The champion's arm and how many challengers the version holds (``fast +2``; ``base`` without challengers)."""
    challengers = len(extra.get("arms") or ())
    return f"{extra.get('arm', 'base')}{f' +{challengers}' if challengers else ''}"


@versions_app.command("list")
def list_versions(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Every stored version, oldest first, with what it is now (stable, candidate, quarantined, serving...)."""
    from snapshotter.states import version_states

    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store_from(config, model, redis_url)
    metas, head, serving, pinned = store.list(), store.head(), store.serving(), store.pinned()
    states = version_states(store, [m.number for m in metas])
    if as_json:
        versions = [{**m.to_dict(), "state": states[m.number]} for m in metas]
        doc = {"model": settings.model_name, "head": head, "serving": serving, "pinned": pinned, "versions": versions}
        typer.echo(json.dumps(doc, indent=2))
        return
    print_table(
        f"model {settings.model_name!r}: {len(metas)} versions · head {head} · serving {serving}"
        + (" (pinned)" if pinned else ""),
        _LIST_COLUMNS,
        [_list_row(m, states[m.number], head) for m in metas],
        wide=wide,
        caption="* head · stable: a rollback or unpin may go there · candidate: awaiting the guard · "
        "quarantined:N: written during incident N (pin only with --force) · events seen: every scored event, "
        "across rollbacks",
    )


@versions_app.command("show")
def show_version(
    number: int, config: ConfigOpt = None, model: ModelOpt = None, redis_url: RedisOpt = None, as_json: JsonOpt = False
) -> None:
    """Full metadata of version NUMBER (the blob's checksum is verified)."""
    from snapshotter.states import version_states

    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store_from(config, model, redis_url)
    meta, _state = store.load(number)
    doc = {**meta.to_dict(), "state": version_states(store, [number])[number]}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    doc["created_at"] = f"{_when(meta.created_at)} UTC"
    print_table(
        f"model {settings.model_name!r} version {number}",
        (Column("field"), Column("value", wraps=True, least=30)),
        [
            [key, json.dumps(value, sort_keys=False) if isinstance(value, dict) else str(value)]
            for key, value in doc.items()
        ],
        caption="stable (metadata): met the threshold when written; state: what it is now · events_seen, "
        "events_learned: the stream's counters, every event across rollbacks · model_events_learned: the "
        "model's own SGD steps (rewinds with a rollback)",
        header=False,
    )


@versions_app.command("learned")
def learned_pairs(
    number: Annotated[int | None, typer.Argument(help="The version (default: the head).")] = None,
    since: Annotated[
        int | None, typer.Option(help="Start after this version of its lineage (default: from the first).")
    ] = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """The (event id, label) pairs version NUMBER's model learned, in the order it learned them (with the label
    join on: each version stores its own, the parent chain gives the rest). One JSON object per line:
    ``{"event_id", "label", "version"}``. A plain river loop over these pairs (``learn_one`` in this order, on each
    event's features) reproduces the version's model to the last digit."""
    from streaming.errors import InputError, SnapshotError

    store = open_store_from(config, model, redis_url)
    start = number if number is not None else store.head()
    if start is None:
        raise InputError("no version is stored yet: nothing was learned")
    chain: list[tuple[int, dict[str, Any]]] = []
    at: int | None = start
    while at is not None and at != since:
        try:
            meta, state = store.load(at)
        except SnapshotError as exc:
            below = f" (below version {chain[-1][0]})" if chain else ""
            raise InputError(
                f"version {at}{below} cannot be read ({exc}): its pairs are not known; start after it with --since {at}"
            ) from None
        learned = state.stream.get("learned")
        if learned is None:
            raise InputError(
                f"version {at} was written without the label join (LIVELEARN_LABEL_WAIT unset): its model learned "
                f"the labelled events in stream order; start after it with --since {at}"
            )
        chain.append((at, learned))
        at = meta.parent
    if since is not None and at != since:
        raise InputError(f"version {since} is not an ancestor of version {start}")
    for version, learned in reversed(chain):
        for event_id, label in zip(learned["ids"], learned["labels"], strict=True):
            typer.echo(json.dumps({"event_id": event_id, "label": bool(label), "version": version}))


def pin(
    number: int,
    reason: ReasonOpt,
    force: Annotated[
        bool, typer.Option("--force", help="Pin even a version quarantined by an incident (audited as forced).")
    ] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Pin version NUMBER: serving stays on it and nothing automatic moves it until unpin."""
    control = control_from(config, model, redis_url)
    control.pin(number, actor=actor_or_default(actor), reason=reason, force=force)
    done(control, f"pinned version {number}")


def unpin(
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Unpin: serving follows the newest stable version again."""
    control = control_from(config, model, redis_url)
    control.unpin(actor=actor_or_default(actor), reason=reason)
    done(control, "unpinned")


def rollback(
    reason: ReasonOpt,
    to: Annotated[int | None, typer.Option("--to", help="Target version.")] = None,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Roll the learners (and unpinned serving) back to --to N or the newest stable version before the head."""
    control = control_from(config, model, redis_url)
    target = control.rollback(to=to, actor=actor_or_default(actor), reason=reason)
    done(control, f"rolled back to version {target}")


def register(app: typer.Typer) -> None:
    versions_app.command("pin")(pin)
    versions_app.command("unpin")(unpin)
    versions_app.command("rollback")(rollback)
    app.add_typer(versions_app, name="versions")
