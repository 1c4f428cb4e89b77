"""MkDocs hook: the CLI reference page, generated from the Typer app at build time.

``docs/reference/cli.md`` holds the marker below; at build time it is replaced by one section per command
(its help text, usage line and options, with env vars and defaults), walked from the click command Typer builds.
Nothing is written to ``docs/``: the page cannot fall behind the code. It runs offline (no command is invoked,
nothing connects: ``livelearn --help`` loads no client library).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MARKER", "cli_markdown", "command_paths", "on_page_markdown"]

#: The line of ``docs/reference/cli.md`` the generated reference replaces.
MARKER = "<!-- generated: livelearn cli reference -->"
#: A fixed width, so the usage lines do not depend on the terminal of whoever builds the site.
_WIDTH = 100


def _cell(text: str) -> str:
    r"""``text`` as one Markdown table cell (no line breaks, no column separators, no raw HTML).

    Examples
    --------
    >>> print(_cell("Address <host>\n  (a | b)"))
    Address &lt;host&gt; (a \| b)
    """
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _walk(command: Any, context: Any) -> list[tuple[Any, Any]]:
    """``(command, context)`` for ``command`` and every command under it, depth first, in the app's order."""
    found = [(command, context)]
    if hasattr(command, "list_commands"):  # a group (Typer vendors click: its classes, not click's, are used)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is None or sub.hidden:
                continue
            found += _walk(sub, sub.context_class(sub, info_name=name, parent=context))
    return found


def _commands() -> list[tuple[Any, Any]]:
    import typer

    from streaming.cli import app

    root = typer.main.get_command(app)
    context = root.context_class(root, info_name="livelearn", terminal_width=_WIDTH, max_content_width=_WIDTH)
    return _walk(root, context)


def command_paths() -> list[str]:
    """Every command path of the CLI, e.g. ``livelearn versions pin``.

    Examples
    --------
    >>> paths = command_paths()
    >>> paths[0], "livelearn versions pin" in paths
    ('livelearn', True)
    """
    return [context.command_path for _, context in _commands()]


def _section(command: Any, context: Any) -> str:
    depth = max(context.command_path.count(" "), 1)  # the root and its commands: level 2, a group's: level 3
    lines = [f"{'#' * (depth + 1)} `{context.command_path}`", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    lines += ["```text", command.get_usage(context).strip(), "```", ""]
    rows = [record for param in command.get_params(context) if (record := param.get_help_record(context))]
    if rows:
        lines += ["| option | meaning |", "|---|---|"]
        lines += [f"| `{' '.join(names.split())}` | {_cell(meaning)} |" for names, meaning in rows]
        lines.append("")
    return "\n".join(lines)


def cli_markdown() -> str:
    """The reference of every command: help text, usage line, and a table of its options.

    Examples
    --------
    >>> text = cli_markdown()
    >>> "## `livelearn learn`" in text and "### `livelearn versions rollback`" in text
    True
    >>> "| `--reason <str>` | Why; recorded in the audit log. [required] |" in text
    True
    """
    return "\n".join(_section(command, context) for command, context in _commands()).rstrip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: put the generated reference where the CLI page has the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())
