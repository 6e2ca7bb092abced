"""The run supervisor: executes task runs as local processes and records how they end.

Each run gets a fresh copy of the unpacked package, the orchestration's Python environment, its own process group
(so a kill reaches every child), a token that exists only while it runs, and a log in the CRI line format.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from modelport.backends.local import OwnedProcess, spawn
from modelport.domain.jobs import PackageStatus, RunStatus, TaskKind, log_line
from modelport.jobs.environments import EnvironmentBuildFailed, EnvironmentBuilder
from modelport.services.auth import AuthService
from modelport.services.jobs import JobService, NotReadyYet

log = logging.getLogger(__name__)


class ActiveRun:
    def __init__(self, run_id: str, task_id: str) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.process: OwnedProcess | None = None
        self.stop_reason: RunStatus | None = None  # set when we stop it: KILLED, TIMED_OUT or FAILURE (shutdown)
        self.done = asyncio.Event()


class RunSupervisor:
    def __init__(self, jobs: JobService, auth: AuthService, environments: EnvironmentBuilder, base_url: str, *,
                 kill_grace_s: float = 5.0, package_wait_s: float = 1800.0) -> None:
        self.jobs = jobs
        self.auth = auth
        self.environments = environments
        self.base_url = base_url
        self.kill_grace_s = kill_grace_s
        self.package_wait_s = package_wait_s
        self.active: dict[str, ActiveRun] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_finished: list[Callable[[str], None]] = []

    def launch(self, run_id: str, task_id: str, delay_s: float = 0.0) -> None:
        run = ActiveRun(run_id, task_id)
        self.active[run_id] = run
        task = asyncio.get_running_loop().create_task(self._execute(run, delay_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, run: ActiveRun, delay_s: float) -> None:
        status, exit_code, reason = RunStatus.FAILURE, None, None
        token_id = None
        try:
            if delay_s:
                await asyncio.sleep(delay_s)
            if run.stop_reason is not None:
                status = run.stop_reason
                return
            start = await self._wait_for_package(run.run_id)
            python = await run_in_threadpool(self.environments.python_for, start.requirements)
            folder = self.jobs.runs_dir / run.run_id
            workdir = folder / "work"
            await run_in_threadpool(shutil.copytree, start.workdir_source, workdir)
            (folder / "args.json").write_text(json.dumps(start.arguments))
            info, token = await run_in_threadpool(lambda: self.auth.create(f"run {run.run_id}", "run",
                                                                           workspace_id=start.workspace_id))
            token_id = info.id
            entry = workdir / start.entrypoint
            run.process = await spawn(
                "task_run", run.run_id, [python, entry.name], description=f"task {run.task_id}", cwd=entry.parent,
                env=self._environment(run, token, folder), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            await run_in_threadpool(self.jobs.mark_running, run.run_id, run.process.pid, token_id)
            with open(self.jobs.log_path(run.run_id), "a", buffering=1, encoding="utf-8") as log_file:
                readers = [asyncio.ensure_future(self._copy_lines(run.process.stdout, "stdout", log_file)),
                           asyncio.ensure_future(self._copy_lines(run.process.stderr, "stderr", log_file))]
                try:
                    exit_code = await asyncio.wait_for(run.process.wait(), start.timeout_s)
                except asyncio.TimeoutError:
                    run.stop_reason = run.stop_reason or RunStatus.TIMED_OUT
                    reason = f"the run exceeded its timeout of {start.timeout_s} s"
                    exit_code = await self._terminate(run)
                await asyncio.gather(*readers, return_exceptions=True)
            if run.stop_reason is not None:
                status = run.stop_reason
                reason = reason or {RunStatus.KILLED: "the task was killed",
                                    RunStatus.FAILURE: "the server stopped"}.get(run.stop_reason)
            elif exit_code == 0:
                status = RunStatus.SUCCESS
            else:
                status, reason = RunStatus.FAILURE, f"main.py exited with code {exit_code}"
        except NotReadyYet as exc:
            status, reason = RunStatus.FAILURE, f"the orchestration is not runnable: {exc}"
        except EnvironmentBuildFailed as exc:
            status, reason = RunStatus.FAILURE, f"installing requirements failed: {exc}"
        except asyncio.CancelledError:
            status, reason = RunStatus.FAILURE, "the server stopped"
            if run.process is not None:
                await self._terminate(run)
        except Exception as exc:
            log.exception("run %s failed to start", run.run_id)
            status, reason = RunStatus.FAILURE, f"the run could not start: {exc}"
        finally:
            if token_id is not None:
                await run_in_threadpool(self.auth.revoke, token_id)
            shutil.rmtree(self.jobs.runs_dir / run.run_id / "work", ignore_errors=True)
            task = await run_in_threadpool(self.jobs.finish_run, run.run_id, status, exit_code=exit_code,
                                           reason=reason)
            self.active.pop(run.run_id, None)
            run.done.set()
            if task is not None and task.kind == TaskKind.CONTINUOUS.value and not task.killed \
                    and run.stop_reason is None:
                self._continue(task.id, task.failures_in_a_row)
            for callback in self.on_finished:
                callback(run.run_id)

    def _continue(self, task_id: str, failures: int) -> None:
        """A continuous task starts its next run at once, or after an exponential back-off while runs fail."""
        async def next_run() -> None:
            run = await run_in_threadpool(self.jobs.next_continuous_run, task_id)
            if run is not None:
                self.launch(run.id, task_id, delay_s=min(2.0 ** (failures - 1), 60.0) if failures else 0.0)

        task = asyncio.get_running_loop().create_task(next_run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_package(self, run_id: str):  # type: ignore[no-untyped-def]
        waited = 0.0
        while True:
            try:
                return await run_in_threadpool(self.jobs.run_start, run_id)
            except NotReadyYet as exc:
                if exc.status == PackageStatus.ERROR.value or waited > self.package_wait_s:
                    raise
            await asyncio.sleep(0.2)
            waited += 0.2

    def _environment(self, run: ActiveRun, token: str, folder: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELPORT_", "WALLAROO_"))}
        env.update({
            "MODELPORT_URL": self.base_url, "MODELPORT_TOKEN": token, "MODELPORT_TASK_ID": run.task_id,
            "MODELPORT_RUN_ID": run.run_id, "MODELPORT_TASK_ARGS_FILE": str(folder / "args.json"),
            "WALLAROO_TASK_ID": run.task_id, "PYTHONUNBUFFERED": "1",
        })
        return env

    @staticmethod
    async def _copy_lines(stream: asyncio.StreamReader | None, name: str, out: Any) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream limit: take what there is
                line = await stream.read(65536)
            if not line:
                return
            out.write(log_line(name, line.decode("utf-8", errors="replace").rstrip("\n")) + "\n")

    async def _terminate(self, run: ActiveRun) -> int | None:
        """SIGTERM to the whole process group, SIGKILL after the grace period (and to what outlived the leader)."""
        process = run.process
        if process is None:
            return None
        return await process.stop(self.kill_grace_s)

    async def kill_task(self, task_id: str) -> None:
        runs = [r for r in self.active.values() if r.task_id == task_id]
        for run in runs:
            run.stop_reason = RunStatus.KILLED
            if run.process is not None:
                asyncio.get_running_loop().create_task(self._terminate(run))
        await asyncio.gather(*(r.done.wait() for r in runs))
        await run_in_threadpool(self.jobs.end_kill, task_id)

    async def shutdown(self) -> None:
        """Every active run is stopped at once (each with its grace period), then recorded as failed."""
        stopping = []
        for run in list(self.active.values()):
            run.stop_reason = RunStatus.FAILURE
            if run.process is not None:
                stopping.append(self._terminate(run))
        await asyncio.gather(*stopping, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def recover(self) -> None:
        """Runs left active by a server that is gone (it has no row in `servers` any more: the ledger of this start
        just cleared an earlier incarnation's, backends/ledger.py): revoke their tokens and record them as lost."""
        for run in await run_in_threadpool(self.jobs.active_runs, orphaned=True):
            if run.token_id:
                await run_in_threadpool(self.auth.revoke, run.token_id)
            await run_in_threadpool(self.jobs.finish_run, run.id, RunStatus.FAILURE,
                                    reason="lost: the server stopped while the run was active (its processes "
                                           "ended with it)")
