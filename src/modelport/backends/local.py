"""The local backend: model code and jobs run in child processes of the server, never inside it.

This is the one place that starts and stops processes (design.md). Every process goes through `spawn` (asyncio) or
`spawn_blocking` (a worker thread), which
- runs it through `guard.py`, so it dies with the server, even on `kill -9` (parent-death signal, watched pipe);
- makes it the leader of its own session and process group, so that a stop reaches every descendant;
- records it, while it lives, as owned by this server (`install` a ledger: backends/ledger.py), so that a server
  that starts again can end whatever an earlier incarnation left and say which runs were lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

GUARD = Path(__file__).with_name("guard.py")


class Ownership(Protocol):
    """Where a server records the processes it owns (backends/ledger.py's ServerLedger)."""

    def record(self, kind: str, pid: int, start_time: int | None, subject: str, description: str) -> int | None: ...

    def forget(self, record_id: int) -> None: ...


_ledger: Ownership | None = None
_pipe: tuple[int, int] | None = None  # (read end, passed to every child; write end, held here until this process ends)
_pipe_lock = threading.Lock()


def install(ledger: Ownership | None) -> None:
    """Record the processes started from now on in `ledger` (None: stop recording)."""
    global _ledger
    _ledger = ledger


def _guard_fd() -> int:
    """The read end of the pipe every child watches. The write end is never written, closed or inherited (os.pipe
    makes both ends close-on-exec; `pass_fds` re-opens only the read end in the child): it closes when we die."""
    global _pipe
    with _pipe_lock:
        if _pipe is None:
            _pipe = os.pipe()
        return _pipe[0]


def guarded(argv: Sequence[str], *, python: bool = True) -> list[str]:
    """`argv` run through the guard. With `python`, argv is `[interpreter, "-m", module, ...]` or `[interpreter,
    script, ...]` and runs inside the guard's process; otherwise any program, run as the guard's child."""
    fd, parent = str(_guard_fd()), str(os.getpid())
    if python:
        return [argv[0], str(GUARD), fd, parent, *argv[1:]]
    return [sys.executable, str(GUARD), fd, parent, "--exec", *argv]


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, it names one process for good, so a
    reused pid is never taken for ours. None when there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": comm may hold spaces and parentheses
    return int(fields[19])


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _record(kind: str, pid: int, subject: str, description: str) -> int | None:
    ledger = _ledger
    if ledger is None:
        return None
    try:
        return ledger.record(kind, pid, process_start_time(pid), subject, description)
    except Exception:  # noqa: BLE001 - the guards still tie the process to us; the record is the second net
        log.exception("could not record process %s (%s %s)", pid, kind, subject)
        return None


def _forget(record_id: int | None) -> None:
    ledger = _ledger
    if record_id is None or ledger is None:
        return
    try:
        ledger.forget(record_id)
    except Exception:  # noqa: BLE001
        log.exception("could not forget process record %s", record_id)


class OwnedProcess:
    """A process started by `spawn`: an asyncio subprocess, leader of its own process group."""

    def __init__(self, process: asyncio.subprocess.Process, record_id: int | None) -> None:
        self.process = process
        self._record_id = record_id
        self._released = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        return self.process.stdin

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        return self.process.stdout

    @property
    def stderr(self) -> asyncio.StreamReader | None:
        return self.process.stderr

    def signal(self, sig: int) -> None:
        """To the whole group: the process and whatever it started."""
        signal_group(self.process.pid, sig)

    async def wait(self) -> int:
        code = await self.process.wait()
        if not self._released:
            self._released = True
            signal_group(self.process.pid, signal.SIGKILL)  # descendants that outlived the leader
            await asyncio.get_running_loop().run_in_executor(None, _forget, self._record_id)
        return code

    async def stop(self, grace_s: float = 5.0) -> int:
        """SIGTERM to the group, SIGKILL after `grace_s`."""
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.wait(), grace_s)
            except asyncio.TimeoutError:
                self.signal(signal.SIGKILL)
        return await self.wait()


async def spawn(kind: str, subject: str, argv: Sequence[str], *, description: str = "", python: bool = True,
                **options: Any) -> OwnedProcess:
    """Start `argv` (see `guarded`) as a process this server owns; `options` go to asyncio's subprocess_exec.
    `kind` and `subject` say what it is in the ledger: ("replica", variant), ("task_run", run id), ..."""
    options.pop("start_new_session", None)
    process = await asyncio.create_subprocess_exec(*guarded(argv, python=python), start_new_session=True,
                                                   pass_fds=(_guard_fd(),), **options)
    loop = asyncio.get_running_loop()
    record_id = await loop.run_in_executor(None, _record, kind, process.pid, subject, description)
    return OwnedProcess(process, record_id)


class BlockingProcess:
    """A process started by `spawn_blocking` from a worker thread (model checks, environment builds)."""

    def __init__(self, process: subprocess.Popen[Any], record_id: int | None) -> None:
        self.process = process
        self._record_id = record_id

    @property
    def pid(self) -> int:
        return self.process.pid

    def communicate(self, timeout_s: float | None = None) -> tuple[Any, Any]:
        """Its output; on timeout the whole group is killed and subprocess.TimeoutExpired raised."""
        try:
            return self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.communicate()
            raise
        finally:
            if self.process.returncode is not None:
                signal_group(self.process.pid, signal.SIGKILL)
                _forget(self._record_id)
                self._record_id = None


def spawn_blocking(kind: str, subject: str, argv: Sequence[str], *, description: str = "", python: bool = True,
                   **options: Any) -> BlockingProcess:
    """`spawn` for threads: `options` go to subprocess.Popen. The calling thread must outlive the process (the
    parent-death signal follows the thread that started it): it waits in `communicate`."""
    options.pop("start_new_session", None)
    process = subprocess.Popen(guarded(argv, python=python), start_new_session=True, pass_fds=(_guard_fd(),),
                               **options)
    return BlockingProcess(process, _record(kind, process.pid, subject, description))


def run_blocking(kind: str, subject: str, argv: Sequence[str], *, timeout_s: float, python: bool = True,
                 **options: Any) -> subprocess.CompletedProcess[str]:
    """Like subprocess.run(capture_output=True, text=True), through `spawn_blocking`."""
    process = spawn_blocking(kind, subject, argv, python=python, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, **options)
    out, err = process.communicate(timeout_s)
    return subprocess.CompletedProcess(list(argv), process.process.returncode, out, err)


# -- model checks ----------------------------------------------------------------------------------------------------

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
    process = spawn_blocking("model_check", path.name, command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    try:
        out, err = process.communicate(timeout_s)
    except subprocess.TimeoutExpired:
        return CheckResult(False, f"the model did not load within {timeout_s:.0f} s")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        report = json.loads(last)
    except json.JSONDecodeError:
        tail = (err or out).strip().splitlines()[-3:]
        code = process.process.returncode
        return CheckResult(False, f"the loader process exited with code {code}: {' '.join(tail)}"[:2000])
    if report.get("ok"):
        return CheckResult(True, signature=report.get("signature"))
    return CheckResult(False, report.get("reason") or "the model failed to load")


# -- replicas ----------------------------------------------------------------------------------------------------

class ReplicaProcess:
    """One replica's OS process (its own process group), started from a spec file; see serving/worker.py."""

    def __init__(self, process: OwnedProcess, log_path: Path) -> None:
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
        self.process.signal(sig)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.process.stop(grace_s)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


async def start_replica(spec_path: Path, log_path: Path, *, python: str | None = None,
                        subject: str = "") -> ReplicaProcess:
    """Start `python -m modelport.serving.worker SPEC`: stdout carries its one-line load report, stderr its log.
    `subject` names what it serves in the ledger (the variant)."""
    log_file = open(log_path, "ab")
    try:
        process = await spawn(
            "replica", subject, [python or sys.executable, "-m", "modelport.serving.worker", str(spec_path)],
            description=spec_path.stem, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
    finally:
        log_file.close()
    return ReplicaProcess(process, log_path)
