"""livelearn's streaming side: configuration, events, the model, Kafka clients and the learner."""

from streaming.config import Settings, load_settings
from streaming.errors import LivelearnError
from streaming.events import Event, EventLimits, decode_event, encode_event
from streaming.model import ModelSpec, OnlineModel

__all__ = [
    "Event",
    "EventLimits",
    "LivelearnError",
    "ModelSpec",
    "OnlineModel",
    "Settings",
    "decode_event",
    "encode_event",
    "load_settings",
]
