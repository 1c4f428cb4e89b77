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

A Parquet file with the same columns (told by its first bytes, ``PAR1``; read with pyarrow, the ``parquet`` extra)
is read as the CSV holding the same values: each value as the CSV would write it — a number as Python writes it, a
boolean ``true``/``false``, a null as an empty cell —, then the same parsing, so both give the same events.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from streaming.errors import InputError
from streaming.events import Event

__all__ = [
    "DATASET_PATH",
    "EXPECTED_COLUMNS",
    "LABEL_COLUMN",
    "check_columns",
    "is_parquet",
    "read_events",
    "row_to_event",
]

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
_PARQUET_MAGIC = b"PAR1"


def _truthy(text: str) -> bool:
    """A boolean cell: ``true``, ``yes`` or a number equal to 1 (``1``, ``1.0``: a 0/1 column a null made floats).

    >>> [_truthy(t) for t in ("TRUE", "yes", "1", "1.0", "0", "0.0", "False", "", "2")]
    [True, True, True, True, False, False, False, False, False]
    """
    cell = text.strip().lower()
    if cell in _TRUE:
        return True
    try:
        return float(cell) == 1.0
    except ValueError:
        return False


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _number(text: str) -> int | float:
    """A numeric cell: an integer when written as one and within 64 bits (what an event's msgpack holds), else the
    float (a larger one then fails the event contract's bound, as it would through Kafka: a dead letter).

    >>> _number("3"), _number("3.0"), _number("9007199254740993"), _number("99999999999999999999"), _number("1" * 5000)
    (3, 3.0, 9007199254740993, 1e+20, inf)
    """
    value = float(text)
    if abs(value) < 2**63 and _INTEGER.fullmatch(text.strip()):  # an integer: exactly it (a float rounds past 2^53)
        whole = int(text)  # (digits of a number below 2^63: far within Python's limit on int())
        return whole if abs(whole) < 2**63 else value
    if value.is_integer() and "." not in text and abs(value) < 2**63:
        return int(value)
    return value


def row_to_event(row: dict[str, str], index: int) -> Event:
    """Turn one CSV row (as read by :class:`csv.DictReader`) into an event."""
    features: dict[str, int | float | str | bool] = {}
    for name, text in row.items():
        if name == LABEL_COLUMN:
            continue
        if name in _CATEGORICAL:
            features[name] = text
        elif name in _BOOLEAN:
            features[name] = _truthy(text)
        else:
            try:
                features[name] = _number(text)
            except ValueError:
                raise ValueError(f"column {name} holds {text!r}, not a number") from None
    label = _truthy(row[LABEL_COLUMN]) if LABEL_COLUMN in row else None
    return Event(
        event_id=f"session-{index:06d}",
        ts=_BASE_TS_MS + index * 1000,
        features=features,
        label=label,
        user_id=f"visitor-{index % 997:03d}",
    )


def check_columns(path: str | Path) -> None:
    """Raise :class:`InputError` naming the expected columns the file's header (a CSV's first line, a Parquet file's
    schema) lacks (read nothing else)."""
    if is_parquet(path):
        header = list(_parquet(path).schema_arrow.names)
    else:
        try:
            with _open(path) as handle:
                header = next(csv.reader(handle), [])
        except (ValueError, csv.Error) as exc:
            raise InputError(f"{path} is not a UTF-8 CSV file ({exc}); pass the events as CSV text") from None
    missing = [column for column in EXPECTED_COLUMNS if column not in header]
    if missing:
        raise InputError(
            f"{path} lacks the columns {', '.join(missing)}; a file to replay needs every column of "
            f"the bundled dataset ({DATASET_PATH.name})"
        )


def read_events(path: str | Path = DATASET_PATH, limit: int | None = None, repeat: int = 1) -> Iterator[Event]:
    """Yield events from a CSV with the dataset's columns, ``repeat`` times over (ids stay unique).

    A row that does not parse raises :class:`InputError` naming the file, line and column; the rows
    before it have been yielded already.
    """
    if is_parquet(path):
        yield from _read_parquet(path, limit, repeat)
        return
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


def is_parquet(path: str | Path) -> bool:
    """Whether the file starts as a Parquet file does (``PAR1``); an unreadable one is left to the CSV reader."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _PARQUET_MAGIC
    except OSError:
        return False


def _parquet(path: str | Path) -> Any:
    """The Parquet file opened by pyarrow, or :class:`InputError` (pyarrow missing, or not a readable file)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise InputError(
            f"{path} is a Parquet file: reading it needs pyarrow (pip install 'livelearn[parquet]')"
        ) from None
    try:
        return pyarrow.parquet.ParquetFile(path)
    except (OSError, pyarrow.ArrowException) as exc:
        raise InputError(
            f"{path} is not a readable Parquet file ({_one_line(exc)}); pass a Parquet or CSV file"
        ) from None


def _read_parquet(path: str | Path, limit: int | None, repeat: int) -> Iterator[Event]:
    """:func:`read_events` of a Parquet file: each row's values as the CSV would write them (:func:`_as_text`)."""
    index = 0
    for _ in range(repeat):
        parquet, row_number = _parquet(path), 0
        import pyarrow  # (there: _parquet said it is installed)

        # single or half precision: written as that precision's shortest text, as a CSV of the column holds it
        narrow = {
            f.name: f.type.bit_width
            for f in parquet.schema_arrow
            if pyarrow.types.is_floating(f.type) and f.type.bit_width < 64
        }
        try:
            for batch in parquet.iter_batches(batch_size=4096):
                for values in batch.to_pylist():
                    if limit is not None and index >= limit:
                        return
                    row_number += 1
                    texts = {
                        name: _as_text(name, value)
                        if value is None or name not in narrow
                        else _narrow_text(value, narrow[name])
                        for name, value in values.items()
                    }
                    yield row_to_event(texts, index)
                    index += 1
        except (OSError, pyarrow.ArrowException) as exc:  # (before ValueError: ArrowInvalid is one)
            raise InputError(f"{path} row {row_number + 1}: unreadable ({_one_line(exc)})") from None
        except ValueError as exc:  # (a value of another kind, a number that is not one)
            raise InputError(f"{path} row {row_number}: {exc}; fix that row") from None


def _one_line(exc: BaseException) -> str:
    """An error's text on one line (pyarrow's may span several)."""
    return " ".join(str(exc).split())


def _narrow_text(value: float, bits: int) -> str:
    """A single- (``bits`` 32) or half-precision (16) value, read as the double it is exactly, as the shortest text
    that precision reads back: as a CSV of the column holds it.

    >>> _narrow_text(0.10000000149011612, 32), _narrow_text(0.0999755859375, 16), _narrow_text(float("inf"), 32)
    ('0.1', '0.1', 'inf')
    """
    import numpy as np

    narrow = np.float16(value) if bits == 16 else np.float32(value)
    return np.format_float_positional(narrow, unique=True, trim="0") if np.isfinite(narrow) else repr(value)


def _as_text(name: str, value: Any) -> str:
    """A Parquet value as the CSV would hold it: a boolean ``true``/``false``, a number as Python writes it (``repr``:
    a float keeps its ``.``, so it stays a float), a string as it is, a null as an empty cell.

    >>> [_as_text("x", v) for v in (True, 3, 0.0, 64.5, "Feb", None)]
    ['true', '3', '0.0', '64.5', 'Feb', '']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"column {name} holds a {type(value).__name__}, not a number, text or a boolean")


def _open(path: str | Path) -> TextIO:
    """The CSV as text (UTF-8, with or without a byte-order mark), or :class:`InputError`."""
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror or exc}); pass a readable CSV file") from None
