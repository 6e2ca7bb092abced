"""The body gate: no request body is read before its sender is authenticated, nor past its route's limit.

Every route that takes a body is covered, whether its face remembered or not: a request that carries a body
(Content-Length above zero, or chunked) is first authenticated from its headers alone, with the scheme of the face
its path belongs to (a bearer token unless the face registered another: SigV4, service keys, session cookies,
endpoint tokens), then refused at once if its Content-Length is over the route's limit, and counted while it
streams otherwise. A refusal closes the connection, so the unread body is never read at all.

Authorization (who may act on what) stays with the routes; the gate only makes sure nothing is read, parsed or
buffered for a sender nobody has identified. The inference fast path applies the same order itself (`fastpath.py`:
its routes' `gate`, then the body).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.api import errors
from modelport.domain.errors import ModelportError, PayloadTooLarge

Authenticator = Callable[[Request], Awaitable[Any]]  # raises a ModelportError; must not read the body


@dataclass(frozen=True)
class Policy:
    """How a route's body is let in: `authenticate` from the headers first (None: a public route, whose body is
    kept small), and whether it may be as large as an upload (MODELPORT_MAX_UPLOAD_BYTES) or only as large as a
    JSON body (MODELPORT_MAX_JSON_BYTES)."""

    authenticate: Authenticator | None
    large: bool = False
    render: Callable[[ModelportError], Any] | None = None  # the face's errors, when its path does not say (`/`)


_policies: list[tuple[str, str, bool, Policy]] = []  # prefix, suffix, exact, policy
_default: list[Policy] = []


def register(prefix: str, policy: Policy, *, suffix: str = "", exact: bool = False) -> None:
    """Paths starting with `prefix` (and ending with `suffix`; or equal to it when `exact`) take bodies by `policy`.
    The longest prefix wins; others fall back to the default (a bearer token, JSON-sized)."""
    _policies.append((prefix, suffix, exact, policy))
    _policies.sort(key=lambda item: (len(item[0]) + len(item[1]), item[2]), reverse=True)


def set_default(policy: Policy) -> None:
    _default[:] = [policy]


def policy_for(path: str) -> Policy:
    for prefix, suffix, exact, policy in _policies:
        if (path == prefix) if exact else (path.startswith(prefix) and path.endswith(suffix)):
            return policy
    return _default[0]


def has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return b"transfer-encoding" in headers


def refuse(scope: Scope, error: ModelportError, policy: Policy | None = None) -> Any:
    """The face's error, with the connection closed after it: the body that was not read is never read."""
    response = policy.render(error) if policy and policy.render else errors.render(scope["path"], error)
    response.headers["connection"] = "close"
    return response


class BodyGate:
    """ASGI middleware in front of every FastAPI route (the hot routes check the same in `fastpath.py`)."""

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_upload = max_upload_bytes
        self.max_json = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not has_body(headers):
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope["path"])
        limit = self.max_upload if policy.large else self.max_json
        try:
            if policy.authenticate is not None:
                await policy.authenticate(Request(scope))
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        except ModelportError as exc:
            await refuse(scope, exc, policy)(scope, receive, send)
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
