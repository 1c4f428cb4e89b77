"""The serving process (``livelearn serve``): predictions over HTTP, each tagged with its arm and version."""

from streaming.serving.app import create_app

__all__ = ["create_app"]
