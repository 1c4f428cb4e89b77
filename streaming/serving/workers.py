"""Several worker processes for ``livelearn serve --workers N``, each serving the same Settings.

uvicorn starts workers as fresh processes that import the app by name, so the parent hands its Settings — the
CLI options, environment and config file it already validated — to them in a file: :func:`worker_environment`
creates a private directory (mode 0700, removed at exit) holding ``settings.json`` (mode 0600: it holds the
secrets) and the prometheus_client multiprocess directory, and names them in ``LIVELEARN_SERVE_SETTINGS_FILE``
and ``PROMETHEUS_MULTIPROC_DIR`` for the workers, whose factory :func:`app_from_environment` rebuilds exactly
those Settings. uvicorn's import string for it is :data:`FACTORY`.

>>> import os
>>> from streaming.config import Settings
>>> with worker_environment(Settings(model_name="shop")) as directory:
...     app_from_environment.__name__, os.environ[SETTINGS_FILE_ENV].startswith(str(directory))
('app_from_environment', True)
>>> directory.exists(), SETTINGS_FILE_ENV in os.environ
(False, False)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI

from streaming.config import Settings, settings_document, settings_from_document
from streaming.errors import ConfigError
from streaming.serving.telemetry import MULTIPROC_DIR_ENV

__all__ = ["FACTORY", "SETTINGS_FILE_ENV", "app_from_environment", "worker_environment"]

#: Names the settings file of the workers; set by `livelearn serve --workers N`, not by hand.
SETTINGS_FILE_ENV = "LIVELEARN_SERVE_SETTINGS_FILE"
#: uvicorn's import string of the app factory each worker calls.
FACTORY = "streaming.serving.workers:app_from_environment"


@contextlib.contextmanager
def worker_environment(settings: Settings) -> Iterator[Path]:
    """A private directory with the settings file and the metrics directory, named in this process's
    environment (workers inherit it) until the block ends; then both variables are gone and so is the directory."""
    directory = Path(tempfile.mkdtemp(prefix="livelearn-serve-"))
    saved = {name: os.environ.get(name) for name in (SETTINGS_FILE_ENV, MULTIPROC_DIR_ENV)}
    try:
        settings_file = directory / "settings.json"
        fd = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(settings_document(settings), out)
        metrics = directory / "metrics"
        metrics.mkdir()
        os.environ[SETTINGS_FILE_ENV] = str(settings_file)
        os.environ[MULTIPROC_DIR_ENV] = str(metrics)
        yield directory
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(directory, ignore_errors=True)


def app_from_environment() -> FastAPI:
    """The app of one worker, from the Settings the parent wrote (uvicorn calls it in each worker)."""
    from streaming.serving.app import create_app

    path = os.environ.get(SETTINGS_FILE_ENV)
    if not path:
        raise ConfigError(
            f"{SETTINGS_FILE_ENV} is not set: workers are started by `livelearn serve --workers N`, not by hand"
        )
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the workers' settings file {path} ({exc}); restart `livelearn serve`") from None
    return create_app(settings_from_document(document))
