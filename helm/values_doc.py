"""Write the values table of ``helm/livelearn/README.md`` from the ``# --`` comments of ``values.yaml`` (the
helm-docs convention), so that the table cannot drift from the defaults.

A value is described by the comment block starting with ``# --`` right above its key (the lines after it that
start with ``#`` continue it). The table has a row per described value and per value with no described parent; a
described map or list is one row, its default shown whole. Run after changing ``values.yaml``
(``tests/test_chart.py`` fails while the table is stale; ``--check`` exits 1 then)::

    .venv/bin/python helm/values_doc.py

>>> text = '''
... image:
...   # -- Where the image comes from.
...   repository: livelearn
... # -- Settings by name.
... config:
...   model_name: default
... '''
>>> for row in value_rows(text):
...     print(row)
Row(key='image.repository', type='string', default='"livelearn"', description='Where the image comes from.')
Row(key='config', type='object', default='{"model_name":"default"}', description='Settings by name.')
>>> print(markdown_table(value_rows(text)).splitlines()[2])
| `image.repository` | string | `"livelearn"` | Where the image comes from. |
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

CHART = Path(__file__).resolve().parent / "livelearn"
VALUES_FILE = CHART / "values.yaml"
README_FILE = CHART / "README.md"
#: The table sits between these lines of the README (pymdownx.snippets' section markers: the documentation site's
#: Kubernetes page includes the same section).
START, END = "<!-- --8<-- [start:values] -->", "<!-- --8<-- [end:values] -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
_DESCRIBE = "# --"


class Row(NamedTuple):
    """One row of the table."""

    key: str
    type: str
    default: str
    description: str


def descriptions(text: str) -> dict[str, str]:
    """The description of each described value of a values file, by dotted key.

    Keys are read by indentation (values.yaml's maps are block style); list items and flow maps are not entered.
    """
    found: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(_DESCRIBE):
            pending = [stripped[len(_DESCRIBE) :].strip()]
        elif stripped.startswith("#") and pending is not None:
            pending.append(stripped.lstrip("#").strip())
        elif (match := _KEY.match(line)) is not None:
            indent = len(match["indent"])
            path = [(i, k) for i, k in path if i < indent] + [(indent, match["key"])]
            if pending is not None:
                found[".".join(k for _, k in path)] = " ".join(part for part in pending if part)
            pending = None
        elif not stripped.startswith("- "):  # a blank line ends a description that found no key
            pending = None
    return found


def value_rows(text: str) -> list[Row]:
    """The table's rows for a values file, in the file's order."""
    described = descriptions(text)
    rows: list[Row] = []

    def visit(prefix: str, value: Any) -> None:
        if prefix in described or not (isinstance(value, dict) and value):
            rows.append(Row(prefix, _type(value), _default(value), described.get(prefix, "")))
            return
        for key, child in value.items():
            visit(f"{prefix}.{key}" if prefix else key, child)

    visit("", yaml.safe_load(text) or {})
    return rows


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    names = {int: "int", float: "float", str: "string", list: "list", dict: "object", type(None): "string"}
    return names[type(value)]


def _default(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (pipes in cells escaped, and ``<``/``>`` outside code: ``<release>`` is text,
    not an HTML tag).

    >>> print(markdown_table([Row("nameOverride", "string", '""', "Named <release>-<name>; see `a|b`.")]))
    | key | type | default | description |
    |---|---|---|---|
    | `nameOverride` | string | `""` | Named &lt;release&gt;-&lt;name&gt;; see `a\\|b`. |
    """
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for row in rows:
        cells = (f"`{row.key}`", row.type, f"`{row.default}`", _text(row.description))
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _text(markdown: str) -> str:
    """``<`` and ``>`` as entities outside code spans (inside them Markdown shows them as they are)."""
    parts = markdown.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def render_readme(readme: str, values: str) -> str:
    """``readme`` with the table between :data:`START` and :data:`END` made from ``values``."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown_table(value_rows(values))}\n{END}{tail}"


def main(argv: list[str]) -> int:
    readme = README_FILE.read_text(encoding="utf-8")
    wanted = render_readme(readme, VALUES_FILE.read_text(encoding="utf-8"))
    if "--check" in argv:
        if wanted != readme:
            print(f"{README_FILE} is stale: run .venv/bin/python helm/values_doc.py", file=sys.stderr)
            return 1
        return 0
    README_FILE.write_text(wanted, encoding="utf-8")
    print(f"wrote {README_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
