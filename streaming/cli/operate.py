"""Operator commands beyond versions: resume learning, the audit log, the incident report, the settings."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from streaming.cli.options import ActorOpt, ConfigOpt, JsonOpt, ModelOpt, ReasonOpt, RedisOpt, WideOpt, settings_from
from streaming.cli.tables import Column, print_table
from streaming.cli.versions import actor_or_default, control_from, done, open_store_from
from streaming.errors import InputError

if TYPE_CHECKING:  # the audit module imports redis: `livelearn --help` loads no client library
    from snapshotter.audit import AuditEntry

__all__ = ["audit", "register", "report", "resume", "settings_markdown", "show_config"]

#: Environment variables read outside the Settings object (the configuration reference lists them too).
_OTHER_VARIABLES = (
    ("`LIVELEARN_CONFIG_FILE`", "`(unset)`", "TOML file with any of the settings above."),
    ("`LIVELEARN_LOG_LEVEL`", "`INFO`", "Log level of `livelearn learn`, `monitor` and `serve`."),
    (
        "`LIVELEARN_SERVE_SETTINGS_FILE`",
        "`(unset)`",
        "Set by `livelearn serve --workers N` for its workers: the Settings it validated (not set by hand).",
    ),
    (
        "`POD_NAME`, `POD_NAMESPACE`, `POD_UID`",
        "`(unset)`",
        "Who the pod is, for the Kubernetes integration (the chart sets them from the downward API; defaults: "
        "the host name, the service account's namespace, none).",
    ),
    (
        "`LIVELEARN_TANSU_BIN`, `LIVELEARN_REDIS_SERVER_BIN`",
        "`(unset)`",
        "Binaries for the embedded stack, if not on PATH or in the `local` extra.",
    ),
)


def _default_text(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_markdown() -> str:
    """The configuration reference's table (``docs/reference/configuration.md``): every setting's env var, grouped
    name, default and meaning, from the Settings object.

    >>> settings_markdown().splitlines()[2].startswith("| `LIVELEARN_MODEL_NAME` | (top level) | `default` |")
    True
    >>> settings_markdown().splitlines()[3].startswith("| `LIVELEARN_KAFKA_BOOTSTRAP` | `[kafka] bootstrap` |")
    True
    """
    from streaming.config import ENV_PREFIX, Settings, grouped_name

    lines = ["| env var | TOML `[group]` key | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = _default_text(field.get_default(call_default_factory=True))
        meaning = (field.description or "").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        grouped = grouped_name(name)
        where = f"`[{grouped.replace('.', '] ')}`" if grouped else "(top level)"
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {where} | `{default}` | {meaning} |")
    lines += [f"| {env} | | {default} | {meaning} |" for env, default, meaning in _OTHER_VARIABLES]
    return "\n".join(lines)


console = Console()


def resume(
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Resume learning after a freeze; also closes an open data-quality incident (the learner then takes the
    shifted label and prediction rates as the new normal)."""
    control = control_from(config, model, redis_url)
    control.resume(actor=actor_or_default(actor), reason=reason)
    done(control, "learning resumed")


def audit(
    limit: Annotated[int, typer.Option(min=1, help="Newest N entries.")] = 50,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
    routine: Annotated[
        bool,
        typer.Option(
            "--routine",
            help="Also the version log: every snapshot written, confirmed stable and promoted to serving "
            "(several a second with timed snapshots).",
        ),
    ] = False,
    wide: WideOpt = False,
) -> None:
    """The audit log: rollbacks, pins, unpins, freezes, resumes, incidents, the monitor's notices, challengers
    promoted, added and removed, and canary steps and aborts (with --routine also every snapshot, confirmation and
    promotion), with the date and time (UTC), the stream position where known, the versions (or arms) and how
    serving moved."""
    from snapshotter.audit import read_audit
    from snapshotter.incidents import position_of
    from snapshotter.store import open_store

    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store(settings)
    entries = read_audit(store.client, store.keys, count=limit, routine=routine)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    stored = {m.number: position_of(m) for m in store.list()}  # a snapshot's position: its offsets
    metric = settings.monitor_metric
    rows = []
    for e in entries:
        snapshot_at = stored.get(e.to_version or 0) if e.action == "snapshot" else None
        rows.append(
            [
                dt.datetime.fromtimestamp(e.time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                e.action,
                e.actor,
                _number(e.metrics.get("stream_position", snapshot_at)),
                *_moved(e),
                _serving_move(e.action, e.fields),
                _number(e.metrics.get(metric, e.metrics.get("rolling", {}).get(metric)), "{:.3f}"),
                e.reason,
            ]
        )
    print_table(f"audit of model {store.keys.model_name!r} (newest {limit})", _audit_columns(metric), rows, wide=wide)


def _audit_columns(metric: str) -> tuple[Column, ...]:
    """The columns of ``livelearn audit``; at 80 columns when, what, to which version, how serving moved and why."""
    return (
        Column("time (UTC)"),
        Column("action"),
        Column("actor", 5),
        Column("position", 6, right=True),
        Column("from", 4, right=True),
        Column("to", 1, right=True),
        Column("serving", 2),
        Column(metric, 7, right=True),
        Column("reason", 3, wraps=True, least=16),
    )


def _number(value: object, fmt: str = "{:.0f}") -> str:
    """A recorded number as text, ``-`` if there is none."""
    return fmt.format(value) if isinstance(value, int | float) else "-"


def _moved(entry: AuditEntry) -> tuple[str, str]:
    """The ``from`` and ``to`` columns: the versions, or the arms of a challenger's action (names, which the entry
    does not read as version numbers), ``-`` for none.

    >>> from snapshotter.audit import AuditEntry
    >>> _moved(AuditEntry.from_stream("1-0", {"action": "promote_arm", "from": "base", "to": "fast"}))
    ('base', 'fast')
    >>> _moved(AuditEntry.from_stream("1-0", {"action": "pin", "from": "9", "to": "5"}))
    ('9', '5')
    """
    from snapshotter.audit import ARM_ACTIONS

    if entry.action in ARM_ACTIONS:
        return entry.fields.get("from") or "-", entry.fields.get("to") or "-"
    return str(entry.from_version or "-"), str(entry.to_version or "-")


def _serving_move(action: str, fields: dict[str, str]) -> str:
    """How an entry moved serving: ``from→to`` (rollbacks record serving apart from the lineage; a promoted
    challenger moves it from arm to arm), or the canary arm's share of the requests ``before→now %``.

    >>> _serving_move("rollback", {"from": "9", "to": "4", "serving_from": "9", "serving_to": "4"})
    '9→4'
    >>> _serving_move("pin", {"from": "9", "to": "5"}), _serving_move("snapshot", {"to": "10"})
    ('9→5', '-')
    >>> _serving_move("promote_arm", {"from": "base", "to": "fast"})
    'base→fast'
    >>> _serving_move("canary", {"arm": "fast", "percent": "25", "was": ""})  # the first step: none before
    'fast 0→25 %'
    """
    from snapshotter.audit import CANARY_ACTIONS

    if action in {"rollback", "manual_rollback"}:
        before, after = fields.get("serving_from", ""), fields.get("serving_to", "")
    elif action in {"promote", "pin", "unpin", "promote_arm"}:
        before, after = fields.get("from", ""), fields.get("to", "")
    elif action in CANARY_ACTIONS:
        return f"{fields.get('arm') or '-'} {fields.get('was') or '0'}→{fields.get('percent') or '0'} %"
    else:
        return "-"
    return f"{before or '-'}→{after or '-'}"


def report(
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("livelearn-report.png"),
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Draw the incident story (PNG): the guarded metric and the data signals over the stream, with the versions
    (coloured by what they are now, served ones marked), rollbacks and their targets, incidents, pins and freezes."""
    from monitor.report import write_report

    _check_writable(out)
    settings = settings_from(config, model, redis_url=redis_url)
    store = open_store_from(config, model, redis_url)
    try:
        write_report(store, settings, out)
    except OSError as exc:  # e.g. no permission: found only when writing
        raise InputError(
            f"cannot write the report to {out} ({exc.strerror or exc}); pass a writable path to --out"
        ) from None
    console.print(f"report written to {out}")


def _check_writable(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a new file before reading anything from Redis."""
    if out.is_dir():
        raise InputError(f"{out} is a directory; pass a file name to --out, e.g. {out / 'livelearn-report.png'}")
    if not out.parent.is_dir():
        raise InputError(
            f"cannot write the report to {out}: directory {out.parent} does not exist; create it or pass another --out"
        )


def show_config(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The defaults as the configuration reference's Markdown table.")
    ] = False,
    wide: WideOpt = False,
) -> None:
    """Every setting with its env var, current value and meaning (secrets hidden)."""
    from snapshotter.connection import redact_url
    from streaming.config import ENV_PREFIX, Settings, grouped_name

    if markdown:
        typer.echo(settings_markdown())
        return
    settings = settings_from(config)
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "redis_url":  # may carry a password; SecretStr settings print as ********** already
            value = redact_url(value)
        rows.append((name, f"{ENV_PREFIX}{name.upper()}", grouped_name(name) or "", value, field.description or ""))
    if as_json:
        typer.echo(
            json.dumps({name: str(value) if value is not None else None for name, _, _, value, _ in rows}, indent=2)
        )
        return
    print_table(
        "livelearn settings",
        (
            Column("env var"),
            Column("group.key", 2),
            Column("value", wraps=True, least=20),
            Column("meaning", 1, wraps=True, least=30),
        ),
        [[env, grouped, str(value), description] for _name, env, grouped, value, description in rows],
        wide=wide,
    )


def register(app: typer.Typer) -> None:
    learning = typer.Typer(help="Freeze state of learning.", no_args_is_help=True)
    learning.command("resume")(resume)
    app.add_typer(learning, name="learning")
    app.command("audit")(audit)
    app.command("report")(report)
    app.command("config")(show_config)
