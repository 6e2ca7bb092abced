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

from modelport.api import errors, protocol
from modelport.domain.errors import Forbidden, MethodNotAllowed, ModelportError, PayloadTooLarge

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
    """The ASGI app modelport serves: hot routes answered here, everything else passed to FastAPI.

    Under `modelport serve` the hot routes do not even go through ASGI: `api/protocol.py` hands uvicorn's request
    cycle to `serve_cycle`, which reads the body and writes the response in one piece. The ASGI entry (`__call__`)
    serves the same routes, with the same answers, for any other ASGI server."""

    def __init__(self, app: ASGIApp, fastapi_app: Any, *, max_body_bytes: int) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.max_body = max_body_bytes
        self._platform: Any = None  # set by the lifespan; read once here (Starlette's State lookups are slow)

    def match(self, scope: Scope) -> tuple[Route | None, Scope]:
        """The hot route for this request, if any, and the scope with the path as the faces' rewrites read it."""
        path = scope["path"]
        if path[-1:] == "/" or path[:2] == "//":
            scope = _rewritten(scope)
            path = scope["path"]
        if scope["method"] == "POST":
            for route in routes:
                if path.startswith(route.prefix) and path.endswith(route.suffix):
                    return route, scope
        return None, scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route, scope = self.match(scope)
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
            if scope["method"] != "POST" and any(scope["path"].startswith(r.prefix) and scope["path"].endswith(r.suffix)
                                                 for r in routes):
                error = MethodNotAllowed(f"{scope['method']} is not allowed here: the inference routes take POST")
                response = errors.render(scope["path"], error)
                response.headers["Allow"] = "POST"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            reply = await self.answer(route, scope, self._receive_body, receive)
        except ModelportError as exc:
            await errors.render(scope["path"], exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode()), *reply.headers]})
        await send({"type": "http.response.body", "body": reply.body})

    async def serve_cycle(self, route: Route, scope: Scope, cycle: Any) -> None:
        """`_serve` on uvicorn's RequestResponseCycle (see api/protocol.py): the body as uvicorn buffered it, the
        reply written in one piece, and errors through the cycle's own ASGI `send`, like any other response."""
        try:
            try:
                reply = await self.answer(route, scope, protocol.read_body, cycle)
            except ModelportError as exc:
                await errors.render(scope["path"], exc)(scope, cycle.receive, cycle.send)
                return
            await protocol.write_reply(cycle, reply.status, reply.content_type, reply.body, reply.headers)
        finally:
            cycle.on_response = _nothing  # as uvicorn's run_asgi: a finished cycle must not restart the pipeline

    async def answer(self, route: Route, scope: Scope, read_body: Callable[[Any, int], Awaitable[bytes]],
                     source: Any) -> Reply:
        """Authenticate, read the body, call the handler. Errors are ModelportErrors for the face to render; an
        unexpected one is logged and becomes a 500 in the face's format. Written flat on purpose: every coroutine
        and call here is paid on every inference."""
        path = scope["path"]
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
            body = await read_body(source, self.max_body)
            return await route.handler(Request(path, scope["query_string"], headers, body, platform))
        except ModelportError:
            raise
        except Exception:
            log.exception("unhandled error on POST %s", path)
            error = ModelportError("internal error; see the server log")
            error.status, error.code = 500, "InternalError"
            raise error from None

    def _find_platform(self) -> Any:
        self._platform = self.fastapi_app.state.platform
        return self._platform

    @staticmethod
    async def _receive_body(receive: Receive, limit: int) -> bytes:
        """The whole body from ASGI messages, capped at the body limit (chunked uploads carry no Content-Length)."""
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _nothing() -> None:
    return None


def _rewritten(scope: Scope) -> Scope:
    path = scope["path"]
    for rewrite in rewrites:
        path = rewrite(path)
    return scope if path == scope["path"] else {**scope, "path": path, "raw_path": path.encode()}


def _bearer_token(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"authorization", b"")
    return raw[7:].strip().decode("latin-1") if raw[:7].lower() == b"bearer " else None
