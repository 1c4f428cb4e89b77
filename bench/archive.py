"""Export and import of many large versions through object storage (issue 22's target: 1,000 versions of 100k
weights in at most 60 s each way against a local S3 server).

A real redis-server (:mod:`streaming.local.embedded`) and moto's S3 server in a process of its own
(``moto_server``, so the exporter and the server do not share one interpreter) are started here. ``--versions``
versions of a model with about 100k weights (:func:`snapshots.learned_state`: one-hot categories learned through
the real model, with its metrics and idempotence window) are written through the store's write script, each with
its own counters (so every blob is different bytes). Then, timed:

* **export** of every version (``export_versions``: read from Redis, verify the SHA-256, write meta and blob once,
  the manifest last) to the S3 server, and to a directory;
* **import** of every version from each (read, verify against the manifest, the import script) into another model
  of the same Redis;
* the round trip checked: every imported version's metadata and blob equal to the source's, byte for byte.

Prints the figures and writes JSON (``--out``, default ``bench/results/archive.json``). Run:
``.venv/bin/python bench/archive.py`` (about 6 GB of Redis memory and 3 GB of disk at the defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from snapshots import SIZES, learned_state

from snapshotter.archive import export_versions, import_versions, read_archive
from snapshotter.codec import EncodedSnapshot
from snapshotter.objects import open_objects
from snapshotter.store import VersionStore, connect_settings
from streaming.config import Settings
from streaming.local.embedded import start_redis

BUCKET = "livelearn-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server in a child process; sets this process's AWS environment to reach it."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            AWS_ALLOW_HTTP="true",
        )
        httpx.put(f"{endpoint}/{BUCKET}", timeout=10).raise_for_status()
        yield f"s3://{BUCKET}/bench"
    finally:
        server.terminate()
        server.wait(timeout=30)


def write_versions(store: VersionStore, settings: Settings, count: int) -> tuple[int, int]:
    """``count`` versions of one ~100k-weight model, each with its own counters; returns (weights, blob bytes)."""
    state = learned_state(settings, *SIZES["100k"])
    weights = len(state.model.dump_state()["weights"])
    size = 0
    for i in range(count):
        state.counters["events_seen"] += 1
        encoded = EncodedSnapshot.of(state.capture().document())
        meta = store.write(
            encoded,
            writer="bench",
            lease_value=None,
            offsets={"events": {"0": i + 1}},
            metrics={"rolling": {"accuracy": 0.9}},
            parent=store.head(),
            stable=True,
        )
        size = meta.size_bytes
    return weights, size


def round_trip(source: VersionStore, target: VersionStore, url: str) -> dict[str, Any]:
    objects = open_objects(url)
    exported = export_versions(source, objects, actor="bench")
    t0 = time.perf_counter()
    archive = read_archive(objects, source.keys.model_name)
    read_seconds = time.perf_counter() - t0
    imported = import_versions(target, objects, archive, actor="bench")
    numbers = source.numbers()
    identical = sum(
        1
        for n in numbers
        if (a := source.raw(n)) is not None
        and (b := target.raw(n)) is not None
        and hashlib.sha256(a[0] + a[1]).digest() == hashlib.sha256(b[0] + b[1]).digest()
    )
    return {
        "versions": len(numbers),
        "export_seconds": round(exported.seconds, 2),
        "export_mib_per_second": round(exported.bytes_written / 2**20 / exported.seconds, 1),
        "read_manifests_seconds": round(read_seconds, 3),
        "import_seconds": round(imported.seconds, 2),
        "import_mib_per_second": round(imported.bytes_read / 2**20 / imported.seconds, 1),
        "bytes": exported.bytes_written,
        "byte_identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "archive.json")
    args = parser.parse_args()
    redis_server = start_redis()
    workdir = Path(tempfile.mkdtemp(prefix="livelearn-bench-archive-"))
    result: dict[str, Any] = {}
    try:
        settings = Settings(redis_url=f"redis://{redis_server.address}/0", model_name="bench-archive")
        client = connect_settings(settings)
        source = VersionStore(client, "bench-archive", keep=args.versions + 10, promotion="immediate")
        t0 = time.perf_counter()
        weights, blob = write_versions(source, settings, args.versions)
        result["setup"] = {"weights": weights, "blob_bytes": blob, "write_seconds": round(time.perf_counter() - t0, 1)}
        with s3_server() as url:
            result["s3"] = round_trip(source, VersionStore(client, "bench-archive-s3", keep=10), url)
        result["directory"] = round_trip(source, VersionStore(client, "bench-archive-dir", keep=10), str(workdir))
    finally:
        redis_server.stop()
        shutil.rmtree(redis_server.workdir or "", ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    result["machine"] = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "note": "shared 2-core VM; moto's S3 server (Python) in its own process on the same machine",
    }
    s = result["setup"]
    print(
        f"{args.versions} versions of {s['weights']:,} weights ({s['blob_bytes']:,} B each), written in "
        f"{s['write_seconds']} s"
    )
    for where in ("s3", "directory"):
        r = result[where]
        print(
            f"  {where:>9}: export {r['export_seconds']:6.1f} s ({r['export_mib_per_second']:6.1f} MiB/s) | import "
            f"{r['import_seconds']:6.1f} s ({r['import_mib_per_second']:6.1f} MiB/s) | manifests read in "
            f"{r['read_manifests_seconds']:.3f} s | byte-identical {r['byte_identical']}/{r['versions']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
