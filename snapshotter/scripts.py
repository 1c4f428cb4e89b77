"""The Lua scripts behind every state change, kept as package files (``snapshotter/lua/*.lua``).

Each state change of a model (a version written, a rollback, a pin, the lease, the learner's status, the
monitors' cursor) is one script, so it happens whole or not at all, with its audit entry inside. A script
may start with ``-- include: NAME`` lines to pull in shared functions (``audit.lua``). Sources are read
once per process; redis-py sends ``EVALSHA`` and loads a script the server does not know yet.

>>> "redis.call('INCR', KEYS[2])" in source("write_version")
True
>>> source("rollback").startswith("-- Shared by the control scripts")
True
"""

from __future__ import annotations

import functools
from importlib import resources

import redis
from redis.commands.core import Script

__all__ = ["register", "source"]

_INCLUDE = "-- include: "


@functools.cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua`` with its includes expanded."""
    text = resources.files("snapshotter").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    includes = [line[len(_INCLUDE) :].strip() for line in lines if line.startswith(_INCLUDE)]
    body = "".join(line for line in lines if not line.startswith(_INCLUDE))
    return "".join(source(included) for included in includes) + body


def register(client: redis.Redis, name: str) -> Script:
    """Script ``name`` bound to ``client``: call it with ``keys=[...]`` and ``args=[...]``."""
    return client.register_script(source(name))
