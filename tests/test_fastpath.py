"""The fast path's ASGI entry, for ASGI servers other than `modelport serve` (which answers the same routes from
uvicorn's request cycle, tested over real sockets in test_serving.py): same body limits, same error rendering."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from modelport.api import fastpath
from modelport.domain.errors import InvalidInput


async def _echo(request: fastpath.Request) -> fastpath.Reply:
    if request.body == b"bad":
        raise InvalidInput("bad body")
    if request.body == b"boom":
        raise RuntimeError("a bug")
    return fastpath.Reply(request.body[::-1], b"text/plain", headers=((b"x-seen", request.header(b"x-test").encode()),))


def _call(app: fastpath.FastPath, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]] = ()) -> dict:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": list(headers), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start, *bodies = sent
    return {"status": start["status"], "headers": dict(start["headers"]), "body": b"".join(m["body"] for m in bodies)}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> fastpath.FastPath:
    monkeypatch.setattr(fastpath, "routes", [fastpath.Route("/echo/", "/run", _echo, "/echo/{x}/run", authenticate=False)])

    async def fallback(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return fastpath.FastPath(fallback, SimpleNamespace(state=SimpleNamespace(platform=object())), max_body_bytes=10)


def test_asgi_entry_reads_split_bodies_and_replies(app: fastpath.FastPath) -> None:
    reply = _call(app, "/echo/a/run", [b"abc", b"def"], [(b"x-test", b"yes")])
    assert reply["status"] == 200 and reply["body"] == b"fedcba" and reply["headers"][b"x-seen"] == b"yes"
    assert _call(app, "/elsewhere", [b""])["status"] == 204


def test_asgi_entry_limits_and_errors(app: fastpath.FastPath) -> None:
    assert _call(app, "/echo/a/run", [b"x" * 6, b"x" * 6])["status"] == 413  # chunked: no Content-Length
    assert _call(app, "/echo/a/run", [b"x"], [(b"content-length", b"99")])["status"] == 413
    bad = _call(app, "/echo/a/run", [b"bad"])
    assert bad["status"] == 400 and orjson.loads(bad["body"])["error"]["message"] == "bad body"
    assert _call(app, "/echo/a/run", [b"boom"])["status"] == 500
