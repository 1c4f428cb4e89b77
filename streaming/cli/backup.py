"""``livelearn versions export|import``, ``livelearn backup`` and ``livelearn restore-from-backup``: versions
carried between environments through object storage, backups, and the recovery after Redis lost its data."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

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
from streaming.cli.versions import actor_or_default, versions_app
from streaming.errors import InputError

if TYPE_CHECKING:
    from snapshotter.archive import Archive, ExportReport
    from snapshotter.store import VersionStore
    from streaming.config import Settings

__all__ = ["backup", "export", "import_", "register", "restore"]

console = Console()

NumbersArg = Annotated[list[int] | None, typer.Argument(help="Version numbers (default: see the options).")]


def _location(given: str | None, settings: Settings, flag: str) -> str:
    url = given or settings.store.backup_url
    if not url:
        raise InputError(f"say where: {flag} s3://BUCKET/PREFIX or a directory (or set LIVELEARN_BACKUP_URL)")
    return url


def _store(settings: Settings) -> VersionStore:
    from snapshotter.store import open_store

    return open_store(settings)


def _source(settings: Settings) -> str:
    from snapshotter.connection import redact_url

    return f"{redact_url(settings.redis.url)} model {settings.store.model_name}"


def _said(report: ExportReport, where: str) -> dict[str, Any]:
    return {
        "location": where,
        "manifest": report.manifest,
        "written": list(report.written),
        "present": list(report.present),
        "missing": list(report.missing),
        "bytes_written": report.bytes_written,
        "seconds": round(report.seconds, 3),
    }


def _audit(store: VersionStore, action: str, actor: str, reason: str, **fields: Any) -> None:
    from snapshotter.audit import append_audit

    append_audit(store.client, store.keys, store.audit_retention, action=action, actor=actor, reason=reason, **fields)


def export(
    numbers: NumbersArg = None,
    to: Annotated[str | None, typer.Option("--to", help="s3://BUCKET/PREFIX (gs://, az://) or a directory.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every stored version (the default without NUMBERS).")] = False,
    stable: Annotated[bool, typer.Option("--stable", help="Only the stable versions.")] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write versions (blob, metadata, SHA-256 of each) and a manifest to object storage; versions there already
    are named, not written again, and a different version under the same number is refused."""
    from snapshotter.archive import export_versions
    from snapshotter.objects import open_objects

    if numbers and (every or stable):
        raise InputError("give version NUMBERS or --all/--stable, not both")
    settings = settings_from(config, model, redis_url=redis_url)
    objects = open_objects(_location(to, settings, "--to"))
    store = _store(settings)
    chosen = numbers or (store.stable_numbers() if stable else None)
    who = actor_or_default(actor)
    report = export_versions(store, objects, chosen, actor=who, kind="export", source=_source(settings))
    _audit(store, "export", who, f"exported to {objects.where}", manifest=report.manifest, written=len(report.written))
    _print(report, objects.where, as_json, "exported")


def _print(report: ExportReport, where: str, as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(_said(report, where), indent=2))
        return
    mib = report.bytes_written / 2**20
    console.print(
        f"{verb} {len(report.written)} versions ({mib:,.1f} MiB in {report.seconds:.1f} s) to {where}; "
        f"{len(report.present)} there already"
        + (f"; {len(report.missing)} dropped by retention before they were read" if report.missing else "")
        + (f"; manifest {report.manifest}" if report.manifest else "; nothing new: no manifest written"),
        highlight=False,
        soft_wrap=True,
    )


def import_(
    numbers: NumbersArg = None,
    source: Annotated[str | None, typer.Option("--from", help="s3://BUCKET/PREFIX or a directory.")] = None,
    from_model: Annotated[
        str | None, typer.Option("--from-model", help="The model name in the archive (default: this model's).")
    ] = None,
    stable: Annotated[
        bool,
        typer.Option(
            "--stable",
            help="Make the versions that were stable where they came from stable here too: rollbacks and unpin may "
            "then go to them (default: not stable; pin one to serve it).",
        ),
    ] = False,
    own: Annotated[
        bool,
        typer.Option(
            "--own-versions",
            help="The archive holds this store's own versions (its backups): import numbers it handed out before "
            "and no longer holds (retention dropped them). Without it such a number is refused: it may have named "
            "another version here.",
        ),
    ] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write versions from object storage into this Redis under their own numbers (default: every version the
    archive holds), each verified against its SHA-256 first. Never moves the head or serving (pin a version to
    serve it); a different version already holding a number is refused, never overwritten."""
    from snapshotter.archive import import_versions, read_archive
    from snapshotter.objects import open_objects

    settings = settings_from(config, model, redis_url=redis_url)
    if own and from_model not in (None, settings.store.model_name):
        raise InputError("--own-versions says the archive holds this model's own versions: not with --from-model")
    objects = open_objects(_location(source, settings, "--from"), create=False)
    archive = read_archive(objects, from_model or settings.store.model_name)
    if not archive.versions:
        raise InputError(f"{objects.where} holds no version of model {archive.model!r}")
    store = _store(settings)
    report = import_versions(
        store,
        objects,
        archive,
        numbers or None,
        actor=actor_or_default(actor),
        as_stable=(lambda version: version.stable) if stable else None,
        below_counter=own,
        protect=True,  # kept from retention until released (or a pin of one ends): see the line printed below
    )
    if as_json:
        doc = {"location": objects.where, "imported": list(report.imported), "present": list(report.present)}
        typer.echo(json.dumps({**doc, "bytes_read": report.bytes_read, "seconds": round(report.seconds, 3)}))
        return
    console.print(
        f"imported {len(report.imported)} versions from {objects.where} ({report.bytes_read / 2**20:,.1f} MiB in "
        f"{report.seconds:.1f} s); {len(report.present)} were here already; head {store.head()}, serving "
        f"{store.serving()} (pin a version to serve it; they are kept from retention until `livelearn versions "
        "release`)",
        highlight=False,
        soft_wrap=True,
    )


def release(
    numbers: Annotated[list[int], typer.Argument(help="Imported versions to let retention have.")],
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Let retention have imported versions again (an import keeps them from it); the pinned version, the head,
    serving and rebuild branches' versions keep their protection. Audited."""
    settings = settings_from(config, model, redis_url=redis_url)
    released = _store(settings).release(numbers, actor=actor_or_default(actor), reason=reason)
    console.print(f"released {len(released)} versions to retention: {', '.join(map(str, released)) or 'none'}")


def backup(
    to: Annotated[str | None, typer.Option("--to", help="Default: LIVELEARN_BACKUP_URL.")] = None,
    adopt_identity: Annotated[
        bool,
        typer.Option(
            "--adopt-identity",
            help="This store lost its identity key alone (its versions are the location's, byte for byte): take the "
            "location's store identity again, then back up. Audited.",
        ),
    ] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the model's stable versions that the backup location does not hold yet, and the version counter
    (run it on a schedule: the chart's CronJob). A restore goes back to the newest one; its age is the RPO."""
    from snapshotter.archive import export_versions, held_as_archived, read_archive
    from snapshotter.objects import open_objects

    settings = settings_from(config, model, redis_url=redis_url)
    objects = open_objects(_location(to, settings, "--to"))
    store = _store(settings)
    archive = read_archive(objects, settings.store.model_name)  # read once: the export goes on from it
    who = actor_or_default(actor)
    if adopt_identity:
        _adopt_identity(store, archive, objects.where, who)
    stable = store.stable_numbers()
    ours = held_as_archived(store, archive, stable)
    # the stable versions the location does not hold yet — and any it holds under their number with other bytes
    # (another store's: the export refuses them, ArchiveConflictError, rather than count them as backed up)
    new = [n for n in stable if n not in ours]
    report = export_versions(
        store, objects, new, actor=who, kind="backup", source=_source(settings), missing_ok=True, archive=archive
    )
    newest = max([*ours, *report.written, *report.present], default=None)  # this store's versions only
    store.record_backup(
        at=time.time(),
        location=objects.where,
        manifest=report.manifest,
        written=len(report.written),
        newest=newest,
        actor=who,
    )
    _print(report, objects.where, as_json, "backed up")


def _adopt_identity(store: VersionStore, archive: Archive, where: str, actor: str) -> None:
    """Take the identity of the one store whose manifests are at the location, after checking this store holds the
    location's versions byte for byte (its newest among them, and none under a number with other bytes)."""
    from snapshotter.archive import held_as_archived
    from snapshotter.connection import as_text

    stores = archive.stores()
    if len(stores) != 1:
        raise InputError(f"--adopt-identity needs a location of one store's manifests; {where} has {len(stores)}")
    shared = [n for n in store.numbers() if n in archive.versions]
    same = held_as_archived(store, archive, shared)
    newest = max(archive.versions, default=None)
    # the same store: every version both hold is the same, and it holds the location's newest (a store that only
    # imported some of them holds its own newer versions under other numbers, not that one)
    if not same or len(same) != len(shared) or newest not in same:
        raise InputError(
            f"--adopt-identity: this store is not the one whose versions are at {where} ({len(same)} of the "
            f"{len(shared)} versions both hold are the same bytes): back up to a location of this store's own"
        )
    before = store.client.get(store.keys.store_id)
    store.identity(adopt=stores[0])
    _audit(
        store,
        "adopt_identity",
        actor,
        f"took the identity {stores[0]} of the backups at {where} again (it held {len(same)} of their versions)",
        previous="" if before is None else as_text(before),
    )


def restore(
    source: Annotated[str | None, typer.Option("--from", help="Default: LIVELEARN_BACKUP_URL.")] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Restore this version (default: the newest stable one).")
    ] = None,
    accept_loss: Annotated[
        bool,
        typer.Option(
            "--accept-loss", help="Restore even when Kafka no longer holds the events after the version (lost)."
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """After Redis lost the model's data: put the newest backed-up stable version back as the head (with the stable
    ones before it), numbering new versions above every number ever backed up or recorded in Kafka. Start the
    learner afterwards: it replays what Kafka holds after that version's offsets."""
    from snapshotter.archive import read_archive
    from snapshotter.objects import open_objects
    from streaming.learner.recovery import plan_restore, restore_from_backup

    settings = settings_from(config, model, bootstrap, redis_url=redis_url, topic=topic)
    objects = open_objects(_location(source, settings, "--from"), create=False)
    store = _store(settings)
    archive = read_archive(objects, settings.store.model_name)
    plan = plan_restore(settings, store, archive, version=version)
    after = (
        None
        if dry_run
        else restore_from_backup(
            store, objects, plan, actor=actor_or_default(actor), accept_loss=accept_loss, archive=archive
        )
    )
    if as_json:
        doc = {
            "version": plan.version,
            "offsets": plan.offsets,
            "imports": list(plan.imports),
            "numbered_after": plan.numbered_after if after is None else after,
            "expired": [list(e) for e in plan.expired],
            "missing": [list(m) for m in plan.missing],
            "join": plan.join,
            "dry_run": dry_run,
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    console.print(("would " if dry_run else "") + plan.describe(), highlight=False, soft_wrap=True)
    if not dry_run:
        console.print("now start the learner: it replays what Kafka holds after these offsets", highlight=False)


def register(app: typer.Typer) -> None:
    versions_app.command("export")(export)
    versions_app.command("import")(import_)
    versions_app.command("release")(release)
    app.command("backup")(backup)
    app.command("restore-from-backup")(restore)
