"""``rediss://`` works: livelearn reaches Redis over TLS, verifying the server with the CA named by ``ssl_ca_certs``.

The embedded redis-server is built without TLS, so a small TLS terminator (asyncio, in a thread) stands in
front of it, with a certificate signed by a CA this test makes with ``openssl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import settings_env

pytestmark = [
    pytest.mark.first_lane,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="makes its certificates with openssl"),
]


@pytest.fixture
def certificates(tmp_path) -> dict[str, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    paths = {
        name: tmp_path / name for name in ("ca.pem", "ca.key", "server.pem", "server.key", "server.csr", "san.cnf")
    }
    paths["san.cnf"].write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for argv in (
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=livelearn test CA",
            "-keyout",
            paths["ca.key"],
            "-out",
            paths["ca.pem"],
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            paths["server.key"],
            "-out",
            paths["server.csr"],
        ],
        [
            "x509",
            "-req",
            "-in",
            paths["server.csr"],
            "-CA",
            paths["ca.pem"],
            "-CAkey",
            paths["ca.key"],
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            paths["san.cnf"],
            "-out",
            paths["server.pem"],
        ],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, timeout=60)
    return paths


@contextlib.contextmanager
def tls_terminator(target_port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS port on 127.0.0.1 forwarding to plain ``127.0.0.1:target_port``; yields its port once listening."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, name="tls-terminator", daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def livelearn(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streaming", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_rediss_url_verifies_the_server_with_ssl_ca_certs(make_settings, stack, certificates):
    _broker, redis_server = stack
    env = settings_env(make_settings())
    with tls_terminator(redis_server.port, certificates["server.pem"], certificates["server.key"]) as port:
        url = f"rediss://localhost:{port}/0"
        verified = livelearn(
            "versions",
            "list",
            "--json",
            "--redis-url",
            f"{url}?ssl_ca_certs={certificates['ca.pem']}&ssl_cert_reqs=required",
            env=env,
        )
        unknown_ca = livelearn("versions", "list", "--redis-url", url, env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["versions"] == []
    assert unknown_ca.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in unknown_ca.stderr
    assert len(unknown_ca.stderr.strip().splitlines()) == 1
