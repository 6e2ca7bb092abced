"""The inference hot path, in front of FastAPI: a raw ASGI dispatcher for the few routes that carry traffic.

FastAPI's per-request machinery (routing, dependency solving, Request objects) costs more than the rest of an
inference on a small model. Faces register a raw handler here for their inference route; it gets the decoded
pieces of the request and returns the response bytes. Authentication, body limits and error rendering are the same
as everywhere else (`api/errors.py`), and every other route still goes to FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from modelport.api import errors, protocol
from modelport.domain.errors import Forbidden, InternalError, MethodNotAllowed, ModelportError, PayloadTooLarge, Timeout
from modelport.services.access import enter_request

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Request:
    """What a hot-path handler sees: path, raw query string, lower-cased headers, the whole body."""

    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes
    platform: Any
    principal: Any = None  # who is calling (route.authenticate); handlers pass it to platform.access
    credentials: Any = None  # what the route's `gate` found in the headers (e.g. a verified SigV4 credential)

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
    authenticate: bool = True  # bearer tokens; False when the face has its own scheme: then `gate` checks it
    # The face's own authentication from the headers alone, before any byte of the body is read; what it returns is
    # the request's `credentials`. Required when `authenticate` is False.
    gate: Callable[[Request], Awaitable[Any]] | None = None

    def __post_init__(self) -> None:
        if not self.authenticate and self.gate is None:
            raise ValueError(f"route {self.openapi_path}: a route without bearer authentication needs a gate")


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

    def __init__(self, app: ASGIApp, fastapi_app: Any, *, max_body_bytes: int, request_timeout_s: float = 300.0
                 ) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.max_body = max_body_bytes
        self._platform: Any = None  # set by the lifespan; read once here (Starlette's State lookups are slow)
        self.deadlines = Deadlines(request_timeout_s)

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
            enter_request()  # fail closed: nobody until the face authenticates the caller
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
        task = self.deadlines.enter()
        try:
            try:
                reply = await self.answer(route, scope, self._receive_body, receive)
            except ModelportError as exc:
                await errors.render(scope["path"], exc)(scope, receive, send)
                return
            except asyncio.CancelledError:
                if not self.deadlines.expired(task):
                    raise
                await errors.render(scope["path"], self.deadlines.error())(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": reply.status, "headers": [
                (b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode()),
                *reply.headers]})
            await send({"type": "http.response.body", "body": reply.body})
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise  # past the deadline again while answering: the client does not read; the server drops it
        finally:
            self.deadlines.done(task)

    async def serve_cycle(self, route: Route, scope: Scope, cycle: Any) -> None:
        """`_serve` on uvicorn's RequestResponseCycle (see api/protocol.py): the body as uvicorn buffered it, the
        reply written in one piece, and errors through the cycle's own ASGI `send`, like any other response. The
        protocol put this request's task under `deadlines` when it created it."""
        try:
            try:
                reply = await self.answer(route, scope, protocol.read_body, cycle)
            except ModelportError as exc:
                await errors.render(scope["path"], exc)(scope, cycle.receive, cycle.send)
                return
            except asyncio.CancelledError:
                if not self.deadlines.expired():
                    raise
                cycle.keep_alive = False  # the body may be half read: this connection ends with the reply
                await errors.render(scope["path"], self.deadlines.error())(scope, cycle.receive, cycle.send)
                return
            await protocol.write_reply(cycle, reply.status, reply.content_type, reply.body, reply.headers)
        except asyncio.CancelledError:
            if not self.deadlines.expired():
                raise
            cycle.transport.close()  # past the deadline again while answering: the client does not read
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
            request = Request(path, scope["query_string"], headers, b"", platform)
            if route.authenticate:
                token = _bearer_token(headers)
                principal = platform.auth.cached(token) or await run_in_threadpool(platform.auth.authenticate, token)
                if principal.is_service_key:
                    raise Forbidden("a service key may only call the prediction API of its services")
                request.principal = principal
            else:
                request.credentials = await route.gate(request)  # type: ignore[misc]
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                raise PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
            request.body = await read_body(source, self.max_body)
            return await route.handler(request)
        except ModelportError:
            raise
        except Exception:
            log.exception("unhandled error on POST %s", path)
            raise InternalError("internal error; see the server log") from None

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


class Deadlines:
    """Every hot-path request has a deadline, and one sweep (a task waking every fraction of the timeout) cancels
    the requests past theirs, wherever they wait: reading the body, authenticating, queued for a replica, the model,
    writing the reply. A cancelled request is answered 504 in its face's format; one that passes a second deadline
    while answering is dropped.

    Per request this is one dict insert and one delete: no timer, no task, no clock read (a deadline counts from the
    sweep's last tick, so it may fire up to one tick late, never early). Under `modelport serve` the protocol
    registers each request's task as it creates it (`watch`) and forgets it in the task's done callback (`done`)."""

    GRACE_S = 10.0  # time a request that timed out gets to write its 504

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.interval_s = min(1.0, timeout_s / 4)
        self.pending: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._budget = timeout_s + self.interval_s  # counted from the last tick: never early
        self._now = 0.0  # the loop's time at the sweep's last tick

    def watch(self, task: asyncio.Task[Any]) -> None:
        if self._sweeper is None:
            self.start()
        self.pending[task] = self._now + self._budget

    def done(self, task: asyncio.Task[Any]) -> None:
        if self.pending.pop(task, None) is not None and self._expired:
            self._expired.discard(task)

    def enter(self) -> asyncio.Task[Any]:
        """`watch` for the running task (the ASGI entry, where no one else creates the task)."""
        task = asyncio.current_task()
        assert task is not None
        if self._loop is not task.get_loop():  # served on another loop than the sweep's (tests)
            self.start()
        self.watch(task)
        return task

    def expired(self, task: asyncio.Task[Any] | None = None) -> bool:
        """Whether the cancellation being handled is this sweep's (then it is taken back), not a shutdown's."""
        task = task or asyncio.current_task()
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()  # type: ignore[union-attr]
        return True

    def error(self) -> Timeout:
        return Timeout(f"the request did not finish within {self.timeout_s:g} s")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sweeper is None or self._sweeper.done() or self._loop is not loop:
            self._loop = loop
            self._now = loop.time()
            self._sweeper = loop.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweeper = self._loop = None

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            self._now = loop.time()
            self.expire(self._now)

    def expire(self, now: float) -> None:
        for task, deadline in list(self.pending.items()):
            if now >= deadline and not task.done():
                self.pending[task] = now + self.GRACE_S
                self._expired.add(task)
                task.cancel()


def _rewritten(scope: Scope) -> Scope:
    path = scope["path"]
    for rewrite in rewrites:
        path = rewrite(path)
    return scope if path == scope["path"] else {**scope, "path": path, "raw_path": path.encode()}


def _bearer_token(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"authorization", b"")
    return raw[7:].strip().decode("latin-1") if raw[:7].lower() == b"bearer " else None
