"""Function processes (see `function_runner.py`): one per execution (elastic) or one kept warm per deployment
(low latency). Each runs in its own process group, in the pipeline's environment, and is killed whole on timeout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.backends.local import OwnedProcess, spawn


class FunctionFailed(Exception):
    """The process could not give an answer: it did not load, died, or ran out of time."""


@dataclass(frozen=True)
class FunctionSpec:
    python: str | None
    code_dir: Path
    function_path: str
    function_name: str
    log_path: Path  # the process's own stderr (not the executions' logs, which come back with each reply)
    kind: str = "execution"  # in the server's process ledger: "execution" (elastic) or "warm" (low latency)
    subject: str = ""  # the execution id, or the deployment a warm process serves


class FunctionProcess:
    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.process: OwnedProcess | None = None
        self.lock = asyncio.Lock()  # one call at a time: replies are matched to requests by order

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout_s: float) -> None:
        spec = self.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(spec.log_path, "ab")
        try:
            self.process = await spawn(
                spec.kind, spec.subject, [spec.python or sys.executable, "-m", "modelport.jobs.function_runner",
                                          str(spec.code_dir), spec.function_path, spec.function_name],
                description=spec.function_name, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, cwd=spec.code_dir, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                    "PYTHONPATH": _modelport_path()}, limit=64 * 1024 * 1024)
        finally:
            log.close()
        hello = await self._read(timeout_s)
        if not hello.get("ready"):
            await self.stop()
            raise FunctionFailed(hello.get("error") or "the function process did not start")

    async def call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        async with self.lock:
            if not self.alive:
                raise FunctionFailed("the function process is not running")
            assert self.process is not None and self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            await self.process.stdin.drain()
            return await self._read(timeout_s)

    async def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except asyncio.TimeoutError:
            await self.stop()
            raise FunctionFailed(f"the execution did not finish within {timeout_s:g} s and was stopped") from None
        if not line:
            code = await self.process.wait()
            raise FunctionFailed(f"the function process exited with code {code} (see its log)")
        return json.loads(line)

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 2)  # it exits by itself when its stdin closes
        except asyncio.TimeoutError:
            process.signal(signal.SIGKILL)
            await process.wait()


async def run_once(spec: FunctionSpec, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """An elastic execution: a fresh process for this request only."""
    process = FunctionProcess(spec)
    try:
        await process.start(timeout_s)
        return await process.call(request, timeout_s)
    finally:
        await process.stop()


def _modelport_path() -> str:
    """So that a pipeline's own environment (built without modelport) can still run the runner module."""
    import modelport

    root = str(Path(modelport.__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root
