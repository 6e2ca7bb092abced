"""uvicorn's HTTP protocol, with the hot routes answered straight from its request cycle instead of through ASGI.

Measured at 64 connections, an inference spent more CPU in uvicorn's ASGI `send`/`receive` (message dicts, header
validation, the status line and headers written apart from the body: two socket writes) than in modelport's own
code. Everything about the connection stays uvicorn's: parsing, keep-alive, pipelining, flow control, 100-continue,
timeouts, shutdown. Only what happens between "request parsed" and "response written" changes, and only for
`fastpath` routes; every other request, and every error reply, still goes through ASGI.

It builds on uvicorn's `HttpToolsProtocol` and `RequestResponseCycle` attributes, which are not a public API:
`protocol_class` checks they are there and otherwise returns None, and modelport then serves everything through ASGI.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modelport.domain.errors import ModelportError, PayloadTooLarge

if TYPE_CHECKING:
    from modelport.api.fastpath import FastPath

log = logging.getLogger(__name__)

_CYCLE_ATTRIBUTES = ("scope", "transport", "flow", "message_event", "body", "more_body", "disconnected", "keep_alive",
                     "waiting_for_100_continue", "response_started", "response_complete", "default_headers",
                     "on_response")


class ClientGone(ModelportError):
    """The client closed the connection before its request was read; there is no one to answer."""

    status = 499
    code = "ClientClosedRequest"


def protocol_class(fast: FastPath) -> type | None:
    """An `HttpToolsProtocol` whose hot routes skip ASGI, or None when this uvicorn is not the one it was written for."""
    try:
        import httptools  # noqa: F401 - the protocol below parses with it
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
    except ImportError:
        return None
    probe = RequestResponseCycle.__init__.__code__.co_varnames
    if not callable(getattr(HttpToolsProtocol, "_start_asgi_task", None)) or "expect_100_continue" not in probe:
        log.warning("this uvicorn's HTTP protocol is not the one modelport knows; serving everything through ASGI")
        return None
    _STATUS_LINE.update(STATUS_LINE)
    deadlines = fast.deadlines

    class FastPathProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        cycles_known: bool | None = None  # whether uvicorn's cycles have every attribute we use; checked once
        draining = False  # the server is stopping: answer what arrives, then close
        quiet = True  # nothing arrived since the drain began

        def shutdown(self) -> None:
            """The server stops. A busy connection answers its request with `connection: close` (as uvicorn does).
            An idle keep-alive connection is not closed at once, as uvicorn would: a client may have sent its next
            request already, and closing would reset it unanswered. It stays open, reading, for a quiet window;
            what arrives meanwhile is answered with `connection: close`; if nothing does, it closes."""
            self.draining = True
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False
                return
            self.loop.call_later(IDLE_LINGER_S, self._close_if_quiet)

        def _close_if_quiet(self) -> None:
            if self.quiet and not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self.draining:
                self.quiet = False
            super().data_received(data)

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if self.draining:
                cycle.keep_alive = False
            # `app` is not `self.app` when uvicorn answers 503 for its concurrency limit: leave that to uvicorn.
            if app is self.app:
                route, scope = fast.match(cycle.scope)
                if route is not None and (self.cycles_known or _known(type(self), cycle)):
                    task = self.loop.create_task(fast.serve_cycle(route, scope, cycle))
                    deadlines.watch(task)
                    task.add_done_callback(self._fast_done)
                    self.tasks.add(task)
                    return
            super()._start_asgi_task(cycle, app)

        def _fast_done(self, task: Any) -> None:
            self.tasks.discard(task)
            deadlines.done(task)

    return FastPathProtocol


_STATUS_LINE: dict[int, bytes] = {}  # uvicorn's own status lines, filled by `protocol_class`
IDLE_LINGER_S = 0.25  # how long an idle connection stays open, reading, once the server begins to stop


def _known(protocol: Any, cycle: Any) -> bool:
    if protocol.cycles_known is None:
        protocol.cycles_known = all(hasattr(cycle, name) for name in _CYCLE_ATTRIBUTES)
        if not protocol.cycles_known:
            log.warning("uvicorn's request cycle lacks attributes modelport uses; serving everything through ASGI")
    return protocol.cycles_known


async def read_body(cycle: Any, limit: int) -> bytes:
    """The request body as uvicorn's parser buffers it into the cycle (usually complete already: small requests
    arrive in one read), waiting for the rest like uvicorn's own `receive` does."""
    if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
        cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        cycle.waiting_for_100_continue = False
    while cycle.more_body and not cycle.disconnected:
        if len(cycle.body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        cycle.flow.resume_reading()
        await cycle.message_event.wait()
        cycle.message_event.clear()
    if cycle.disconnected:
        raise ClientGone("the client closed the connection")
    if len(cycle.body) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return bytes(cycle.body)


async def write_reply(cycle: Any, status: int, content_type: bytes, body: bytes,
                      headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Status line, headers and body in one write; then what uvicorn's `send` does when a response completes."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    parts = [_STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status,
             b"content-type: ", content_type, b"\r\ncontent-length: ", b"%d" % len(body), b"\r\n"]
    for name, value in (*cycle.default_headers, *headers):
        parts += (name, b": ", value, b"\r\n")
    if not cycle.keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if len(body) < 65536:
        parts.append(body)
        cycle.transport.write(b"".join(parts))
    else:  # not worth copying a large body to save one write
        cycle.transport.write(b"".join(parts))
        cycle.transport.write(body)
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
