"""The local backend: model code runs in child processes of the server, never inside it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str | None = None
    signature: dict[str, Any] | None = None


def check_model(framework: str, path: Path, *, timeout_s: float, python: str | None = None,
                entry: str = "") -> CheckResult:
    """Load the model in a fresh interpreter (its own process group, killed whole on timeout) and report."""
    command = [python or sys.executable, "-m", "modelport.serving.check", framework, str(path)]
    if entry:
        command.append(entry)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return CheckResult(False, f"the model did not load within {timeout_s:.0f} s")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        report = json.loads(last)
    except json.JSONDecodeError:
        tail = (err or out).strip().splitlines()[-3:]
        return CheckResult(False, f"the loader process exited with code {process.returncode}: {' '.join(tail)}"[:2000])
    if report.get("ok"):
        return CheckResult(True, signature=report.get("signature"))
    return CheckResult(False, report.get("reason") or "the model failed to load")


# -- replicas ----------------------------------------------------------------------------------------------------

class ReplicaProcess:
    """One replica's OS process (its own process group), started from a spec file; see serving/worker.py."""

    def __init__(self, process: "asyncio.subprocess.Process", log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    async def first_line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        return line.decode(errors="replace").strip()

    async def wait(self) -> int:
        return await self.process.wait()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    async def stop(self, grace_s: float = 5.0) -> None:
        if self.process.returncode is not None:
            return
        self.kill(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except asyncio.TimeoutError:
            self.kill(signal.SIGKILL)
            await self.process.wait()

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


async def start_replica(spec_path: Path, log_path: Path, *, python: str | None = None) -> ReplicaProcess:
    """Start `python -m modelport.serving.worker SPEC`: stdout carries its one-line load report, stderr its log."""
    log = open(log_path, "ab")
    try:
        process = await asyncio.create_subprocess_exec(
            python or sys.executable, "-m", "modelport.serving.worker", str(spec_path),
            stdout=asyncio.subprocess.PIPE, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
    finally:
        log.close()
    return ReplicaProcess(process, log_path)
