"""A Parquet file of sessions is read as the CSV holding the same values (:mod:`streaming.local.dataset`): the bundled
dataset written as Parquet (pyarrow's own type inference: integers, doubles, strings, booleans) gives the same events
and a model learned over them the same bits; a bad file is one clear error naming the row or the column."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from streaming.compiled import CompiledModel
from streaming.errors import InputError
from streaming.local.dataset import DATASET_PATH, check_columns, read_events
from streaming.vocabulary import ModelSpec


def as_parquet(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path, row_group_size=5000)  # (several row groups, several batches)
    return path


def test_the_dataset_as_parquet_gives_the_csvs_events_and_the_same_model(tmp_path):
    path = as_parquet(pyarrow.csv.read_csv(DATASET_PATH), tmp_path / "sessions.parquet")
    check_columns(path)
    from_csv, from_parquet = list(read_events(DATASET_PATH, repeat=2)), list(read_events(path, repeat=2))
    assert len(from_parquet) == 2 * 12330 and from_parquet == from_csv  # ids and times as the CSV's rows give them
    assert list(read_events(path, limit=3)) == from_csv[:3]
    models = []
    for events in (from_csv, from_parquet):
        model = CompiledModel(ModelSpec())
        scores = model.step_run([e.features for e in events], [e.label for e in events], [True] * len(events))
        models.append((scores, model.dump_state()))
    assert models[0] == models[1]  # (a double column's 0.0 where the CSV says 0: the same floats learned)


def test_a_label_or_boolean_column_stored_as_doubles_reads_as_its_0_and_1(tmp_path):
    rows = pyarrow.csv.read_csv(DATASET_PATH).slice(0, 300)
    for column in ("Revenue", "Weekend"):
        index = rows.schema.get_field_index(column)
        rows = rows.set_column(index, column, rows.column(column).cast(pa.float64()))
    doubles = as_parquet(rows, tmp_path / "doubles.parquet")
    events = list(read_events(doubles))
    assert events == list(read_events(DATASET_PATH, limit=300)) and any(e.label for e in events)
    as_csv = tmp_path / "doubles.csv"  # the same doubles as CSV text ("1.0", "0.0", as pandas writes them)
    with as_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows.column_names)
        writer.writerows([repr(v) if isinstance(v, float) else v for v in row.values()] for row in rows.to_pylist())
    assert ",1.0," in as_csv.read_text() and list(read_events(as_csv)) == events


def test_single_and_half_precision_columns_read_as_a_csv_of_them_holds_them(tmp_path):
    """A float32 column's 0.2 is the double 0.20000000298023224; a CSV of the column says 0.2: read as that."""
    import numpy as np

    rows = pyarrow.csv.read_csv(DATASET_PATH).slice(0, 300)
    kinds = {"BounceRates": (pa.float32(), np.float32), "ExitRates": (pa.float32(), np.float32)}
    kinds["SpecialDay"] = (pa.float16(), np.float16)
    for column, (arrow_type, _) in kinds.items():
        index = rows.schema.get_field_index(column)
        rows = rows.set_column(index, column, rows.column(column).cast(arrow_type))
    events = list(read_events(as_parquet(rows, tmp_path / "narrow.parquet")))
    as_csv = tmp_path / "narrow.csv"  # each narrow value as its precision's shortest text (what pandas writes)
    with as_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows.column_names)
        for row in rows.to_pylist():
            writer.writerow(
                str(kinds[name][1](v)) if name in kinds else repr(v) if isinstance(v, float) else v
                for name, v in row.items()
            )
    assert events == list(read_events(as_csv))
    rates = {e.features["BounceRates"] for e in events} | {e.features["SpecialDay"] for e in events}
    assert 0.2 in rates and 0.20000000298023224 not in rates


def test_a_bad_parquet_file_is_one_line_naming_what_to_fix(tmp_path):
    rows = pyarrow.csv.read_csv(DATASET_PATH).slice(0, 20)
    missing = as_parquet(rows.drop_columns(["Revenue"]), tmp_path / "missing.parquet")
    with pytest.raises(InputError, match="lacks the columns Revenue"):
        check_columns(missing)

    pages = rows.column("ProductRelated").to_pylist()
    pages[6] = "many"
    wrong = rows.set_column(rows.schema.get_field_index("ProductRelated"), "ProductRelated", pa.array(map(str, pages)))
    with pytest.raises(InputError, match=r"row 7: column ProductRelated holds 'many', not a number; fix that row"):
        list(read_events(as_parquet(wrong, tmp_path / "wrong.parquet")))

    listed = rows.append_column("Tags", pa.array([["a"]] * 20))
    with pytest.raises(InputError, match="row 1: column Tags holds a list, not a number, text or a boolean"):
        list(read_events(as_parquet(listed, tmp_path / "listed.parquet")))

    nulls = rows.set_column(rows.schema.get_field_index("BounceRates"), "BounceRates", pa.nulls(20, pa.float64()))
    with pytest.raises(InputError, match="row 1: column BounceRates holds '', not a number"):  # a null: an empty cell
        list(read_events(as_parquet(nulls, tmp_path / "nulls.parquet")))

    footer = tmp_path / "footer.parquet"  # the footer's length zeroed: pyarrow's message spans lines
    good = (tmp_path / "missing.parquet").read_bytes()
    footer.write_bytes(good[:-8] + b"\0\0\0\0" + good[-4:])
    with pytest.raises(InputError, match="is not a readable Parquet file") as raised:
        check_columns(footer)
    assert "\n" not in str(raised.value)

    cut = tmp_path / "cut.parquet"
    cut.write_bytes((tmp_path / "missing.parquet").read_bytes()[:200])  # starts as Parquet, ends nowhere
    for read in (check_columns, lambda p: list(read_events(p))):
        with pytest.raises(InputError, match="is not a readable Parquet file"):
            read(cut)


def test_without_pyarrow_a_parquet_file_names_the_extra_to_install(tmp_path, monkeypatch):
    path = as_parquet(pyarrow.csv.read_csv(DATASET_PATH).slice(0, 5), tmp_path / "sessions.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # (the image: pyarrow is not installed)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    for read in (check_columns, lambda p: list(read_events(p))):
        with pytest.raises(InputError, match=r"reading it needs pyarrow \(pip install 'livelearn\[parquet\]'\)"):
            read(path)
