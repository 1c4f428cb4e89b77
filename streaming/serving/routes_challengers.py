"""Challenger routes: ``GET /challengers`` (read-only) and ``/admin/challengers/*`` (bearer token, like ``/admin``).

* ``GET /challengers``: every arm learning beside the champion (the learner's live status, else the head version):
  declaration, events learned, the comparison and its verdict; the ``champion`` alias; the declarations made at run
  time (``null``: the settings' are used).
* ``POST /admin/challengers`` ``{declaration}``: add one (``fast:lr=0.05``); ``/admin/challengers/remove`` ``{arm}``;
  ``/admin/challengers/reset``: the settings' declarations again; ``/admin/challengers/promote`` ``{arm, force}``:
  the ``champion`` alias moves to it (refused unless its verdict is ``promote``, or ``force``; the former champion in
  its cool-down is backing out) — serving answers with it at once, the learner at its next batch.

Each is one audited script (:mod:`snapshotter.challengers`); a refusal is 409 with one line, a wrong declaration 422
(also ``start=version:N`` naming a version that is not stored, or of another kind or features).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from snapshotter.challengers import ArmControl
from streaming.challenger_start import check_start_version
from streaming.config import parse_challenger
from streaming.errors import ChallengerError, ControlError
from streaming.serving.context import ServingContext, responses
from streaming.serving.schemas import AdminRequest, ArmRequest, ChallengerRequest

__all__ = ["challenger_routes"]

_ADMIN = (401, 403, 409, 422, 503)


def challenger_routes(router: APIRouter, ctx: ServingContext, caller: Callable[..., str]) -> None:
    """Add the routes to ``router`` (``caller``: the admin routes' bearer-token dependency)."""
    arms = ArmControl(ctx.store)

    def state() -> dict[str, Any]:
        return {"champion": arms.champion(), "arms": arms.arms_now(), "declared_at_run_time": arms.declared()}

    def act(action: Any) -> dict[str, Any]:
        try:
            action()
        except ControlError as exc:
            raise HTTPException(409, str(exc)) from None
        return state()

    def on_behalf(body: AdminRequest, who: str) -> str:
        return f"{body.actor} via {who}" if body.actor else who

    @router.get("/challengers", tags=["versions"], responses=responses(503))
    def show_challengers() -> dict[str, Any]:
        """The arms learning beside the champion, the champion alias and the run-time declarations."""
        return state()

    @router.post("/admin/challengers", tags=["admin"], responses=responses(*_ADMIN))
    def add_challenger(body: ChallengerRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """Start a challenger learning in shadow (the active learner starts it at its next batch)."""
        try:
            config = parse_challenger(body.declaration)
            check_start_version(
                ctx.store, config, ctx.spec
            )  # start=version:N: stored, of the declared kind and features
        except (ValueError, ChallengerError) as exc:
            raise HTTPException(422, str(exc)) from None
        actor = on_behalf(body, who)
        return act(
            lambda: arms.declare(
                "add", config.name, config.describe(), seed=arms.in_use(), actor=actor, reason=body.reason
            )
        )

    @router.post("/admin/challengers/remove", tags=["admin"], responses=responses(*_ADMIN))
    def remove_challenger(body: ArmRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """Stop a challenger (the versions that hold it keep it)."""
        actor = on_behalf(body, who)
        return act(lambda: arms.declare("remove", body.arm, seed=arms.in_use(), actor=actor, reason=body.reason))

    @router.post("/admin/challengers/reset", tags=["admin"], responses=responses(*_ADMIN))
    def reset_challengers(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """The settings' declarations again (LIVELEARN_CHALLENGERS)."""
        return act(lambda: arms.declare("reset", seed={}, actor=on_behalf(body, who), reason=body.reason))

    @router.post("/admin/challengers/promote", tags=["admin"], responses=responses(*_ADMIN))
    def promote_challenger(body: ArmRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """Make ``arm`` the champion (409 unless its verdict is promote, or ``force``)."""
        actor = on_behalf(body, who)
        return act(lambda: arms.promote_checked(body.arm, actor=actor, reason=body.reason, force=body.force))
