"""The bundled demo data: UCI Online Shoppers Purchasing Intention (Sakar et al., 2018, CC BY 4.0).

Each CSV row becomes one :class:`~streaming.events.Event`: numeric columns stay numbers, the
integer-coded columns (OperatingSystems, Browser, Region, TrafficType) and Month/VisitorType become
strings, Weekend a bool, and ``Revenue`` the label.

>>> events = list(read_events(limit=2))
>>> events[0].event_id, events[0].label, events[0].features["Month"], events[0].features["Weekend"]
('session-000000', False, 'Feb', False)
>>> sum(1 for _ in read_events())
12330
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from streaming.events import Event

__all__ = ["DATASET_PATH", "read_events", "row_to_event", "LABEL_COLUMN"]

DATASET_PATH = Path(str(resources.files("streaming") / "data" / "online_shoppers_intention.csv"))
LABEL_COLUMN = "Revenue"
_CATEGORICAL = {"Month", "OperatingSystems", "Browser", "Region", "TrafficType", "VisitorType"}
_BOOLEAN = {"Weekend"}
_TRUE = {"true", "1", "yes"}
_BASE_TS_MS = 1_546_300_800_000  # 2019-01-01T00:00:00Z; one second between sessions


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def row_to_event(row: dict[str, str], index: int) -> Event:
    """Turn one CSV row (as read by :class:`csv.DictReader`) into an event."""
    features: dict[str, int | float | str | bool] = {}
    for name, text in row.items():
        if name == LABEL_COLUMN:
            continue
        if name in _CATEGORICAL:
            features[name] = text
        elif name in _BOOLEAN:
            features[name] = text.strip().lower() in _TRUE
        else:
            features[name] = _number(text)
    label = row[LABEL_COLUMN].strip().lower() in _TRUE if LABEL_COLUMN in row else None
    return Event(
        event_id=f"session-{index:06d}",
        ts=_BASE_TS_MS + index * 1000,
        features=features,  # type: ignore[arg-type]
        label=label,
        user_id=f"visitor-{index % 997:03d}",
    )


def read_events(path: str | Path = DATASET_PATH, limit: int | None = None, repeat: int = 1) -> Iterator[Event]:
    """Yield events from a CSV with the dataset's columns, ``repeat`` times over (ids stay unique)."""
    index = 0
    for _ in range(repeat):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if limit is not None and index >= limit:
                    return
                yield row_to_event(row, index)
                index += 1
