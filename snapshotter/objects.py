"""Object storage for exports and backups: a directory (the embedded default) or a bucket, through obstore.

A location is a URL: ``s3://BUCKET/PREFIX`` (also ``gs://``, ``az://``, ``abfs://``, ``http(s)://``), ``file:///DIR``
or a plain path (a directory, made if missing). A bucket's endpoint, region and credentials come from the standard
environment of its cloud (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ALLOW_HTTP`` for an http endpoint such as a local MinIO; ``GOOGLE_*``, ``AZURE_*``), as every tool of that
cloud reads them. Objects are written once: :meth:`Objects.put_new` never replaces an object with other bytes.

Examples
--------
>>> import tempfile
>>> objects = open_objects(tempfile.mkdtemp())
>>> objects.put_new("shop/a", b"one"), objects.put_new("shop/a", b"one")
(True, False)
>>> objects.put_new("shop/a", b"two")
Traceback (most recent call last):
...
streaming.errors.ArchiveConflictError: ... holds other bytes at shop/a; objects are never replaced
>>> objects.get("shop/a"), objects.get("shop/b"), objects.list("shop/")
(b'one', None, ['shop/a'])
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from streaming.errors import ArchiveConflictError, ArchiveError

__all__ = ["Objects", "open_objects"]

_BUCKET_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "adl", "azure", "http", "https", "memory")
_SECRET = re.compile(r"(?i)(secret|password|token|key|signature)=[^&]*")


def _failures() -> tuple[type[Exception], ...]:
    """What obstore raises for a location it cannot use: its own errors, and the built-in ones it maps to."""
    from obstore.exceptions import BaseError

    return (BaseError, OSError, ValueError, RuntimeError)


def _redact(text: str) -> str:
    return _SECRET.sub(r"\1=***", text)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return _redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


class Objects:
    """One object-storage location: put once, get, list (``open_objects`` makes one from a URL or a path)."""

    def __init__(self, store: Any, where: str) -> None:
        self._store = store
        self.where = where  #: the location as shown in messages (no secrets)

    def put_new(self, path: str, data: bytes) -> bool:
        """Write ``data`` at ``path`` unless an object is there: ``True`` written, ``False`` the same bytes were
        there. Raises :class:`ArchiveConflictError` when other bytes are (objects are never replaced)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            obstore.put(self._store, path, data, mode="create")
            return True
        except AlreadyExistsError:
            pass
        except _failures() as exc:
            raise self._failed("write", path, exc) from None
        held = self.get(path)
        if held is not None and hashlib.sha256(held).digest() == hashlib.sha256(data).digest():
            return False
        raise ArchiveConflictError(f"{self.where} holds other bytes at {path}; objects are never replaced")

    def get(self, path: str) -> bytes | None:
        """The object at ``path``, ``None`` when there is none."""
        import obstore

        try:
            return bytes(obstore.get(self._store, path).bytes())
        except FileNotFoundError:
            return None
        except _failures() as exc:
            raise self._failed("read", path, exc) from None

    def list(self, prefix: str) -> list[str]:
        """The paths under ``prefix``, sorted."""
        import obstore

        try:
            pages = obstore.list(self._store, prefix=prefix).collect()
        except FileNotFoundError:
            return []
        except _failures() as exc:
            raise self._failed("list", prefix, exc) from None
        return sorted(str(entry["path"]) for entry in pages)

    def _failed(self, what: str, path: str, exc: Exception) -> ArchiveError:
        return ArchiveError(f"could not {what} {path} at {self.where}: {_first_line(exc)}")


def open_objects(url: str, *, create: bool = True) -> Objects:
    """The object-storage location ``url``: a bucket URL (``s3://BUCKET/PREFIX``...), ``file:///DIR`` or a
    directory path (made when missing with ``create``: a reader's missing directory is an error, not an empty
    archive). Raises :class:`ArchiveError` for a location that cannot be used (one line)."""
    from obstore.store import LocalStore, from_url

    text = url.strip()
    if not text:
        raise ArchiveError("no object-storage location given (--to/--from, or LIVELEARN_BACKUP_URL)")
    scheme = urlsplit(text).scheme.lower()
    where = _redact(text)
    try:
        if scheme in _BUCKET_SCHEMES:
            return Objects(from_url(text), where)
        if scheme == "file":
            parts = urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise ArchiveError(f"{where}: a file URL names a local path, file:///DIR (not host {parts.netloc!r})")
            text = unquote(parts.path)
        elif scheme and len(scheme) > 1:  # c:\ is a drive, not a scheme
            raise ArchiveError(f"unknown object-storage scheme {scheme!r} in {where}: use s3://, gs://, az://, a path")
        root = os.path.abspath(os.path.expanduser(text))
        if os.path.exists(root) and not os.path.isdir(root):
            raise ArchiveError(f"{where} is a file, not a directory")
        if not create and not os.path.isdir(root):
            raise ArchiveError(f"{root} does not exist: name the directory the versions were exported to")
        return Objects(LocalStore(root, mkdir=create), root)
    except ArchiveError:
        raise
    except _failures() as exc:
        raise ArchiveError(f"cannot open {where}: {_first_line(exc)}") from None
