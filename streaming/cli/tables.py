"""The operator commands' tables: fitted to the terminal, or plain text for a pipe.

A table command gives its :class:`Column` s (in the order they are drawn, each with a priority) and its rows as
text; :func:`print_table` decides how to show them:

* on a terminal (or wherever ``COLUMNS`` says how wide to draw, as ``watch`` sets it for its command), the columns
  that fit the width *whole*: the least important are left out first and named under the table, so no cell is
  ever cut to ``stab…``; long text (a reason, a meaning) wraps instead. ``--wide`` draws every column, as wide
  as it needs, even wider than the terminal;
* anywhere else (a pipe, a file), plain text for ``cut``, ``awk -F'\\t'`` and ``grep``: the title as a ``#`` line,
  then the header and one line per row, every column, separated by tabs.

``--json`` stays each command's own affair.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Column", "choose_columns", "column_widths", "plain_lines", "print_table", "visible", "wants_plain"]


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Parameters
    ----------
    header
        Its heading (may wrap onto two lines at its spaces when the terminal is narrow).
    priority
        Which columns stay when the terminal is narrow: ``0`` always, then ``1``, ``2``... (the highest numbers
        are left out first).
    right
        Right-aligned (numbers).
    wraps
        Long text that may wrap onto several lines (a reason, a meaning); every other column keeps each cell on
        one line.
    least
        The narrowest a wrapping column is drawn (a word longer than that is folded onto the next line, never cut).

    Examples
    --------
    >>> Column("reason", priority=3, wraps=True)
    Column(header='reason', priority=3, right=False, wraps=True, least=12)
    """

    header: str
    priority: int = 0
    right: bool = False
    wraps: bool = False
    least: int = 12


def _cell_width(text: str) -> int:
    return max((Text(line).cell_len for line in text.splitlines()), default=0)


def _widths(column: Column, cells: Sequence[str]) -> tuple[int, int]:
    """The narrowest width that keeps the column's cells whole (its header may wrap at spaces), and its full
    width (the header on one line, every cell on one line)."""
    widest = max((_cell_width(cell) for cell in cells), default=0)
    full = max(widest, _cell_width(column.header))
    if column.wraps:
        return min(full, column.least), full
    return max(widest, *(_cell_width(word) for word in column.header.split())), full


def _frame(count: int) -> int:
    """What a boxed table adds to its columns' widths: a border each side and between, a space each side of a cell."""
    return 3 * count + 1


def choose_columns(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """The indexes of the columns drawn at ``width``: every priority-0 column, then the others most important
    first (in priority order, then as drawn) while they still fit whole.

    Examples
    --------
    >>> columns = [Column("n", 0, right=True), Column("writer", 2), Column("state", 1)]
    >>> rows = [["1", "host-a:100", "stable"]]
    >>> choose_columns(columns, rows, 80), choose_columns(columns, rows, 20), choose_columns(columns, rows, 5)
    ([0, 1, 2], [0, 2], [0])
    """
    least = [_widths(column, [row[i] for row in rows])[0] for i, column in enumerate(columns)]
    shown = [i for i, column in enumerate(columns) if column.priority == 0]
    for i in sorted(set(range(len(columns))) - set(shown), key=lambda i: (columns[i].priority, i)):
        if sum(least[j] for j in shown) + least[i] + _frame(len(shown) + 1) > width:
            break  # strictly by priority: a narrower but less important column does not jump the queue
        shown.append(i)
    return sorted(shown)


def column_widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """The width of each column when all of them are drawn in ``width`` (or wider, if they need more): each at
    least its narrowest whole width, then the room left given to the one-line columns (so their headers need not
    wrap) and then to the wrapping ones, most important first.

    Examples
    --------
    >>> columns = [Column("events seen", right=True), Column("reason", 1, wraps=True)]
    >>> rows = [["1,000", "the accuracy fell below 0.7 for 3 checks"]]
    >>> column_widths(columns, rows, 200), column_widths(columns, rows, 30), column_widths(columns, rows, 10)
    ([11, 40], [11, 12], [6, 12])
    """
    measured = [_widths(column, [row[i] for row in rows]) for i, column in enumerate(columns)]
    sizes = [least for least, _full in measured]
    room = width - sum(sizes) - _frame(len(columns))
    order = sorted(range(len(columns)), key=lambda i: (columns[i].wraps, columns[i].priority, i))
    for i in order:
        grow = max(0, min(measured[i][1] - sizes[i], room))
        sizes[i] += grow
        room -= grow
    return sizes


def _unwrapped_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    """How wide a table is with its one-line columns at full width and its wrapping columns at their least."""
    measured = [_widths(column, [row[i] for row in rows]) for i, column in enumerate(columns)]
    return sum(
        least if column.wraps else full for column, (least, full) in zip(columns, measured, strict=True)
    ) + _frame(len(columns))


#: control characters other than tab and line breaks (C0, DEL, C1), written as their escapes: an actor or a reason
#: (anyone with the admin token writes them) never moves the cursor, clears the screen or retitles the terminal
_CONTROLS = {i: f"\\x{i:02x}" for i in (*range(32), *range(0x7F, 0xA0)) if chr(i) not in "\t\n\r"}


def visible(text: str) -> str:
    r"""``text`` with its control characters (but tabs and line breaks) written as escapes.

    >>> visible("eve\x1b]0;owned\x07 ok")
    'eve\\x1b]0;owned\\x07 ok'
    """
    return text.translate(_CONTROLS)


def _plain(text: str) -> str:
    text = visible(text)
    return " ".join(text.split()) if any(c in text for c in "\t\n\r") else text


def plain_lines(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[str]:
    """The table as plain text: ``# title``, the header, one line per row; tab-separated, every column (a tab or a
    line break inside a cell becomes a space).

    Examples
    --------
    >>> plain_lines("versions", [Column("version"), Column("state")], [["3", "stable, serving"]])
    ['# versions', 'version\\tstate', '3\\tstable, serving']
    """
    lines = [f"# {_plain(title)}"] if title else []
    lines.append("\t".join(_plain(column.header) for column in columns))
    lines += ["\t".join(_plain(cell) for cell in row) for row in rows]
    return lines


def wants_plain(console: Console) -> bool:
    """Whether to print plain text: output to neither a terminal (as rich sees it: ``TTY_COMPATIBLE`` and
    ``FORCE_COLOR`` count) nor a width given by ``COLUMNS``."""
    return not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit()


def _wider(console: Console, width: int) -> Console:
    """A console like ``console`` (its file, terminal or not, colours) but ``width`` wide."""
    colours: Literal["auto"] | None = (
        "auto" if console.color_system else None
    )  # "auto": the same file and environment, the same answer
    return Console(file=console.file, width=width, force_terminal=console.is_terminal, color_system=colours)


def print_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool = False,
    caption: str | None = None,
    header: bool = True,
    console: Console | None = None,
) -> None:
    """Print ``rows`` under ``columns``: fitted to the terminal, every column with ``wide``, plain text to a pipe.

    Parameters
    ----------
    title
        The table's title (plain text: its ``#`` line).
    columns, rows
        The columns in the order they are drawn, and each row's cells as text, one per column.
    wide
        Every column, even if the table is then wider than the terminal.
    caption
        A legend under the drawn table (not printed as plain text).
    header
        Whether the drawn table shows the headers (a table of fields and values may not need them).
    console
        Where to print (default: standard output).

    Examples
    --------
    >>> import io
    >>> out = Console(file=io.StringIO(), width=30, force_terminal=True, color_system=None)  # a terminal
    >>> columns = [Column("version", right=True), Column("state"), Column("writer", 1)]
    >>> print_table("versions", columns, [["3 *", "stable, serving", "host-a:100"]], console=out)
    >>> print(out.file.getvalue())  # doctest: +NORMALIZE_WHITESPACE
              versions
    ┏━━━━━━━━━┳━━━━━━━━━━━━━━━━━┓
    ┃ version ┃ state           ┃
    ┡━━━━━━━━━╇━━━━━━━━━━━━━━━━━┩
    │     3 * │ stable, serving │
    └─────────┴─────────────────┘
    --wide also shows: writer
    """
    console = console or Console()
    title, rows = visible(title), [[visible(cell) for cell in row] for row in rows]
    if wants_plain(console):
        # as written: rich would turn the tabs into spaces
        console.file.write("".join(f"{line}\n" for line in plain_lines(title, columns, rows)))
        return
    shown = list(range(len(columns))) if wide else choose_columns(columns, rows, console.width)
    picked = [columns[i] for i in shown]
    cells = [[row[i] for i in shown] for row in rows]
    # --wide: room for every one-line column's header on one line (the wrapping ones still wrap at the terminal)
    width = max(console.width, _unwrapped_width(picked, cells)) if wide else console.width
    sizes = column_widths(picked, cells, width)
    table = Table(title=Text(title), caption=caption, show_header=header)
    for column, size in zip(picked, sizes, strict=True):
        # no cell is longer than its column: only the headers (at spaces) and the wrapping columns wrap
        table.add_column(Text(column.header), justify="right" if column.right else "left", width=size, overflow="fold")
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # as written: a "[...]" in a reason is not markup
    needed = sum(sizes) + _frame(len(sizes))
    if needed > console.width:  # wider than the terminal (which wraps the lines) rather than a cell cut short
        console = _wider(console, needed)
    console.print(table)
    left_out = [column.header for i, column in enumerate(columns) if i not in shown]
    if left_out:
        console.print(Text(f"--wide also shows: {', '.join(left_out)}", style="dim"))
