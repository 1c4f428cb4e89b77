"""``livelearn canary``: send a share of the requests to another arm of the serving version, step by step, or back.

A canary split (:class:`~snapshotter.control.Canary`, applied by ``livelearn serve``: :mod:`streaming.serving.split`)
sends ``PERCENT`` of the requests that carry a ``user_id`` to one arm the serving version holds — a challenger that
learned in shadow beside its model — sticky by the user key's hash bucket. Each command is one audited script
(``canary`` / ``canary_abort`` in ``livelearn audit``), announced to every ``serve`` at once:

* ``canary set ARM PERCENT [--steps 5,25,50,100]``: start (or move) the split;
* ``canary next``: on to the next step above the percent now;
* ``canary abort``: every request back to the champion at once (percent 0; the arm and steps are kept);
* ``canary status [--json]``: the split as stored, the champion alias, the serving version and the arms it holds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from streaming.cli.options import ActorOpt, ConfigOpt, JsonOpt, ModelOpt, ReasonOpt, RedisOpt
from streaming.cli.tables import Column, print_table
from streaming.cli.versions import actor_or_default, control_from
from streaming.errors import InputError

if TYPE_CHECKING:
    pass

__all__ = ["abort", "canary_app", "describe", "parse_steps", "register", "set_split", "status", "step_next"]

canary_app = typer.Typer(
    help="Send a share of the requests (by user_id) to another arm of the serving version, step by step, or back.",
    no_args_is_help=True,
)
console = Console()

StepsOpt = Annotated[
    str | None,
    typer.Option("--steps", help="Increasing percents `canary next` goes through (default 5,25,50,100)."),
]


def parse_steps(text: str) -> tuple[float, ...]:
    """``--steps`` as numbers (the control plane checks they are increasing percents).

    >>> parse_steps("5, 25,50,100")
    (5.0, 25.0, 50.0, 100.0)
    >>> parse_steps("5,x")
    Traceback (most recent call last):
    ...
    streaming.errors.InputError: --steps takes percents separated by commas, e.g. 5,25,50,100, not '5,x'
    """
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--steps takes percents separated by commas, e.g. 5,25,50,100, not {text!r}") from None


def describe(status: dict[str, Any]) -> str:
    """The canary in one line, from :meth:`~snapshotter.control.ControlPlane.canary_status`.

    >>> canary = {"arm": "fast", "percent": 25.0, "steps": [5.0, 25.0, 50.0, 100.0], "step": 2, "aborted": False}
    >>> describe({"canary": canary, "champion": None, "serving": 7, "arms": ["base", "fast"]})
    'canary fast at 25 % (step 2 of 5,25,50,100) on version 7; champion base'
    >>> describe({"canary": {**canary, "percent": 0.0, "aborted": True}, "champion": "base", "serving": 7,
    ...           "arms": ["base", "fast"]})
    'canary fast aborted: 0 % on version 7; champion base'
    >>> describe({"canary": None, "champion": None, "serving": None, "arms": []})
    'no canary (no version serves yet)'
    """
    arms, serving = status["arms"], status["serving"]
    on = f" on version {serving}" if serving is not None else " (no version serves yet)"
    champion = status["champion"] or (arms[0] if arms else None)
    tail = f"; champion {champion}" if champion else ""
    canary = status["canary"]
    if canary is None:
        return f"no canary{on}{tail}"
    if canary["aborted"]:
        return f"canary {canary['arm']} aborted: 0 %{on}{tail}"
    steps = ",".join(f"{step:g}" for step in canary["steps"])
    return f"canary {canary['arm']} at {canary['percent']:g} % (step {canary['step']} of {steps}){on}{tail}"


def set_split(
    arm: Annotated[str, typer.Argument(help="An arm the serving version holds (a challenger, or base).")],
    percent: Annotated[float, typer.Argument(help="Share of the requests with a user_id sent to ARM, 0 to 100.")],
    reason: ReasonOpt,
    steps: StepsOpt = None,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Send PERCENT of the requests that carry a user_id to ARM of the serving version (sticky by the user_id)."""
    from snapshotter.control import CANARY_STEPS

    control = control_from(config, model, redis_url)
    chosen = parse_steps(steps) if steps else CANARY_STEPS
    control.set_canary(arm, percent, steps=chosen, actor=actor_or_default(actor), reason=reason)
    console.print(describe(control.canary_status()), highlight=False, soft_wrap=True)


def step_next(
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Move the canary to its next step (refused when aborted or at its last step)."""
    control = control_from(config, model, redis_url)
    control.advance_canary(actor=actor_or_default(actor), reason=reason)
    console.print(describe(control.canary_status()), highlight=False, soft_wrap=True)


def abort(
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Send every request back to the champion now (percent 0; the arm and steps are kept)."""
    control = control_from(config, model, redis_url)
    aborted = control.abort_canary(actor=actor_or_default(actor), reason=reason)
    line = describe(control.canary_status())
    console.print(line if aborted else f"{line} (aborted already: nothing changed)", highlight=False, soft_wrap=True)


def status(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The canary as stored, the champion alias, the serving version and the arms it holds."""
    control = control_from(config, model, redis_url)
    state = control.canary_status()
    if as_json:
        typer.echo(json.dumps({"model": control.keys.model_name, **state}, indent=2))
        return
    canary = state["canary"] or {}
    at = canary.get("at")
    rows = [
        ("canary", describe(state)),
        ("arms held", ", ".join(state["arms"]) or "-"),
        ("set by", f"{canary['actor']}: {canary['reason']}" if canary else "-"),
        ("at", dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"),
    ]
    print_table(
        f"canary of model {control.keys.model_name!r}",
        (Column("field"), Column("value", wraps=True)),
        rows,
        header=False,
    )


def register(app: typer.Typer) -> None:
    """``livelearn canary set|next|abort|status``, in the challengers' help panel."""
    canary_app.command("set")(set_split)
    canary_app.command("next")(step_next)
    canary_app.command("abort")(abort)
    canary_app.command("status")(status)
    app.add_typer(canary_app, name="canary", rich_help_panel="Challengers")
