"""The fast path's ASGI entry, for ASGI servers other than `modelport serve` (which answers the same routes from
uvicorn's request cycle, tested over real sockets in test_serving.py): same body limits, same error rendering."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from modelport.api import fastpath
from modelport.domain.errors import Forbidden, InvalidInput


async def _echo(request: fastpath.Request) -> fastpath.Reply:
    if request.body == b"bad":
        raise InvalidInput("bad body")
    if request.body == b"boom":
        raise RuntimeError("a bug")
    if request.body == b"hang":
        await asyncio.Event().wait()  # a model that never answers
    return fastpath.Reply(request.body[::-1], b"text/plain", headers=((b"x-seen", request.header(b"x-test").encode()),))


async def _gate(request: fastpath.Request) -> str:
    if request.body:
        raise AssertionError("the gate ran after the body was read")
    if request.header(b"x-key") != "k":
        raise Forbidden("no key")
    return "caller"


def _call(app: fastpath.FastPath, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]] = (),
          key: bool = True) -> dict:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []
    headers = [*headers, (b"x-key", b"k")] if key else list(headers)
    received = []

    async def receive() -> dict:
        received.append(1)
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": list(headers), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start, *bodies = sent
    return {"status": start["status"], "headers": dict(start["headers"]), "body": b"".join(m["body"] for m in bodies),
            "read": len(received)}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> fastpath.FastPath:
    monkeypatch.setattr(fastpath, "routes", [fastpath.Route("/echo/", "/run", _echo, "/echo/{x}/run", authenticate=False,
                                                                  gate=_gate)])

    async def fallback(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return fastpath.FastPath(fallback, SimpleNamespace(state=SimpleNamespace(platform=object())), max_body_bytes=10,
                             request_timeout_s=0.2)


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


def test_a_refused_caller_is_answered_without_reading_the_body(app: fastpath.FastPath) -> None:
    refused = _call(app, "/echo/a/run", [b"x" * 6, b"x" * 6], key=False)
    assert refused["status"] == 403 and refused["read"] == 0
    assert _call(app, "/echo/a/run", [b"x"], [(b"content-length", b"99")])["read"] == 0  # too large: not read either
    with pytest.raises(ValueError):
        fastpath.Route("/x/", "", _echo, "/x", authenticate=False)  # a face's own scheme must come with its gate


def test_a_request_past_its_deadline_gets_a_504_and_nothing_is_left_waiting(app: fastpath.FastPath) -> None:
    reply = _call(app, "/echo/a/run", [b"hang"])
    assert reply["status"] == 504 and "0.2 s" in orjson.loads(reply["body"])["error"]["message"]
    assert not app.deadlines.pending
    assert _call(app, "/echo/a/run", [b"abc"])["status"] == 200
