"""livelearn's streaming side: the shared base (configuration, errors, the event contract, the model and
its engines) and the processes built on it (``learner``, ``serving``, ``cli``, ``local``).

Names are imported on first use, so ``import streaming.errors`` or ``livelearn --help`` load neither
river nor any client library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real types for type checkers; at run time each name is imported on first use (__getattr__)
    from streaming.compiled import CompiledModel
    from streaming.config import Settings, load_settings
    from streaming.engines import new_model, restore_model
    from streaming.errors import LivelearnError
    from streaming.events import Event, EventLimits, decode_event, encode_event
    from streaming.model import ModelSpec, OnlineModel

__all__ = [
    "CompiledModel",
    "Event",
    "EventLimits",
    "LivelearnError",
    "ModelSpec",
    "OnlineModel",
    "Settings",
    "decode_event",
    "encode_event",
    "load_settings",
    "new_model",
    "restore_model",
]

_WHERE = {
    "CompiledModel": "streaming.compiled",
    "Event": "streaming.events",
    "EventLimits": "streaming.events",
    "LivelearnError": "streaming.errors",
    "ModelSpec": "streaming.model",
    "OnlineModel": "streaming.model",
    "Settings": "streaming.config",
    "decode_event": "streaming.events",
    "encode_event": "streaming.events",
    "load_settings": "streaming.config",
    "new_model": "streaming.engines",
    "restore_model": "streaming.engines",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'streaming' has no attribute {name!r}")
