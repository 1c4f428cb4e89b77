"""Running livelearn on one machine: embedded servers, the bundled dataset and its replay."""

__all__: list[str] = []
