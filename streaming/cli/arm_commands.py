"""``livelearn challengers add|remove|reset|promote``: change the challengers and the champion at run time.

* ``add DECLARATION`` / ``remove NAME``: the active learner starts or drops the challenger at its next batch. The first
  change takes the declarations in use (``LIVELEARN_CHALLENGERS``) as its starting point; from then on the ones in
  Redis are used (``reset`` gives them back to the settings).
* ``promote NAME``: the ``champion`` alias moves to NAME — serving answers with it at once, the learner makes it the
  champion at its next batch, the former champion learns on in shadow for its cool-down (``promote base`` backs
  out). Refused unless the comparison's verdict is ``promote`` (``--force`` to promote anyway: audited as forced).

Every change is one audited script (:mod:`snapshotter.challengers`); a wrong name or declaration is one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from streaming.cli.options import ActorOpt, ConfigOpt, ModelOpt, ReasonOpt, RedisOpt, settings_from
from streaming.cli.versions import actor_or_default

if TYPE_CHECKING:
    from snapshotter.challengers import ArmControl
    from streaming.config import ChallengerConfig, Settings

__all__ = ["add", "promote", "register", "remove", "reset"]

console = Console()


def _control(config: ConfigOpt, model: ModelOpt, redis_url: RedisOpt) -> ArmControl:
    from snapshotter.challengers import ArmControl
    from streaming.cli.versions import open_store_from

    return ArmControl(open_store_from(config, model, redis_url))


def _seed(config: ConfigOpt, model: ModelOpt, redis_url: RedisOpt) -> dict[str, str]:
    """The declarations in use before the first change at run time: the learner's (its status, else the head version),
    else — no learner ever ran — the settings'."""
    in_use = _control(config, model, redis_url).in_use()
    if in_use or _control(config, model, redis_url).store.head() is not None:
        return in_use
    settings = settings_from(config, model, redis_url=redis_url)
    return {c.name: c.describe() for c in settings.arms.configs}


def add(
    declaration: Annotated[str, typer.Argument(help="NAME:KEY=VALUE,... e.g. fast:lr=0.05 (LIVELEARN_CHALLENGERS).")],
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Start a challenger learning in shadow (the active learner starts it at its next batch)."""
    from streaming.config import parse_challenger

    try:
        parsed = parse_challenger(declaration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="DECLARATION") from None
    control = _control(config, model, redis_url)
    if parsed.start_version is not None:
        _check_start_version(control, parsed, settings_from(config, model, redis_url=redis_url))
    seed = _seed(config, model, redis_url)
    control.declare("add", parsed.name, parsed.describe(), seed=seed, actor=actor_or_default(actor), reason=reason)
    console.print(f"challenger {parsed.describe()} added; declared now: {', '.join(control.declared() or {})}")


def _check_start_version(control: ArmControl, parsed: ChallengerConfig, settings: Settings) -> None:
    """``start=version:N``: the version is stored and its model is of the declared kind and features
    (:func:`~streaming.challenger_start.check_start_version`); a quarantined one is said."""
    from streaming.challenger_start import check_start_version
    from streaming.errors import ChallengerError
    from streaming.model import spec_from_settings

    try:
        incident = check_start_version(control.store, parsed, spec_from_settings(settings))
    except ChallengerError as exc:
        raise typer.BadParameter(str(exc), param_hint="DECLARATION") from None
    if incident is not None:
        console.print(
            f"[yellow]version {parsed.start_version} is quarantined by incident {incident}: the challenger starts "
            "from a model the guard set aside[/yellow]"
        )


def remove(
    name: Annotated[str, typer.Argument(help="The challenger to stop.")],
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Stop a challenger (the versions that hold it keep it)."""
    control = _control(config, model, redis_url)
    control.declare("remove", name, seed=_seed(config, model, redis_url), actor=actor_or_default(actor), reason=reason)
    console.print(f"challenger {name} removed; declared now: {', '.join(control.declared() or {}) or 'none'}")


def reset(
    reason: ReasonOpt,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Give the declarations back to the settings (LIVELEARN_CHALLENGERS)."""
    _control(config, model, redis_url).declare("reset", seed={}, actor=actor_or_default(actor), reason=reason)
    console.print("challengers are the settings' again (LIVELEARN_CHALLENGERS)")


def promote(
    name: Annotated[str, typer.Argument(help="The arm to serve: a challenger, or the former champion to back out.")],
    reason: ReasonOpt,
    force: Annotated[bool, typer.Option("--force", help="Promote whatever the comparison's verdict.")] = False,
    actor: ActorOpt = None,
    config: ConfigOpt = None,
    model: ModelOpt = None,
    redis_url: RedisOpt = None,
) -> None:
    """Make NAME the champion: serving answers with it at once, the learner from its next batch on."""
    champion = _control(config, model, redis_url).promote_checked(
        name, actor=actor_or_default(actor), reason=reason, force=force
    )
    console.print(f"champion is {name} now (was {champion}); serving follows at once, the learner at its next batch")


def register(app: typer.Typer) -> None:
    """The commands, under ``livelearn challengers``."""
    for command in (add, remove, reset, promote):
        app.command(command.__name__)(command)
