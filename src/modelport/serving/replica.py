"""The API process's handle on one replica: start it, probe it, send it batches, notice when it dies."""

from __future__ import annotations

import asyncio
import json
import shutil
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from modelport.backends.local import ReplicaProcess, start_replica
from modelport.serving import wire
from modelport.serving.runtimes import Columns

log = logging.getLogger(__name__)


class ReplicaFailed(Exception):
    """The replica could not load its models or died; `reason` says why."""


class BatchRejected(Exception):
    """The model refused the batch (bad input, or the model raised); `kind` is "input" or "model"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Replica:
    STARTING, RUNNING, ERROR, STOPPED = "Starting", "Running", "Error", "Stopped"

    def __init__(self, name: str, spec: dict[str, Any], run_dir: Path, *, python: str | None = None,
                 on_exit: Callable[[Replica], None] | None = None, variant: str = "") -> None:
        self.name = name
        self.variant = variant  # what it serves, as the server's process ledger names it
        self.spec = spec
        self.run_dir = run_dir
        self.python = python
        self.on_exit = on_exit
        self.state = self.STARTING
        self.reason: str | None = None
        self.models: list[dict[str, Any]] = []
        self.process: ReplicaProcess | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self, timeout_s: float) -> None:
        """Launch, wait for the load report, connect, probe. Raises ReplicaFailed with the reason."""
        self.state, self.reason, self._stopping = self.STARTING, None, False
        socket_path = self.run_dir / f"{self.name}.sock"
        socket_path.unlink(missing_ok=True)
        spec = {**self.spec, "socket": str(socket_path), "workdir": str(self.run_dir / self.name)}
        spec_path = self.run_dir / f"{self.name}.json"
        spec_path.write_text(json.dumps(spec))
        self.process = await start_replica(spec_path, self.run_dir / f"{self.name}.log", python=self.python,
                                           subject=self.variant)
        try:
            line = await self.process.first_line(timeout_s)
            report = json.loads(line) if line else {"error": "exited before loading: " + self.process.log_tail()}
            if "error" in report:
                raise ReplicaFailed(report["error"])
            self.models = report.get("models", [])
            self._reader, self._writer = await asyncio.open_unix_connection(str(socket_path))
            await self._round_trip({"op": "ping"}, None)
        except (asyncio.TimeoutError, OSError, ValueError, ConnectionError, asyncio.IncompleteReadError) as exc:
            await self.process.stop()
            self._fail(f"replica did not become ready: {type(exc).__name__}: {exc}")
            raise ReplicaFailed(self.reason or "") from None
        except ReplicaFailed as exc:
            await self.process.stop()
            self._fail(str(exc))
            raise
        self.state = self.RUNNING
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())

    def _fail(self, reason: str) -> None:
        self.state, self.reason = self.ERROR, reason

    async def _watch_exit(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        if self._stopping:
            return
        self._fail(f"replica process exited unexpectedly (code {code})")
        log.warning("replica %s exited with code %s", self.name, code)
        if self._writer is not None:
            self._writer.close()
        if self.on_exit is not None:
            self.on_exit(self)

    async def infer(self, columns: Columns, rows: int, outputs: frozenset[str] | None = None,
                    extra: dict[str, Any] | None = None) -> tuple[Columns, list[int], dict[str, Any]]:
        request: dict[str, Any] = {"op": "infer", "rows": rows, **(extra or {})}
        if outputs:
            request["outputs"] = sorted(outputs)
        frame = wire.encode(request, columns)  # may raise for a batch it cannot encode: then nothing was sent
        header, results = await self._exchange(frame)
        if not header.get("ok"):
            raise BatchRejected(header.get("kind", "model"), header.get("error", "the model failed"))
        return results, header.get("elapsed", []), header

    async def _round_trip(self, header: dict[str, Any], columns: Columns | None) -> tuple[dict[str, Any], Columns]:
        return await self._exchange(wire.encode(header, columns))

    async def _exchange(self, frame: list[bytes | memoryview]) -> tuple[dict[str, Any], Columns]:
        """One frame out, one frame in. Once the frame is on its way, any failure (a dead peer, a reply that cannot
        be read, a cancellation) leaves the connection out of step: it is closed and the process ended, so its
        watcher restarts the replica, and the caller gets ReplicaFailed."""
        assert self._reader is not None and self._writer is not None
        try:
            self._writer.writelines(frame)
            await self._writer.drain()
            size = wire.header_length(await self._reader.readexactly(4))
            reply = orjson.loads(await self._reader.readexactly(size))
            body = await self._reader.readexactly(wire.body_length(reply))
            return reply, wire.decode_columns(reply, body)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            raise ReplicaFailed(f"lost the connection to replica {self.name}: {exc}") from None
        except BaseException as exc:
            self._desynchronised()
            if isinstance(exc, Exception):
                log.exception("unreadable reply from replica %s", self.name)
                raise ReplicaFailed(f"replica {self.name} sent a reply that cannot be read") from None
            raise

    def _desynchronised(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.process is not None and self.state == self.RUNNING:
            self.process.kill()

    async def stop(self) -> None:
        self._stopping = True
        self.state = self.STOPPED
        if self._writer is not None:
            self._writer.close()
        if self.process is not None:
            await self.process.stop()
        if self._watch is not None:
            self._watch.cancel()
        # its log stays (until the server stops) for post-mortems; the rest is garbage now
        (self.run_dir / f"{self.name}.sock").unlink(missing_ok=True)
        (self.run_dir / f"{self.name}.json").unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / self.name, ignore_errors=True)
