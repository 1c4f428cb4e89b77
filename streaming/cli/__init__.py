"""The ``livelearn`` command line; see :mod:`streaming.cli.app`."""

from streaming.cli import calibrate, data, operate, run, versions
from streaming.cli.app import app, main

for _commands in (run, data, versions, operate, calibrate):
    _commands.register(app)

__all__ = ["app", "main"]
