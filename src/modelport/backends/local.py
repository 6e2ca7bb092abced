"""The local backend: model code runs in child processes of the server, never inside it."""

from __future__ import annotations

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


def check_model(framework: str, path: Path, *, timeout_s: float, python: str | None = None) -> CheckResult:
    """Load the model in a fresh interpreter (its own process group, killed whole on timeout) and report."""
    command = [python or sys.executable, "-m", "modelport.serving.check", framework, str(path)]
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
