"""``livelearn rebuild``: learn a bounded range of history again as a branch, check it, promote it."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from streaming.cli.options import (
    ActorOpt,
    BootstrapOpt,
    ConfigOpt,
    JsonOpt,
    ModelOpt,
    ReasonOpt,
    RedisOpt,
    TopicOpt,
    settings_from,
)
from streaming.cli.versions import actor_or_default
from streaming.errors import InputError

__all__ = ["rebuild_app", "register"]

rebuild_app = typer.Typer(
    help="Learn a range of history again from a stored version (a repair that skips a bad range) as a branch; "
    "check it; promote it to the learner lineage.",
    no_args_is_help=True,
)
console = Console()


def _settings(config: Any, model: str | None, redis_url: str | None, bootstrap: str | None, topic: str | None) -> Any:
    return settings_from(config, model, bootstrap, redis_url=redis_url, topic=topic)


@rebuild_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="The branch's name (1-64 letters, digits, '.', '_', '-').")],
    from_version: Annotated[
        int | None, typer.Option("--from-version", help="Start from this stored version (its model and offsets).")
    ] = None,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="Start from nothing, at the start of each partition's log.")
    ] = False,
    until: Annotated[
        str, typer.Option("--until", help="head (each partition's end now) or PARTITION:OFFSET,... (first not read).")
    ] = "head",
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            help="kafka:TOPIC:PARTITION:FROM-TO (offsets, both included), or incident:ID (the range the lineage did "
            "not learn because of it); repeatable.",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--file", help="Read a CSV or Parquet file of sessions (the dataset's columns) instead of the events topic."
        ),
    ] = None,
    skip_where: Annotated[
        list[str] | None,
        typer.Option("--skip-where", help="Skip events whose FEATURE=VALUE (compared as text; repeatable)."),
    ] = None,
    every: Annotated[int, typer.Option("--every", min=1, help="A branch version every N records read.")] = 100_000,
    mode: Annotated[
        str, typer.Option("--mode", help="online: event by event, as the learner; batch: mini-batch updates.")
    ] = "online",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Batch mode: events per update.")] = 32,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Batch mode: passes over the events.")] = 1,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Batch mode: the shuffle's seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Start from a quarantined version.")] = False,
    include_held: Annotated[
        bool,
        typer.Option("--include-held", help="Learn a range where the lineage held learning (frozen, an incident)."),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and print the plan; change nothing.")] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild branch NAME: read the events topic (partitions assigned here: never the live consumer group, nothing
    committed, no prediction published) from the base version's offsets to --until, skipping the excluded ranges,
    each event scored then learned as the live learner does; versions written as a branch (never serving)."""
    from snapshotter.store import open_store
    from streaming.learner.rebuild import (
        parse_exclusions,
        parse_skip_where,
        plan_file_rebuild,
        plan_rebuild,
        run_rebuild,
    )

    if mode not in ("online", "batch"):
        raise InputError(f"--mode {mode!r}: online or batch")
    if mode == "online" and (batch_size, epochs, seed) != (32, 1, 0):
        raise InputError("--batch-size, --epochs and --seed are for --mode batch")
    if (from_version is None) == (not from_scratch):
        raise InputError("say where to start: --from-version N or --from-scratch")
    settings = _settings(config, model, redis_url, bootstrap, topic)
    store = open_store(settings)
    exclusions, incidents = parse_exclusions(exclude or [])
    options: dict[str, Any] = {
        "every": every,
        "mode": mode,
        "batch_size": batch_size,
        "epochs": epochs,
        "seed": seed,
        "skip_where": parse_skip_where(skip_where or []),
    }
    if source is not None:
        if exclusions or incidents or until != "head":
            raise InputError("--exclude and --until name offsets of the events topic: not with --file")
        plan = plan_file_rebuild(settings, store, name=name, base=from_version, path=source, force=force, **options)
    else:
        plan = plan_rebuild(
            settings,
            store,
            name=name,
            base=from_version,
            until=until,
            exclusions=exclusions,
            incidents=incidents,
            force=force,
            include_held=include_held,
            **options,
        )
    if dry_run:
        typer.echo(json.dumps({"plan": plan.describe(), "ranges": plan.ranges}) if as_json else plan.describe())
        return
    console.print(plan.describe(), highlight=False, soft_wrap=True)
    report = run_rebuild(settings, store, plan, actor=actor_or_default(actor))
    doc = {
        "branch": report.name,
        "versions": list(report.versions),
        "head": report.head,
        "read": report.read,
        "excluded": report.excluded,
        "learned": report.learned,
        "seconds": round(report.seconds, 2),
        "events_per_second": round(report.read / report.seconds) if report.seconds else None,
    }
    if as_json:
        typer.echo(json.dumps(doc))
        return
    console.print(
        f"branch {name}: {len(report.versions)} versions, head {report.head}; {report.read:,} records read "
        f"({report.excluded:,} excluded, {report.learned:,} learned) in {report.seconds:.1f} s. Check it with "
        f"`livelearn rebuild show {name}`, then `livelearn rebuild promote {name} --reason ...`",
        highlight=False,
        soft_wrap=True,
    )


@rebuild_app.command("list")
def list_branches(
    config: ConfigOpt = None, model: ModelOpt = None, redis_url: RedisOpt = None, as_json: JsonOpt = False
) -> None:
    """Every branch: status, base, head, the range and what it excluded."""
    from snapshotter.branches import STALE_MS, Branches
    from snapshotter.store import open_store

    branches = Branches(open_store(settings_from(config, model, redis_url=redis_url))).all()
    if as_json:
        typer.echo(json.dumps(branches, indent=2))
        return
    if not branches:
        console.print("no branch")
    now_ms = time.time() * 1000
    for name, doc in branches.items():
        origin = doc.get("provenance", {})
        status = doc["status"]
        if status == "running":
            silent = (now_ms - float(doc.get("heartbeat_ms", 0))) / 1000
            status += f" (reported {silent:.0f} s ago{'; dead: drop it' if silent * 1000 > STALE_MS else ''})"
        console.print(
            f"{name}: {status}, base {doc.get('base')}, head {doc.get('head')} ({doc.get('versions', 0)} "
            f"versions), {origin.get('mode', 'online')}, excluding {', '.join(origin.get('exclusions') or []) or '-'}",
            highlight=False,
            soft_wrap=True,
        )


@rebuild_app.command("show")
def show(
    name: str,
    last: Annotated[int, typer.Option("--last", min=1, help="Score on the last N offsets of the range.")] = 1000,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Branch NAME and its head scored beside the lineage's head: on the labelled events among the last --last
    offsets of its range (its exclusions left out) and on the reference set."""
    from snapshotter.store import open_store
    from streaming.learner.rebuild import validate_branch

    settings = _settings(config, model, redis_url, bootstrap, topic)
    result = validate_branch(settings, open_store(settings), name, last=last)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_validation(result)


def _print_validation(result: dict[str, Any]) -> None:
    doc = result["doc"]
    console.print(
        f"branch {doc['name']}: {doc['status']}, base {doc.get('base')}, head {doc.get('head')}; provenance "
        f"{json.dumps(doc.get('provenance', {}), sort_keys=True)}",
        highlight=False,
        soft_wrap=True,
    )
    for key in ("branch", "lineage"):
        if isinstance(result.get(key), dict) and "unavailable" in result[key]:
            console.print(
                f"  {key:>7} head v{result[key]['version']}: not scored, it cannot be read "
                f"({result[key]['unavailable']})",
                highlight=False,
                soft_wrap=True,
            )
        if key in result and isinstance(result[key], dict) and "accuracy" in result[key]:
            r = result[key]
            reference = f", reference {r['reference']:.4f}" if "reference" in r else ""
            console.print(
                f"  {key:>7} head v{r['version']}: accuracy {r['accuracy']:.4f}, log loss {r['log_loss']:.4f} on "
                f"{result['labelled_events']} labelled events{reference}",
                highlight=False,
            )


@rebuild_app.command("promote")
def promote(
    name: str,
    reason: ReasonOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")] = False,
    last: Annotated[int, typer.Option("--last", min=1, help="Score on the last N offsets of the range.")] = 1000,
    force: Annotated[
        bool, typer.Option("--force", help="Promote although the lineage moved (a rollback) since the rebuild.")
    ] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Move the learner lineage to branch NAME's head (one fenced script, audited with its provenance): it becomes
    head, stable and (unless pinned) serving; the active learner activates again from it and continues from its
    offsets, so the events after the branch's end are learned once, on the new lineage."""
    from snapshotter.branches import Branches
    from snapshotter.store import open_store
    from streaming.errors import RebuildError
    from streaming.learner.rebuild import validate_branch

    settings = _settings(config, model, redis_url, bootstrap, topic)
    store = open_store(settings)
    epoch = store.epoch()
    found = Branches(store).get(name)
    if found is None:
        raise RebuildError(f"no branch named {name!r} (see `livelearn rebuild list`)")
    if found["status"] != "done":  # the script refuses it too: said before the branch is scored
        raise RebuildError(f"branch {name!r} not promoted: branch {name} is {found['status']}, not done")
    result = validate_branch(settings, store, name, last=last)
    _print_validation(result)
    doc = result["doc"]
    if dry_run:
        serving = "stays on the pinned version" if store.pinned() is not None else f"moves to v{doc['head']}"
        console.print(
            f"would move the lineage from head {store.head()} to v{doc['head']} (epoch {epoch} -> {epoch + 1}); "
            f"serving {serving}; the active learner activates again and continues from the branch's offsets",
            highlight=False,
            soft_wrap=True,
        )
        return
    new_epoch = Branches(store).promote(
        name, expected_epoch=epoch, actor=actor_or_default(actor), reason=reason, force=force
    )
    console.print(
        f"promoted branch {name}: head v{doc['head']}, epoch {new_epoch}, serving {store.serving()}",
        highlight=False,
    )


@rebuild_app.command("drop")
def drop(
    name: str,
    reason: ReasonOpt,
    force: Annotated[bool, typer.Option("--force", help="Drop even a rebuild that reported lately.")] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Drop branch NAME (a failed one, one not wanted, or one whose rebuild was killed): its versions are no longer
    kept from retention; audited."""
    from snapshotter.branches import Branches
    from snapshotter.store import open_store

    store = open_store(settings_from(config, model, redis_url=redis_url))
    Branches(store).drop(name, actor=actor_or_default(actor), reason=reason, force=force)
    console.print(f"dropped branch {name}: its versions are left to retention", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(rebuild_app, name="rebuild")
