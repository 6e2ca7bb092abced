"""Authentication for every route but the health checks, and the request-size guard."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.api import errors, openapi
from modelport.domain.entities import Principal
from modelport.domain.errors import Forbidden, PayloadTooLarge


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
    return principal


async def require_admin(request: Request, _: Any = openapi.CREDENTIALS) -> Principal:
    principal = await require_principal(request)
    if not principal.is_admin:
        raise Forbidden("this operation needs an admin token")
    return principal


class BodySizeLimit:
    """Refuse bodies over the limit before reading them (by Content-Length) or while reading them (chunked)."""

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_upload = max_upload_bytes
        self.max_json = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.max_upload if not content_type.startswith("application/json") else self.max_json
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = errors.render(scope["path"], PayloadTooLarge(f"request body is larger than {limit} bytes"))
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)
