"""Version routes (read-only) and admin routes: pin, unpin, rollback, resume learning.

Admin routes need ``Authorization: Bearer <LIVELEARN_API_TOKEN>``: 401 without a token, 403 with a wrong
one (or when no token is configured, which turns the admin API off). A missing version is 404; an action
the control plane refuses (nothing pinned, not frozen, nothing to roll back to, corrupt version) is 409.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from snapshotter.states import version_states
from streaming.errors import ControlError, VersionNotFoundError
from streaming.serving.context import ServingContext, responses
from streaming.serving.hardening import StrictJSONRoute
from streaming.serving.schemas import AdminRequest, PinRequest, RollbackRequest, VersionInPath

__all__ = ["admin_routes"]

_bearer = HTTPBearer(auto_error=False)
_ADMIN = (401, 403, 409, 422, 503)


def admin_routes(ctx: ServingContext) -> APIRouter:
    """``/versions`` and ``/admin/*``."""
    router = APIRouter(route_class=StrictJSONRoute)
    store, control, serving = ctx.store, ctx.control, ctx.serving

    def caller(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        if creds is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        token = serving.token.get_secret_value() if serving.token else None
        if token is None:
            raise HTTPException(403, "the admin API is off: set LIVELEARN_API_TOKEN on the server")
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token")
        return f"api:{request.client.host if request.client else 'unknown'}"

    def on_behalf(body: AdminRequest, who: str) -> str:
        """A declared actor is recorded with the caller, so nobody can write in another's name."""
        return f"{body.actor} via {who}" if body.actor else who

    def act(action: Callable[[], object]) -> dict[str, Any]:
        """Run one control action: 404 for a missing version, 409 when refused; then the new state."""
        try:
            action()
        except VersionNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except ControlError as exc:
            raise HTTPException(409, str(exc)) from None
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
        return act(lambda: control.pin(body.version, actor=on_behalf(body, who), reason=body.reason, force=body.force))

    @router.post("/admin/unpin", tags=["admin"], responses=responses(*_ADMIN))
    def unpin(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.unpin(actor=on_behalf(body, who), reason=body.reason))

    @router.post("/admin/rollback", tags=["admin"], responses=responses(404, *_ADMIN))
    def rollback(body: RollbackRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.rollback(to=body.to, actor=on_behalf(body, who), reason=body.reason))

    @router.post("/admin/learning/resume", tags=["admin"], responses=responses(*_ADMIN))
    def resume(body: AdminRequest, who: str = Depends(caller)) -> dict[str, Any]:
        return act(lambda: control.resume(actor=on_behalf(body, who), reason=body.reason))

    return router
