"""Export and import of versions through object storage: a real S3-protocol server (moto's server mode) and a
directory, real redis-servers. Every byte comes back; nothing is ever overwritten; a damaged object is named."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from clirun import one_line_error, run_livelearn

from snapshotter.archive import export_versions, import_versions, read_archive
from snapshotter.audit import read_audit
from snapshotter.codec import SnapshotState
from snapshotter.objects import open_objects
from snapshotter.store import VersionStore
from streaming.errors import (
    ArchiveConflictError,
    ArchiveCorruptError,
    ArchiveError,
    InputError,
    SnapshotCorruptError,
    VersionNotFoundError,
)

#: Redis and object storage are the subject: the other Kafka client and engine change nothing here.
pytestmark = pytest.mark.first_lane


def write_versions(store: VersionStore, count: int, *, seed: int = 0, stable_every: int = 2) -> list[int]:
    """``count`` versions of a small model (weights that differ by ``seed``), every ``stable_every``-th stable."""
    numbers = []
    for i in range(count):
        weights = {f"w{j}": (seed + 1) * (i + 1) * 0.001 * j for j in range(50)}
        state = SnapshotState(
            spec={"inputs": []}, model={"weights": weights}, metrics={}, counters={"events_seen": 100 * (i + 1)}
        )
        meta = store.write(
            state,
            writer="test",
            lease_value=None,
            offsets={"events": {"0": 100 * (i + 1)}},
            metrics={"rolling": {"accuracy": 0.8}},
            parent=store.head(),
            stable=i % stable_every == stable_every - 1,
        )
        numbers.append(meta.number)
    return numbers


def _no_livelearn_env(monkeypatch) -> None:
    """The commands run here read only their flags (the environment's LIVELEARN_* settings cleared)."""
    for name in [n for n in os.environ if n.startswith("LIVELEARN_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def two_stores(stack, private_redis, request):
    """A store on the session's redis-server (the source) and one on a redis-server of the test's own."""
    _broker, shared = stack
    _server, admin = private_redis
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40] + "-" + digest
    import redis

    source = VersionStore(redis.Redis(host="127.0.0.1", port=shared.port), name, promotion="immediate")
    target = VersionStore(admin, name, promotion="immediate")
    return source, target


@pytest.mark.parametrize("where", ["s3", "directory"])
def test_an_export_comes_back_byte_for_byte_in_another_redis_with_its_numbers_and_lineage(
    two_stores, where, request, tmp_path
):
    source, target = two_stores
    numbers = write_versions(source, 12)
    url = request.getfixturevalue("s3") if where == "s3" else str(tmp_path / "archive")
    objects = open_objects(url)

    report = export_versions(source, objects, actor="op")
    assert report.written == tuple(numbers) and not report.present
    archive = read_archive(objects, source.keys.model_name)
    assert list(archive.versions) == numbers and archive.counter == source.counter()

    imported = import_versions(target, objects, archive, actor="op", as_stable=lambda v: v.stable)

    assert imported.imported == tuple(numbers)
    for n in numbers:
        assert target.raw(n) == source.raw(n)  # metadata and blob, byte for byte
        assert hashlib.sha256(target.raw(n)[1]).hexdigest() == source.meta(n).sha256
        assert target.meta(n).parent == source.meta(n).parent
    assert target.stable_numbers() == source.stable_numbers()
    assert target.counter() == source.counter()  # never handed out again here
    assert target.head() is None and target.serving() is None  # an import moves nothing
    entries = read_audit(target.client, target.keys, actions={"import"})
    assert [e.to_version for e in entries] == numbers and all(e.actor == "op" for e in entries)
    # the next version this store writes is numbered above every imported one
    assert write_versions(target, 1)[0] == numbers[-1] + 1


def test_exports_are_incremental_and_never_overwrite_another_version_under_a_number(two_stores, tmp_path):
    source, target = two_stores
    write_versions(source, 4)
    objects = open_objects(str(tmp_path))
    export_versions(source, objects, actor="op")
    write_versions(source, 2)

    again = export_versions(source, objects, actor="op")
    assert again.written == (5, 6) and again.present == (1, 2, 3, 4)
    assert len(read_archive(objects, source.keys.model_name).manifests) == 2

    write_versions(target, 3, seed=7)  # another store's versions 1-3: other bytes under the same numbers
    before = sorted(p.read_bytes() for p in tmp_path.rglob("*.blob"))
    with pytest.raises(ArchiveConflictError, match="holds another version 1"):
        export_versions(target, objects, actor="op")
    assert sorted(p.read_bytes() for p in tmp_path.rglob("*.blob")) == before  # nothing replaced


def test_an_import_leaves_the_same_version_and_refuses_a_different_one_under_its_number(two_stores, tmp_path):
    source, target = two_stores
    write_versions(source, 4)
    objects = open_objects(str(tmp_path))
    export_versions(source, objects, actor="op")
    archive = read_archive(objects, source.keys.model_name)
    assert import_versions(target, objects, archive, [1, 2], actor="op").imported == (1, 2)

    again = import_versions(target, objects, archive, actor="op")
    assert again.imported == (3, 4) and again.present == (1, 2)

    other = VersionStore(target.client, "other-model")
    write_versions(other, 2, seed=3)
    theirs = other.raw(2)
    with pytest.raises(ArchiveConflictError, match=r"version 2 not imported .* different version"):
        import_versions(other, objects, archive, [2], actor="op")
    assert other.raw(2) == theirs  # left as it was


def test_a_number_this_store_handed_out_and_no_longer_holds_is_refused_unless_the_versions_are_its_own(
    two_stores, tmp_path
):
    source, _target = two_stores
    write_versions(source, 4)
    objects = open_objects(str(tmp_path))
    export_versions(source, objects, actor="op")
    archive = read_archive(objects, source.keys.model_name)
    source.client.delete(source.keys.meta(2), source.keys.blob(2))  # as retention drops a version
    source.client.zrem(source.keys.index, 2)

    with pytest.raises(ArchiveConflictError, match=r"numbered a version 2 already \(its counter is 4\)"):
        import_versions(source, objects, archive, [2], actor="op")
    assert source.raw(2) is None
    # its own backup: the operator says so
    assert import_versions(source, objects, archive, [2], actor="op", below_counter=True).imported == (2,)
    assert source.raw(2) is not None and source.counter() == 4


@pytest.mark.parametrize("damage", ["blob", "meta", "missing blob"])
def test_a_damaged_object_is_named_and_nothing_of_it_is_imported(two_stores, tmp_path, damage):
    source, target = two_stores
    write_versions(source, 5)
    objects = open_objects(str(tmp_path))
    export_versions(source, objects, actor="op")
    part = "meta" if damage == "meta" else "blob"
    path = next(tmp_path.rglob(f"0000000003.{part}"))
    if damage == "missing blob":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit
        path.write_bytes(bytes(data))
    archive = read_archive(objects, source.keys.model_name)

    with pytest.raises(ArchiveCorruptError, match=f"0000000003.{part}"):
        import_versions(target, objects, archive, actor="op")

    assert target.raw(3) is None and 3 not in target.numbers()
    assert set(target.numbers()) <= {1, 2}  # the ones before it (running it again goes on)


def test_a_version_corrupt_in_redis_is_never_exported(two_stores, tmp_path):
    source, _target = two_stores
    write_versions(source, 3)
    source.client.setrange(source.keys.blob(2), 10, b"\x00\x01")
    with pytest.raises(SnapshotCorruptError, match=r"version 2 .* fails its checksum"):
        export_versions(source, open_objects(str(tmp_path)), actor="op")
    assert not list(tmp_path.rglob("0000000002.blob"))


def test_an_unreadable_manifest_or_unknown_version_is_one_clear_error(two_stores, tmp_path):
    source, target = two_stores
    write_versions(source, 2)
    objects = open_objects(str(tmp_path))
    with pytest.raises(VersionNotFoundError, match="no version 9"):
        export_versions(source, objects, [1, 9], actor="op")
    export_versions(source, objects, actor="op")
    archive = read_archive(objects, source.keys.model_name)
    with pytest.raises(InputError, match=r"holds no version 7 .*\(it holds 1-2\)"):
        import_versions(target, objects, archive, [7], actor="op")
    manifest = next((tmp_path / source.keys.model_name / "manifests").iterdir())
    manifest.write_text("{not json")
    with pytest.raises(ArchiveCorruptError, match=r"manifest .* unreadable"):
        read_archive(objects, source.keys.model_name)


def test_a_newer_archive_format_is_refused_with_the_upgrade_advice(tmp_path):
    model = tmp_path / "shop" / "manifests"
    model.mkdir(parents=True)
    (model / "x.json").write_text(json.dumps({"archive_format": 99, "model": "shop", "versions": {}}))
    with pytest.raises(ArchiveError, match="upgrade livelearn"):
        read_archive(open_objects(str(tmp_path)), "shop")


def test_the_commands_export_and_import_through_s3_and_audit_the_export(two_stores, s3, monkeypatch, capsys):
    source, target = two_stores
    numbers = write_versions(source, 6)
    model = source.keys.model_name
    src_url = f"redis://127.0.0.1:{source.client.connection_pool.connection_kwargs['port']}/0"
    dst_url = f"redis://127.0.0.1:{target.client.connection_pool.connection_kwargs['port']}/0"
    _no_livelearn_env(monkeypatch)

    code, out, err = run_livelearn(
        monkeypatch, capsys, "versions", "export", "--to", s3, "--model", model, "--redis-url", src_url, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["written"] == numbers
    (entry,) = read_audit(source.client, source.keys, actions={"export"})
    assert entry.fields["written"] == "6"

    code, out, err = run_livelearn(
        monkeypatch, capsys, "versions", "import", "2", "4", "--from", s3, "--model", model, "--redis-url", dst_url
    )
    assert code == 0, err
    assert "imported 2 versions" in out
    assert target.numbers() == [2, 4] and target.raw(4) == source.raw(4)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["versions", "export", "--to", "ftp://host/x"], ["unknown object-storage scheme 'ftp'"]),
        (["versions", "export", "1", "--all", "--to", "/tmp"], ["NUMBERS or --all/--stable, not both"]),
        (["backup"], ["say where: --to"]),
        (["restore-from-backup"], ["say where: --from"]),
        (
            ["versions", "import", "--from", "/tmp", "--own-versions", "--from-model", "other"],
            ["not with --from-model"],
        ),
        # a wrong option or value: one line too, not the parser's box
        (["rebuild", "run", "x", "--from-scratch", "--epochs", "0"], ["Invalid value for '--epochs'", "--help"]),
        (["versions", "list", "--nope"], ["No such option: --nope", "livelearn versions list --help"]),
        (["rebuild", "run", "-x"], ["No such option: -x"]),
    ],
)
def test_bad_locations_and_options_are_one_line_errors(monkeypatch, capsys, argv, needles):
    _no_livelearn_env(monkeypatch)
    one_line_error(run_livelearn(monkeypatch, capsys, *argv), *needles)


def test_the_backup_age_counts_from_the_oldest_version_until_a_backup_completes(two_stores):
    source, _target = two_stores
    assert source.backup_age() == 0.0  # nothing to back up
    write_versions(source, 2)
    oldest = source.meta(1).created_at
    assert source.backup_age(now=oldest + 100) == pytest.approx(100)
    source.record_backup(at=oldest + 50, location="s3://b/p", manifest="m.json", written=2, newest=2, actor="op")
    assert source.backup_age(now=oldest + 100) == pytest.approx(50)
    assert source.last_backup()["location"] == "s3://b/p"


def test_a_file_where_a_directory_should_be_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ArchiveError, match="is a file, not a directory"):
        open_objects(str(path))


def test_imported_versions_are_no_rollback_targets_unless_asked_and_orphans_raise_the_counter(two_stores, tmp_path):
    source, target = two_stores
    write_versions(source, 4)
    objects = open_objects(str(tmp_path))
    export_versions(source, objects, actor="op")
    archive = read_archive(objects, source.keys.model_name)
    import_versions(target, objects, archive, [2], actor="op")
    assert target.stable_numbers() == []  # another environment's version: pin it to serve it

    # an export that died after writing version 9's objects, before its manifest: 9 was handed out all the same
    (tmp_path / source.keys.model_name / "versions" / "0000000009.meta").write_bytes(b"x")
    assert read_archive(objects, source.keys.model_name).counter == 9


def test_a_reexport_after_a_crash_names_the_orphans_as_written_and_a_backup_with_nothing_new_writes_no_manifest(
    two_stores, tmp_path
):
    source, _target = two_stores
    write_versions(source, 3)
    objects = open_objects(str(tmp_path))
    meta, blob = source.raw(3)
    objects.put_new(f"{source.keys.model_name}/versions/0000000003.meta", meta)  # the crashed export's objects
    objects.put_new(f"{source.keys.model_name}/versions/0000000003.blob", blob)
    report = export_versions(source, objects, actor="op", kind="backup")
    assert report.written == (1, 2, 3) and report.manifest
    again = export_versions(source, objects, [], actor="op", kind="backup")
    assert again.manifest == "" and again.written == ()
    assert len(read_archive(objects, source.keys.model_name).manifests) == 1
    gone = export_versions(source, objects, [3, 77], actor="op", kind="backup", missing_ok=True)
    assert gone.missing == (77,)  # dropped by retention between the listing and the read


def test_hostile_locations_and_manifests_are_one_line_errors(tmp_path):
    with pytest.raises(ArchiveError, match="file:///DIR"):
        open_objects("file://backups/x")
    spaced = tmp_path / "a b"
    assert open_objects(f"file://{str(spaced).replace(' ', '%20')}").where == str(spaced)
    with pytest.raises(ArchiveError, match="does not exist"):
        open_objects(str(tmp_path / "typo"), create=False)
    assert not (tmp_path / "typo").exists()
    manifests = tmp_path / "shop" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "m.json").write_text(
        json.dumps({"model": "shop", "versions": {}, "join": {"version": "x", "sha256": "y"}})
    )
    with pytest.raises(ArchiveCorruptError, match="unreadable"):
        read_archive(open_objects(str(tmp_path)), "shop")


def test_a_version_quarantined_after_its_backup_is_no_restore_target_and_imports_outlive_retention(
    two_stores, tmp_path
):
    source, target = two_stores
    write_versions(source, 6)  # stable: 2, 4, 6
    objects = open_objects(str(tmp_path))
    export_versions(source, objects, source.stable_numbers(), actor="op", kind="backup")
    assert read_archive(objects, source.keys.model_name).newest_stable() == 6
    source.client.hset(source.keys.quarantined, 6, 3)  # an incident found the damage after the backup ran
    source.client.zrem(source.keys.stable, 6)
    source.client.zrem(source.keys.index, 2)  # and retention dropped version 2 there
    source.client.zrem(source.keys.stable, 2)
    source.client.delete(source.keys.meta(2), source.keys.blob(2))
    again = export_versions(source, objects, [], actor="op", kind="backup")
    assert again.manifest and again.written == ()  # nothing new, but the store's marks changed: recorded
    archive = read_archive(objects, source.keys.model_name)
    assert archive.versions[6].quarantined == 3 and not archive.versions[6].stable
    assert archive.versions[2].stable  # gone from the store, not from the backups: still a restore target
    assert archive.newest_stable() == 4

    imported = VersionStore(target.client, "kept-" + source.keys.model_name, keep=2, promotion="immediate")
    import_versions(imported, objects, archive, [2], actor="op", protect=True)
    write_versions(imported, 5, stable_every=99)  # retention keeps the newest 2 and what is protected
    assert 2 in imported.numbers()
    assert imported.release([2, 99], actor="op", reason="not needed") == [2]
    write_versions(imported, 1, stable_every=99)
    assert 2 not in imported.numbers()
    (entry,) = read_audit(imported.client, imported.keys, actions={"release_versions"})
    assert entry.fields["versions"] == "2"


def _backup(store: VersionStore, objects) -> None:
    export_versions(store, objects, store.stable_numbers(), actor="op", kind="backup", missing_ok=True)


def _retention_drops_all_but_the_newest(store: VersionStore, *, parent: int) -> None:
    """The learner's next version (a candidate, not stable) with retention keeping 1 (and 2 stable): the real
    write_version script drops the rest (blob, metadata, index, quarantine mark)."""
    small = VersionStore(store.client, store.keys.model_name, keep=1, keep_stable=2, promotion="guard")
    small.write(
        SnapshotState(spec={"inputs": []}, model={"w": 1}, metrics={}, counters={}),
        writer="test",
        lease_value=None,
        offsets={"events": {"0": 900}},
        metrics={},
        parent=parent,
        stable=False,
        epoch=store.epoch(),
    )


@pytest.mark.parametrize("what", ["rollback", "quarantine"])
def test_what_the_store_said_of_a_version_last_holds_in_the_archive_after_retention_drops_it(
    two_stores, tmp_path, what
):
    """A version a rollback abandoned, or an incident quarantined, after it was backed up is no restore target,
    also once retention dropped it from the store (the later manifests no longer see it; the last one that did
    says so). Found by a review: the first manifest's "stable" came back once the version left the store."""
    from snapshotter.control import ControlPlane

    source, _target = two_stores
    write_versions(source, 8)  # stable 2, 4, 6, 8
    objects = open_objects(str(tmp_path))
    _backup(source, objects)
    if what == "rollback":
        ControlPlane(source).rollback(to=4, actor="op", reason="bad model")  # 5-8 abandoned: out of `stable`
    else:
        for number in (6, 8):  # an incident found the damage after the backup ran (rolled back to 4)
            source.client.hset(source.keys.quarantined, number, 3)
            source.client.zrem(source.keys.stable, number)
        source.client.set(source.keys.head, 4)
        source.client.set(source.keys.serving, 4)
    _backup(source, objects)  # nothing new, the marks changed: a manifest records them
    assert read_archive(objects, source.keys.model_name).newest_stable() == 4
    _retention_drops_all_but_the_newest(source, parent=4)
    assert not {5, 6, 7, 8} & set(source.numbers()) and not source.quarantined()
    _backup(source, objects)
    archive = read_archive(objects, source.keys.model_name)
    assert archive.newest_stable() == 4
    assert [n for n, v in archive.versions.items() if v.stable] == [2, 4]
    if what == "quarantine":
        assert archive.versions[6].quarantined == 3 and archive.versions[8].quarantined == 3


def test_a_restore_goes_back_to_the_lineage_a_rollback_kept_not_to_the_one_it_abandoned(make_settings, cli, tmp_path):
    """End to end through the commands: backup, rollback, backup, retention, backup, Redis lost, restore."""
    import redis

    from snapshotter.control import ControlPlane

    settings = make_settings()
    client = redis.Redis.from_url(settings.redis_url)
    store = VersionStore(client, settings.model_name, promotion="immediate")
    for i in range(8):  # stable 2, 4, 6, 8; offsets on the test's own events topic
        store.write(
            SnapshotState(spec={"inputs": []}, model={"w": i}, metrics={}, counters={}),
            writer="test",
            lease_value=None,
            offsets={settings.events_topic: {"0": 0}},
            metrics={},
            parent=store.head(),
            stable=i % 2 == 1,
        )
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0
    ControlPlane(store).rollback(to=4, actor="op", reason="bad model")
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0
    _retention_drops_all_but_the_newest(store, parent=4)
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0
    for key in client.keys(f"livelearn:{{{settings.model_name}}}:*"):
        client.delete(key)  # Redis lost the model's data
    code, out, err = cli(settings, "restore-from-backup", "--from", str(tmp_path), "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == 4 and store.head() == 4 and store.stable_numbers() == [2, 4]
    (identity,) = read_archive(open_objects(str(tmp_path)), settings.model_name).stores()
    assert store.identity() == identity  # the same store, going on: its backups go where they went
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0


def test_the_import_command_keeps_imports_from_retention_and_makes_them_stable_when_asked(
    two_stores, tmp_path, monkeypatch, capsys
):
    source, target = two_stores
    write_versions(source, 4)  # stable: 2, 4
    export_versions(source, open_objects(str(tmp_path)), actor="op")
    common = ["--from", str(tmp_path), "--model", target.keys.model_name, "--redis-url", _redis_url(target)]
    _no_livelearn_env(monkeypatch)
    code, out, err = run_livelearn(monkeypatch, capsys, "versions", "import", "1", "2", *common)
    assert code == 0, err
    assert "kept from retention" in out and target.stable_numbers() == []  # not stable here unless asked
    learner = VersionStore(target.client, target.keys.model_name, keep=2, promotion="immediate")
    write_versions(learner, 3, seed=5, stable_every=99)  # retention keeps 2: the imports stay
    assert {1, 2} <= set(learner.numbers())
    other = VersionStore(target.client, "stable-" + target.keys.model_name, promotion="immediate")
    common[3] = other.keys.model_name
    common += ["--from-model", source.keys.model_name]
    code, _out, err = run_livelearn(monkeypatch, capsys, "versions", "import", "--stable", *common)
    assert code == 0, err
    assert other.stable_numbers() == [2, 4] and other.numbers() == [1, 2, 3, 4]
    common[3] = target.keys.model_name
    code, _out, err = run_livelearn(monkeypatch, capsys, "versions", "import", "1", "2", "--stable", *common[:6])
    assert code == 0, err  # here already: --stable holds for them all the same
    assert target.stable_numbers() == [2]


def _redis_url(store: VersionStore) -> str:
    return f"redis://127.0.0.1:{store.client.connection_pool.connection_kwargs['port']}/0"


def test_a_backup_refuses_a_location_holding_another_stores_versions_under_its_numbers(
    two_stores, tmp_path, monkeypatch, capsys
):
    """Staging's versions 1-4 at the location; production (the same model name, other bytes) backs up there: refused
    with one line, nothing recorded as backed up (a backup that wrote nothing would silence the backup-age alert)."""
    staging, production = two_stores
    write_versions(staging, 4, seed=1)
    export_versions(staging, open_objects(str(tmp_path)), actor="op")
    write_versions(production, 4, seed=2)
    _no_livelearn_env(monkeypatch)
    argv = ["backup", "--to", str(tmp_path), "--model", production.keys.model_name]
    result = run_livelearn(monkeypatch, capsys, *argv, "--redis-url", _redis_url(production))
    one_line_error(result, "written by another store")
    assert production.last_backup() is None
    archive = read_archive(open_objects(str(tmp_path)), production.keys.model_name)
    assert [v.sha256 for v in archive.versions.values()] == [staging.meta(n).sha256 for n in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    "case",
    [
        ("created_at", float("nan"), "created_at must be a finite number"),
        ("created_at", "yesterday", "created_at must be a finite number"),
        ("offsets", "events@200", "offsets must be a map"),
        ("offsets", {"events": {"zero": 1}}, "offsets: partition 'zero' is not a partition number"),
        ("offsets", {"events": {"0": -1}}, "an offset must be"),
        ("parent", 0, "parent must be a number from 1"),
        ("stable", "yes", "stable must be true or false"),
        ("sha256", "x", "sha256 must be a SHA-256"),
        ("size_bytes", True, "size_bytes must be a whole number"),
        ("epoch", 2**70, "epoch must be a whole number"),
        (None, None, "no meta_sha256"),
    ],
)
def test_a_manifest_field_livelearn_never_writes_is_refused_before_anything_is_imported(
    two_stores, tmp_path, monkeypatch, capsys, case
):
    """Every field of a manifest's entry is checked when the archive is read: a bad one is one line naming the
    manifest, version and field, and nothing of it reaches Redis (a NaN time once left half a version there)."""
    field, value, needle = case
    source, target = two_stores
    write_versions(source, 2)
    export_versions(source, open_objects(str(tmp_path)), actor="op")
    for path in (tmp_path / source.keys.model_name / "manifests").glob("*.json"):
        doc = json.loads(path.read_text())
        if field is None:
            del doc["versions"]["2"]["meta_sha256"]
        else:
            doc["versions"]["2"][field] = value
        path.write_text(json.dumps(doc))
    _no_livelearn_env(monkeypatch)
    argv = ["versions", "import", "--from", str(tmp_path), "--model", source.keys.model_name]
    one_line_error(run_livelearn(monkeypatch, capsys, *argv, "--redis-url", _redis_url(target)), "version 2: " + needle)
    assert target.numbers() == [] and target.counter() == 0 and not target.client.keys("*")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda doc: doc["versions"].__setitem__("0", doc["versions"]["1"]), "version must be a number from 1"),
        (lambda doc: doc["versions"].__setitem__("9" * 20, doc["versions"]["1"]), "version must be a number from 1"),
        (lambda doc: doc["source"].__setitem__("counter", 2**70), "source.counter must be"),
        (lambda doc: doc["marks"].__setitem__("stored", [-1]), "marks.stored must be"),
        (lambda doc: doc["marks"].__setitem__("quarantined", {"1": "x"}), "an incident must be"),
        (lambda doc: doc["marks"].__setitem__("stable", "123"), "stable and stored must be lists"),
        (lambda doc: doc.__setitem__("archive_format", float("inf")), "archive_format must be"),
        (lambda doc: doc["source"].__setitem__("store_id", "../x"), "source.store_id must be"),
    ],
)
def test_a_manifest_naming_numbers_no_store_hands_out_is_one_line_error(two_stores, tmp_path, change, needle):
    source, _target = two_stores
    write_versions(source, 2)
    export_versions(source, open_objects(str(tmp_path)), actor="op")
    for path in (tmp_path / source.keys.model_name / "manifests").glob("*.json"):
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))
    with pytest.raises(ArchiveCorruptError, match="unreadable") as caught:
        read_archive(open_objects(str(tmp_path)), source.keys.model_name)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_a_manifest_nested_past_any_parser_is_one_line_error(tmp_path):
    manifests = tmp_path / "shop" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "m.json").write_text('{"model": "shop", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ArchiveCorruptError, match="unreadable") as caught:
        read_archive(open_objects(str(tmp_path)), "shop")
    assert "\n" not in str(caught.value)


def test_a_stray_object_beyond_any_version_number_counts_for_nothing_and_the_store_writes_on(
    make_settings, cli, tmp_path
):
    import redis

    settings = make_settings()
    client = redis.Redis.from_url(settings.redis_url)
    store = VersionStore(client, settings.model_name, promotion="immediate")
    write_versions(store, 2)
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0
    (tmp_path / settings.model_name / "versions" / ("9" * 20 + ".blob")).write_bytes(b"x")
    (tmp_path / settings.model_name / "versions" / "0000000007.blob").write_bytes(b"x")  # a dead export's: counts
    assert read_archive(open_objects(str(tmp_path)), settings.model_name).counter == 7
    for key in client.keys(f"livelearn:{{{settings.model_name}}}:*"):
        client.delete(key)
    code, _out, err = cli(settings, "restore-from-backup", "--from", str(tmp_path), "--accept-loss")
    assert code == 0, err
    assert store.head() == 2 and store.counter() >= 7
    assert write_versions(store, 1) == [8]


def test_the_same_blob_with_other_metadata_is_another_version_everywhere(two_stores, tmp_path):
    """Two versions with the same model bytes but other offsets (another environment's topic, lineage, time) are
    different versions: an import, an export and two manifests disagreeing all say so; nothing is overwritten."""
    source, target = two_stores
    write_versions(source, 2)
    write_versions(target, 2)  # the same weights, written at another time: other metadata
    assert source.raw(2)[1] == target.raw(2)[1] and source.raw(2)[0] != target.raw(2)[0]
    objects = open_objects(str(tmp_path / "a"))
    export_versions(source, objects, actor="op")
    held = target.raw(2)
    with pytest.raises(ArchiveConflictError, match="same blob but other metadata"):
        import_versions(target, objects, read_archive(objects, source.keys.model_name), [2], actor="op")
    assert target.raw(2) == held
    with pytest.raises(ArchiveConflictError, match="the same blob with other metadata"):
        export_versions(target, objects, [2], actor="op")
    other = open_objects(str(tmp_path / "b"))
    export_versions(source, other, [2], actor="op")
    manifests = tmp_path / "b" / source.keys.model_name / "manifests"
    (first,) = manifests.glob("*.json")
    doc = json.loads(first.read_text())
    doc["versions"]["2"]["meta_sha256"] = hashlib.sha256(target.raw(2)[0]).hexdigest()
    (manifests / ("z" + first.name)).write_text(json.dumps(doc))
    with pytest.raises(ArchiveCorruptError, match="the same blob with other metadata"):
        read_archive(other, source.keys.model_name)


def test_the_store_refuses_an_import_it_could_not_write_whole(two_stores):
    """The store checks the number and the time itself (a caller other than read_archive's checks): Redis keeps
    what a script wrote before a call failed, so a bad value must never reach the script."""
    source, target = two_stores
    write_versions(source, 1)
    meta, blob = source.raw(1)
    common = {"meta": meta, "blob": blob, "stable": False, "quarantined": None, "actor": "op", "source": "test"}
    for number, created_at, needle in (
        (1, float("nan"), "not a finite number"),
        (0, 1.0, "out of range"),
        (2**53, 1.0, "out of range"),
    ):
        with pytest.raises(InputError, match=needle):
            target.import_version(number, created_at=created_at, **common)
    assert not target.client.keys("*")
    assert target.import_version(1, created_at=1.0, **common) and target.numbers() == [1]


def test_a_restore_whose_offsets_name_a_partition_this_kafka_lacks_says_so_and_needs_the_loss_accepted(
    make_settings, cli, tmp_path
):
    import redis

    settings = make_settings()
    client = redis.Redis.from_url(settings.redis_url)
    store = VersionStore(client, settings.model_name, promotion="immediate")
    offsets = {settings.events_topic: {"0": 0, "3": 5}, "gone-" + settings.events_topic: {"0": 7}}
    store.write(
        SnapshotState(spec={"inputs": []}, model={"w": 1}, metrics={}, counters={}),
        writer="test",
        lease_value=None,
        offsets=offsets,
        metrics={},
        parent=None,
        stable=True,
    )
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0
    for key in client.keys(f"livelearn:{{{settings.model_name}}}:*"):
        client.delete(key)
    code, out, err = cli(settings, "restore-from-backup", "--from", str(tmp_path), "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["missing"] == [[settings.events_topic, 3], ["gone-" + settings.events_topic, 0]]
    one_line_error(
        cli(settings, "restore-from-backup", "--from", str(tmp_path)),
        f"{settings.events_topic}[3] does not exist",
        f"gone-{settings.events_topic}[0] does not exist",
        "--accept-loss",
    )
    assert store.head() is None
    assert cli(settings, "restore-from-backup", "--from", str(tmp_path), "--accept-loss")[0] == 0
    assert store.head() == 1


def _quarantine(store: VersionStore, numbers: list[int], incident: int, *, back_to: int) -> None:
    """What an incident does to ``numbers`` (quarantined, out of `stable`) and the lineage (back to ``back_to``)."""
    for number in numbers:
        store.client.hset(store.keys.quarantined, number, incident)
        store.client.zrem(store.keys.stable, number)
    store.client.set(store.keys.head, back_to)
    store.client.set(store.keys.serving, back_to)


@pytest.mark.parametrize("how", ["imported back", "a manifest named earlier than it was written"])
def test_a_quarantine_once_backed_up_stays(two_stores, tmp_path, how):
    """Found by a review: a later view of the store that no longer showed the mark (an operator imported the
    version back to look at it: an import does not bring the mark back; or an export from a host whose clock runs
    ahead, named after the backup that saw the quarantine) lifted it, and the version was a restore target again."""
    source, _target = two_stores
    write_versions(source, 4)  # stable 2, 4
    objects = open_objects(str(tmp_path))
    if how == "imported back":
        _backup(source, objects)
    else:
        report = export_versions(source, objects, actor="op")  # the operator's export, its clock a year ahead
        manifests = tmp_path / source.keys.model_name / "manifests"
        first = manifests / report.manifest.rsplit("/", 1)[1]
        first.rename(manifests / ("9999" + first.name[4:]))
    _quarantine(source, [4], 3, back_to=2)
    _backup(source, objects)
    _retention_drops_all_but_the_newest(source, parent=2)
    assert 4 not in source.numbers()
    if how == "imported back":
        archive = read_archive(objects, source.keys.model_name)
        import_versions(source, objects, archive, [4], actor="op", below_counter=True, protect=True)
        _backup(source, objects)
    version = read_archive(objects, source.keys.model_name).versions[4]
    assert version.quarantined == 3 and not version.stable
    assert read_archive(objects, source.keys.model_name).newest_stable() == 2


def test_a_location_is_one_stores_for_backups_and_each_stores_marks_are_its_own(two_stores, tmp_path):
    """Found by a review: production imported staging's versions (same bytes: no number collided) and backed up to
    staging's location; its marks (imports are not stable there) took staging's stable versions from staging's
    restore, which then picked production's own. Each store now has an identity in its manifests: a backup to, or
    an export into, another store's backup location is refused; and a store's marks speak only of the versions it
    wrote."""
    staging, production = two_stores
    write_versions(staging, 4)  # stable 2, 4
    backups, carried = open_objects(str(tmp_path / "backups")), open_objects(str(tmp_path / "carried"))
    _backup(staging, backups)
    export_versions(staging, carried, actor="op")
    import_versions(production, carried, read_archive(carried, staging.keys.model_name), actor="op", protect=True)
    write_versions(production, 2, seed=7)  # production's own 5 (not stable) and 6 (stable)
    with pytest.raises(ArchiveConflictError, match="written by another store"):
        _backup(production, backups)
    with pytest.raises(ArchiveConflictError, match=r"backups of model .* written by another store"):
        export_versions(production, backups, actor="op")
    assert len(read_archive(backups, staging.keys.model_name).manifests) == 1  # nothing written
    export_versions(production, carried, actor="op")  # an export location may carry several stores' versions
    archive = read_archive(carried, staging.keys.model_name)
    assert archive.stores() == [staging.identity(), production.identity()]
    assert [n for n, v in archive.versions.items() if v.stable] == [2, 4, 6]  # production's marks: only its own
    assert archive.newest_stable(staging.identity()) == 4 and archive.newest_stable(production.identity()) == 6


def test_an_import_run_again_never_makes_a_version_quarantined_here_stable(two_stores, tmp_path):
    """Found by a review of the import's `--stable` on versions already there: a version an incident quarantined
    here after its backup was made stable by the import run again, and an unpin then served it."""
    source, _target = two_stores
    write_versions(source, 4)  # stable 2, 4
    objects = open_objects(str(tmp_path))
    _backup(source, objects)
    _quarantine(source, [4], 7, back_to=2)
    archive = read_archive(objects, source.keys.model_name)
    import_versions(source, objects, archive, [2, 4], actor="op", as_stable=lambda v: v.stable, below_counter=True)
    assert source.stable_numbers() == [2] and source.quarantined() == {4: 7}


def test_a_restore_from_a_location_holding_only_this_stores_exports_takes_its_identity(make_settings, cli, tmp_path):
    """Found by a review: the restored store took the identity of the backups only, so after a restore from a
    location holding this store's exports alone its next backup there was refused as another store's."""
    import redis

    settings = make_settings()
    client = redis.Redis.from_url(settings.redis_url)
    store = VersionStore(client, settings.model_name, promotion="immediate")
    store.write(
        SnapshotState(spec={"inputs": []}, model={"w": 1}, metrics={}, counters={}),
        writer="test",
        lease_value=None,
        offsets={settings.events_topic: {"0": 0}},
        metrics={},
        parent=None,
        stable=True,
    )
    assert cli(settings, "versions", "export", "--all", "--to", str(tmp_path))[0] == 0
    identity = store.identity()
    for key in client.keys(f"livelearn:{{{settings.model_name}}}:*"):
        client.delete(key)
    assert cli(settings, "restore-from-backup", "--from", str(tmp_path))[0] == 0
    assert store.identity() == identity
    assert cli(settings, "backup", "--to", str(tmp_path))[0] == 0


def test_a_store_that_lost_its_identity_key_alone_takes_it_again_when_asked(two_stores, tmp_path, monkeypatch, capsys):
    """Found by a review: a store that lost only its `store:id` key (an older RDB, a migration missing the key) was
    refused by its own backup location for good. `backup --adopt-identity` takes the location's identity again once
    the store holds the location's versions byte for byte (audited); another store is refused."""
    source, other = two_stores
    write_versions(source, 4)
    objects = open_objects(str(tmp_path))
    _backup(source, objects)
    identity = source.identity()
    source.client.delete(source.keys.store_id)
    _no_livelearn_env(monkeypatch)
    common = ["backup", "--to", str(tmp_path), "--model", source.keys.model_name]
    one_line_error(run_livelearn(monkeypatch, capsys, *common, "--redis-url", _redis_url(source)), "another store")
    assert run_livelearn(monkeypatch, capsys, *common, "--adopt-identity", "--redis-url", _redis_url(source))[0] == 0
    assert source.identity() == identity
    (entry,) = read_audit(source.client, source.keys, actions={"adopt_identity"})
    assert identity in entry.reason
    write_versions(other, 2, seed=3)  # another store: other bytes under the same numbers
    one_line_error(
        run_livelearn(monkeypatch, capsys, *common, "--adopt-identity", "--redis-url", _redis_url(other)),
        "this store is not the one whose versions are at",
    )
    assert other.identity() != identity
