"""Version routes (read-only) and admin routes: pin, unpin, rollback, resume learning, the canary split.

Admin routes need ``Authorization: Bearer <LIVELEARN_API_TOKEN>``: 401 without a token, 403 with a wrong
one (or when no token is configured, which turns the admin API off). A missing version is 404; an action
the control plane refuses (nothing pinned, not frozen, nothing to roll back to, corrupt version, an arm the serving
version does not hold, a canary at its last step) is 409. ``GET /canary``, read-only like ``/versions``, needs no
token: the canary as stored, and the route this worker applies.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, TypeAlias

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from snapshotter.control import CANARY_STEPS
from snapshotter.states import version_states
from streaming.config import ServingSettings
from streaming.errors import ControlError, RebuildError, VersionNotFoundError
from streaming.serving.context import ServingContext, responses
from streaming.serving.hardening import StrictJSONRoute
from streaming.serving.routes_challengers import challenger_routes
from streaming.serving.schemas import AdminRequest, CanaryRequest, PinRequest, RollbackRequest, VersionInPath

__all__ = ["admin_routes"]

_bearer = HTTPBearer(auto_error=False)
_ADMIN = (401, 403, 409, 422, 503)
#: The caller of an admin route (``api:<client address>``), once its bearer token is checked.
Caller: TypeAlias = Callable[..., str]


def _caller_of(serving: ServingSettings) -> Caller:
    """The dependency that checks an admin request's bearer token against ``serving.token`` and names the caller."""

    def caller(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        if creds is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        token = serving.token.get_secret_value() if serving.token else None
        if token is None:
            raise HTTPException(403, "the admin API is off: set LIVELEARN_API_TOKEN on the server")
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token")
        return f"api:{request.client.host if request.client else 'unknown'}"

    return caller


def _on_behalf(body: AdminRequest, who: str) -> str:
    """A declared actor is recorded with the caller, so nobody can write in another's name."""
    return f"{body.actor} via {who}" if body.actor else who


def _refused_as_http(action: Callable[[], object]) -> None:
    """Run one control action: 404 for a missing version, 409 when refused."""
    try:
        action()
    except VersionNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except (ControlError, RebuildError) as exc:  # (a rollback onto a branch version not promoted: RebuildError)
        raise HTTPException(409, str(exc)) from None


def admin_routes(ctx: ServingContext) -> APIRouter:
    """``/versions``, ``/canary`` and ``/admin/*``."""
    router = APIRouter(route_class=StrictJSONRoute)
    store, control = ctx.store, ctx.control
    caller = _caller_of(ctx.serving)

    def act(action: Callable[[], object]) -> dict[str, Any]:
        """Run one control action (refused: 404 or 409), then the new state."""
        _refused_as_http(action)
        return {
            "head": store.head(),
            "serving": store.serving(),
            "pinned": store.pinned(),
            "frozen": control.frozen() is not None,
        }

    @router.get("/versions", tags=["versions"], responses=responses(503))
    def list_versions() -> dict[str, Any]:
        metas = store.list()
        states = version_states(store, [m.number for m in metas])
        return {
            "model": ctx.name,
            "head": store.head(),
            "serving": store.serving(),
            "pinned": store.pinned(),
            "versions": [{**m.to_dict(), "state": states[m.number]} for m in metas],
        }

    @router.get("/versions/{number}", tags=["versions"], responses=responses(404, 422, 503))
    def show_version(number: VersionInPath) -> dict[str, Any]:
        try:
            return {**store.meta(number).to_dict(), "state": version_states(store, [number])[number]}
        except VersionNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.post("/admin/pin", tags=["admin"], responses=responses(404, *_ADMIN))
    def pin(body: PinRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.pin(body.version, actor=_on_behalf(body, who), reason=body.reason, force=body.force))

    @router.post("/admin/unpin", tags=["admin"], responses=responses(*_ADMIN))
    def unpin(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.unpin(actor=_on_behalf(body, who), reason=body.reason))

    @router.post("/admin/rollback", tags=["admin"], responses=responses(404, *_ADMIN))
    def rollback(body: RollbackRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.rollback(to=body.to, actor=_on_behalf(body, who), reason=body.reason))

    @router.post("/admin/learning/resume", tags=["admin"], responses=responses(*_ADMIN))
    def resume(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.resume(actor=_on_behalf(body, who), reason=body.reason))

    _canary_routes(router, ctx, caller)
    challenger_routes(router, ctx, caller)
    return router


def _canary_routes(router: APIRouter, ctx: ServingContext, caller: Caller) -> None:
    """``GET /canary`` and ``POST /admin/canary``, ``/admin/canary/next``, ``/admin/canary/abort``: each action
    answers with the canary's state after it (:meth:`~snapshotter.control.ControlPlane.canary_status`)."""
    control = ctx.control

    def status() -> dict[str, Any]:
        route = ctx.models.current
        served = None
        if route is not None:
            canary = route.canary.arm if route.threshold else None
            served = {
                "version": route.version,
                "champion": route.champion.arm,
                "canary": canary,
                "percent": route.percent,
            }
        return {**control.canary_status(), "served": served}

    def act(action: Callable[[], object]) -> dict[str, Any]:
        _refused_as_http(action)
        return status()

    @router.get("/canary", tags=["versions"], responses=responses(503))
    def show_canary() -> dict[str, Any]:
        """The canary split as stored, the champion alias, the serving version and its arms, and what this worker
        serves (``served``: its route, as of its last refresh)."""
        return status()

    @router.post("/admin/canary", tags=["admin"], responses=responses(*_ADMIN))
    def set_canary(body: CanaryRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """Send ``percent`` of the requests with a ``user_id`` to ``arm`` of the serving version (409: an arm it does
        not hold)."""
        steps = body.steps or CANARY_STEPS
        actor = _on_behalf(body, who)
        return act(lambda: control.set_canary(body.arm, body.percent, steps=steps, actor=actor, reason=body.reason))

    @router.post("/admin/canary/next", tags=["admin"], responses=responses(*_ADMIN))
    def advance_canary(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """Move the canary to its next step (409: none set, aborted, or at its last step)."""
        return act(lambda: control.advance_canary(actor=_on_behalf(body, who), reason=body.reason))

    @router.post("/admin/canary/abort", tags=["admin"], responses=responses(*_ADMIN))
    def abort_canary(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        """Every request back to the champion at once (percent 0; the arm kept; 409: no canary set)."""
        return act(lambda: control.abort_canary(actor=_on_behalf(body, who), reason=body.reason))
