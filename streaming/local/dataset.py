"""The bundled demo data: UCI Online Shoppers Purchasing Intention (Sakar et al., 2018, CC BY 4.0).

Each CSV row becomes one :class:`~streaming.events.Event`: numeric columns stay numbers, the
integer-coded columns (OperatingSystems, Browser, Region, TrafficType) and Month/VisitorType become
strings, Weekend a bool, and ``Revenue`` the label.

>>> events = list(read_events(limit=2))
>>> events[0].event_id, events[0].label, events[0].features["Month"], events[0].features["Weekend"]
('session-000000', False, 'Feb', False)
>>> sum(1 for _ in read_events())
12330
>>> check_columns(DATASET_PATH)  # a CSV to replay needs every column of the dataset
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TextIO

from streaming.errors import InputError
from streaming.events import Event

__all__ = ["DATASET_PATH", "EXPECTED_COLUMNS", "LABEL_COLUMN", "check_columns", "read_events", "row_to_event"]

DATASET_PATH = Path(str(resources.files("streaming.local") / "data" / "online_shoppers_intention.csv"))
LABEL_COLUMN = "Revenue"
#: Every column of the dataset, in file order; a CSV to replay needs all of them (more are read as numbers).
EXPECTED_COLUMNS = (
    "Administrative",
    "Administrative_Duration",
    "Informational",
    "Informational_Duration",
    "ProductRelated",
    "ProductRelated_Duration",
    "BounceRates",
    "ExitRates",
    "PageValues",
    "SpecialDay",
    "Month",
    "OperatingSystems",
    "Browser",
    "Region",
    "TrafficType",
    "VisitorType",
    "Weekend",
    LABEL_COLUMN,
)
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
            try:
                features[name] = _number(text)
            except ValueError:
                raise ValueError(f"column {name} holds {text!r}, not a number") from None
    label = row[LABEL_COLUMN].strip().lower() in _TRUE if LABEL_COLUMN in row else None
    return Event(
        event_id=f"session-{index:06d}",
        ts=_BASE_TS_MS + index * 1000,
        features=features,
        label=label,
        user_id=f"visitor-{index % 997:03d}",
    )


def check_columns(path: str | Path) -> None:
    """Raise :class:`InputError` naming the expected columns the CSV's header lacks (read nothing else)."""
    try:
        with _open(path) as handle:
            header = next(csv.reader(handle), [])
    except (ValueError, csv.Error) as exc:
        raise InputError(f"{path} is not a UTF-8 CSV file ({exc}); pass the events as CSV text") from None
    missing = [column for column in EXPECTED_COLUMNS if column not in header]
    if missing:
        raise InputError(
            f"{path} lacks the columns {', '.join(missing)}; a CSV to replay needs every column of "
            f"the bundled dataset ({DATASET_PATH.name})"
        )


def read_events(path: str | Path = DATASET_PATH, limit: int | None = None, repeat: int = 1) -> Iterator[Event]:
    """Yield events from a CSV with the dataset's columns, ``repeat`` times over (ids stay unique).

    A row that does not parse raises :class:`InputError` naming the file, line and column; the rows
    before it have been yielded already.
    """
    index = 0
    for _ in range(repeat):
        with _open(path) as handle:
            reader = csv.DictReader(handle)
            try:
                for row in reader:
                    if limit is not None and index >= limit:
                        return
                    if None in row or None in row.values():
                        raise ValueError(f"the row has {'more' if None in row else 'fewer'} fields than the header")
                    yield row_to_event(row, index)
                    index += 1
            except (ValueError, csv.Error) as exc:  # UnicodeDecodeError is a ValueError
                raise InputError(f"{path} line {reader.line_num}: {exc}; fix that line") from None


def _open(path: str | Path) -> TextIO:
    """The CSV as text (UTF-8, with or without a byte-order mark), or :class:`InputError`."""
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror or exc}); pass a readable CSV file") from None
