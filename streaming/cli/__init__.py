"""The ``livelearn`` command line; see :mod:`streaming.cli.app`."""

from streaming.cli import backup, calibrate, data, operate, rebuild, run, versions
from streaming.cli.app import app, main

for _commands in (run, data, versions, backup, rebuild, operate, calibrate):
    _commands.register(app)

__all__ = ["app", "main"]
