"""The inference hot path, in front of FastAPI: a raw ASGI dispatcher for the few routes that carry traffic.

FastAPI's per-request machinery (routing, dependency solving, Request objects) costs more than the rest of an
inference on a small model. Faces register a raw handler here for their inference route; it gets the decoded
pieces of the request and returns the response bytes. Authentication, body limits and error rendering are the same
as everywhere else (`api/errors.py`), and every other route still goes to FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from modelport.api import errors
from modelport.domain.errors import Forbidden, ModelportError, PayloadTooLarge

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Request:
    """What a hot-path handler sees: path, raw query string, lower-cased headers, the whole body."""

    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes
    platform: Any

    def header(self, name: bytes, default: str = "") -> str:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else default


@dataclass(slots=True)
class Reply:
    body: bytes
    content_type: bytes = b"application/json"
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[Request], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    prefix: str
    suffix: str
    handler: Handler
    openapi_path: str
    operation: dict[str, Any] = field(default_factory=dict)
    authenticate: bool = True  # bearer tokens; False when the handler authenticates itself (SigV4)


routes: list[Route] = []
# Faces whose official clients send odd paths (`//admin/api`, trailing slashes) register how to read them.
rewrites: list[Callable[[str], str]] = []


def register(route: Route) -> None:
    routes.append(route)


def register_rewrite(rewrite: Callable[[str], str]) -> None:
    rewrites.append(rewrite)


def openapi_paths() -> dict[str, Any]:
    return {r.openapi_path: {"post": r.operation} for r in routes}


class FastPath:
    def __init__(self, app: ASGIApp, fastapi_app: Any, *, max_body_bytes: int) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.max_body = max_body_bytes
        self._platform: Any = None  # set by the lifespan; read once here (Starlette's State lookups are slow)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path[-1:] == "/" or path[:2] == "//":
                scope = _rewritten(scope)
                path = scope["path"]
            if scope["method"] == "POST":
                for route in routes:
                    if path.startswith(route.prefix) and path.endswith(route.suffix):
                        await self._serve(route, path, scope, receive, send)
                        return
        await self.app(scope, receive, send)

    async def _serve(self, route: Route, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, read the body, call the handler, send its reply; errors in the face's own format.
        Written flat on purpose: every coroutine and call here is paid on every inference."""
        try:
            headers = dict(scope["headers"])
            platform = self._platform or self._find_platform()
            if route.authenticate:
                token = _bearer_token(headers)
                principal = platform.auth.cached(token) or await run_in_threadpool(platform.auth.authenticate, token)
                if principal.is_service_key:
                    raise Forbidden("a service key may only call the prediction API of its services")
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                raise PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
            message = await receive()
            body = message.get("body", b"")
            if message.get("more_body", False):
                body = await self._read_rest(body, receive)
            elif len(body) > self.max_body:  # chunked, without a Content-Length
                raise PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
            reply = await route.handler(Request(path, scope["query_string"], headers, body, platform))
        except ModelportError as exc:
            await errors.render(path, exc)(scope, receive, send)
            return
        except Exception:
            log.exception("unhandled error on POST %s", path)
            error = ModelportError("internal error; see the server log")
            error.status, error.code = 500, "InternalError"
            await errors.render(path, error)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode()), *reply.headers]})
        await send({"type": "http.response.body", "body": reply.body})

    def _find_platform(self) -> Any:
        self._platform = self.fastapi_app.state.platform
        return self._platform

    async def _read_rest(self, first: bytes, receive: Receive) -> bytes:
        """A body that came in several messages (large uploads), capped at the body limit."""
        chunks = [first]
        size = len(first)
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _rewritten(scope: Scope) -> Scope:
    path = scope["path"]
    for rewrite in rewrites:
        path = rewrite(path)
    return scope if path == scope["path"] else {**scope, "path": path, "raw_path": path.encode()}


def _bearer_token(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"authorization", b"")
    return raw[7:].strip().decode("latin-1") if raw[:7].lower() == b"bearer " else None
