"""Stand-ins for the Kafka side in tests that run the learner's steps without a broker."""

from __future__ import annotations

from typing import Any

__all__ = ["DeliveringProducer"]


class _Acked:
    def failed(self) -> bool:
        return False


class DeliveringProducer:
    """A producer whose every record is delivered at once (the outputs' tally sees each one reported)."""

    def send(self, *_args: Any, **_kwargs: Any) -> _Acked:
        return _Acked()

    def send_counted_many(self, topic, records, headers, tally):
        for value, key in records:
            self.send_counted(topic, value, key, headers, tally)

    def send_counted(self, *args: Any) -> None:
        tally = args[-1]
        tally.sent += 1
        tally.report(None)

    def serve(self) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass
