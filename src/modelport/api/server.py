"""uvicorn's server, with the shutdown modelport needs: a request that was accepted is answered.

On SIGTERM (or SIGINT): stop accepting connections; let the requests in flight finish, for at most the drain
timeout (idle keep-alive connections stay open a moment to read a request already on its way: api/protocol.py);
then stop replicas and runs (the app's lifespan shutdown), which answers what still waits on them (503, the
deployment stopped); whatever is still running a moment later is cancelled. uvicorn's own shutdown cancels
requests still running at its timeout before anything answers them, and leaves the replicas running until then.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

log = logging.getLogger("modelport")

ANSWER_S = 2.0  # after replicas and runs stop: the time requests waiting on them get to write their error replies


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_timeout_s: float,
                 on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.drain_timeout_s = drain_timeout_s
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if not all(hasattr(self, name) for name in ("servers", "server_state", "lifespan", "_wait_tasks_to_complete")):
            log.warning("this uvicorn's server is not the one modelport knows; using its own shutdown")
            await super().shutdown(sockets)
            return
        state = self.server_state
        log.info("stopping: no new connections; %d request(s) in flight get up to %g s", len(state.tasks),
                 self.drain_timeout_s)
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()
        if not await self._settle(self.drain_timeout_s):
            log.warning("%d request(s) still running after the drain timeout (%g s): stopping replicas and runs",
                        len(state.tasks), self.drain_timeout_s)
        if not self.force_exit:
            await self.lifespan.shutdown()
        if not await self._settle(ANSWER_S):
            log.error("cancelling %d request(s) that did not finish", len(state.tasks))
            for task in list(state.tasks):
                task.cancel(msg="the server stopped")
            for connection in list(state.connections):
                connection.transport.close()

    async def _settle(self, timeout_s: float) -> bool:
        """Whether every connection closed and every request task ended within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._wait_tasks_to_complete()
            return True
        except TimeoutError:
            return False

