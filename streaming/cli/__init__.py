"""The ``livelearn`` command line; see :mod:`streaming.cli.app`."""

from streaming.cli import data, operate, run, versions
from streaming.cli.app import app, main

for _commands in (run, data, versions, operate):
    _commands.register(app)

__all__ = ["app", "main"]
