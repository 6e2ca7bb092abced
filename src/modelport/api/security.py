"""Bearer-token authentication for every route but the health checks (bodies: see `gate.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from modelport.api import openapi
from modelport.domain.entities import Principal
from modelport.domain.errors import Forbidden
from modelport.services.access import act_as


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def require_principal(request: Request, _: Any = openapi.CREDENTIALS) -> Principal:
    """FastAPI dependency: the caller's identity from `Authorization: Bearer <token>`, or 401."""
    auth = request.app.state.platform.auth
    token = bearer_token(request)
    principal = auth.cached(token) or await run_in_threadpool(auth.authenticate, token)
    if principal.is_service_key:
        raise Forbidden("a service key may only call the prediction API of its services")
    request.state.principal = principal
    act_as(principal)  # every service call of this request checks workspace membership against it
    return principal


async def require_admin(request: Request, _: Any = openapi.CREDENTIALS) -> Principal:
    principal = await require_principal(request)
    if not principal.is_admin:
        raise Forbidden("this operation needs an admin token")
    return principal
