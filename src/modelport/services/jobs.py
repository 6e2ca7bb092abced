"""Orchestrations (code packages), tasks and task runs: the use cases behind Wallaroo's orchestration API.

Records live in the database; execution is the run supervisor's (jobs/supervisor.py) and firing is the scheduler's
(jobs/scheduler.py). A package is validated before anything is stored, then packaged off the request path:
unpacked once per sha256 and given a Python environment (shared per requirements hash).
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from modelport.domain.errors import InvalidInput, NotFound
from modelport.domain.jobs import (
    RUN_FILTERS, Overlap, PackageStatus, RunStatus, TaskKind, TaskStatus, next_fire, parse_schedule,
)
from modelport.jobs.environments import EnvironmentBuildFailed, EnvironmentBuilder, normalise
from modelport.jobs.packages import ArchiveLimits, extract_zip, inspect_zip
from modelport.services.access import require_visible, visible_workspaces
from modelport.services.registry import get_workspace_row
from modelport.store.artifacts import ArtifactStore
from modelport.store.database import Database
from modelport.store.secrets import SecretBox
from modelport.store.tables import Orchestration, ServerRecord, Task, TaskRun, utcnow

log = logging.getLogger(__name__)


def entrypoint_of(files: tuple[str, ...]) -> str:
    """main.py at the root, else the first main.py in a subdirectory (shallowest, then alphabetical)."""
    if "main.py" in files:
        return "main.py"
    nested = sorted((f for f in files if PurePosixPath(f).name == "main.py"), key=lambda f: (f.count("/"), f))
    if not nested:
        raise InvalidInput("the archive has no main.py (at its root or in a subdirectory)", field="file")
    return nested[0]


@dataclass(frozen=True)
class RunStart:
    """What the supervisor needs to start one run."""

    run_id: str
    task_id: str
    workdir_source: Path
    entrypoint: str
    requirements: str
    arguments: dict[str, Any]
    timeout_s: int | None
    workspace_id: int | None = None  # the run's token acts in the task's workspace only


class JobService:
    def __init__(self, db: Database, artifacts: ArtifactStore, environments: EnvironmentBuilder, root: Path, *,
                 max_upload_bytes: int, limits: ArchiveLimits, allow_second_schedules: bool = False,
                 run_history: int = 100, server_id: str = "", secrets: SecretBox) -> None:
        self.db = db
        self.secrets = secrets  # task arguments are sealed at rest
        self.artifacts = artifacts
        self.environments = environments
        self.packages_dir = root / "packages"
        self.runs_dir = root / "runs"
        self.max_upload_bytes = max_upload_bytes
        self.limits = limits
        self.allow_second_schedules = allow_second_schedules
        self.run_history = run_history
        self.server_id = server_id
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._packaging: list[str] = []
        self._packaging_wakeup = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._package_forever, name="packager", daemon=True)

    # -- orchestrations ----------------------------------------------------------------------------------------------
    def upload(self, workspace_id: int, name: str | None, file: BinaryIO, file_name: str, owner: str) -> Orchestration:
        """Validate the ZIP (before storing anything), store it, and queue its packaging."""
        if name is not None and (not name.strip() or len(name) > 255):
            raise InvalidInput("name must be 1 to 255 characters", field="name")
        with self.db.session() as s:
            get_workspace_row(s, workspace_id)
        listing = inspect_zip(file, self.limits)
        entry = entrypoint_of(listing.files)
        requirement_files = [f for f in listing.files if PurePosixPath(f).name == "requirements.txt"]
        if len(requirement_files) > 1:
            raise InvalidInput(f"the archive has {len(requirement_files)} requirements.txt files; at most one is "
                               "allowed", field="file")
        requirements = ""
        if requirement_files:
            with zipfile.ZipFile(file) as archive:
                requirements = archive.read(requirement_files[0]).decode("utf-8", errors="replace")
            file.seek(0)
            normalise(requirements)  # refuse disallowed lines now
        blob = self.artifacts.put(file, max_bytes=self.max_upload_bytes)
        row = Orchestration(id=str(uuid.uuid4()), workspace_id=workspace_id, name=name, file_name=file_name[:255],
                            sha=blob.sha256, entrypoint=entry, requirements=requirements, owner_id=owner,
                            status=PackageStatus.PENDING.value)
        try:
            with self.db.session() as s:
                s.add(row)
        except BaseException:
            self.artifacts.discard(blob)
            raise
        self._queue_packaging(row.id)
        return row

    def orchestrations(self, workspace_ids: list[int] | None = None) -> list[Orchestration]:
        with self.db.session() as s:
            query = select(Orchestration).order_by(Orchestration.created_at)
            if workspace_ids is not None:
                for workspace_id in workspace_ids:
                    get_workspace_row(s, workspace_id)
                query = query.where(Orchestration.workspace_id.in_(workspace_ids))
            elif (visible := visible_workspaces(s)) is not None:
                query = query.where(Orchestration.workspace_id.in_(visible))
            return list(s.scalars(query))

    def _get(self, table: Any, key: str, what: str, field: str) -> Any:
        """The row, if it exists in a workspace the caller may see (services/access.py)."""
        with self.db.session() as s:
            row = s.get(table, key)
            if row is None:
                raise NotFound(f"{what} {key!r} not found", field=field)
            owner = s.get(Task, row.task_id) if isinstance(row, TaskRun) else row
            require_visible(s, owner.workspace_id if owner is not None else None, f"{what} {key!r}", field)
            return row

    def orchestration(self, orchestration_id: str) -> Orchestration:
        return self._get(Orchestration, orchestration_id, "orchestration", "orch_id")

    # -- packaging (a background thread: extraction and environment builds block) -------------------------------------
    def start(self) -> None:
        with self.db.session() as s:
            pending = (PackageStatus.PENDING.value, PackageStatus.PACKAGING.value)
            self._packaging.extend(s.scalars(select(Orchestration.id).where(Orchestration.status.in_(pending))))
        self._packaging_wakeup.set()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._packaging_wakeup.set()
        self._thread.join(timeout=5)

    def _queue_packaging(self, orchestration_id: str) -> None:
        self._packaging.append(orchestration_id)
        self._packaging_wakeup.set()

    def _package_forever(self) -> None:
        while not self._stop.is_set():
            self._packaging_wakeup.wait()
            self._packaging_wakeup.clear()
            while self._packaging and not self._stop.is_set():
                orchestration_id = self._packaging.pop(0)
                try:
                    self.package(orchestration_id)
                except Exception:
                    log.exception("packaging orchestration %s failed", orchestration_id)

    def package(self, orchestration_id: str) -> None:
        with self.db.session() as s:
            row = s.get(Orchestration, orchestration_id)
            if row is None:
                return
            row.status, row.updated_at = PackageStatus.PACKAGING.value, utcnow()
            sha, requirements = row.sha, row.requirements
        status, reason = PackageStatus.READY, None
        try:
            self.unpacked(sha)
            self.environments.python_for(requirements)
        except EnvironmentBuildFailed as exc:
            status, reason = PackageStatus.ERROR, f"installing requirements.txt failed: {exc}"
        except (InvalidInput, OSError) as exc:
            status, reason = PackageStatus.ERROR, f"unpacking failed: {exc}"
        with self.db.session() as s:
            row = s.get(Orchestration, orchestration_id)
            if row is not None:
                row.status, row.status_reason, row.updated_at = status.value, reason, utcnow()

    def unpacked(self, sha: str) -> Path:
        """The package's files, unpacked once per sha256 (runs copy them: each run starts from a fresh copy)."""
        target = self.packages_dir / sha
        if not target.exists():
            staging = self.packages_dir / f"{sha}.{uuid.uuid4().hex[:8]}"
            extract_zip(self.artifacts.path_for(sha), staging, self.limits)
            try:
                staging.rename(target)
            except OSError:  # another thread or server unpacked it meanwhile
                shutil.rmtree(staging, ignore_errors=True)
        return target

    # -- tasks -----------------------------------------------------------------------------------------------------------
    def create_task(self, *, kind: TaskKind, workspace_id: int, orchestration_id: str, name: str | None,
                    arguments: Any, timeout_s: Any = None, schedule: Any = None, overlap: Any = None,
                    owner: str = "") -> tuple[Task, TaskRun | None]:
        """Record the task; a run-once or continuous task gets its first run now (returned, for the supervisor)."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidInput("json must be an object of task arguments", field="json")
        if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s <= 0):
            raise InvalidInput("timeout must be a positive number of seconds", field="timeout")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise InvalidInput("name must be a string of at most 255 characters", field="name")
        try:
            policy = Overlap(overlap or "allow")
        except ValueError:
            raise InvalidInput("overlap must be 'allow' or 'forbid'", field="overlap") from None
        if kind is TaskKind.SCHEDULED:
            schedule = parse_schedule(schedule, allow_seconds=self.allow_second_schedules)
        now = utcnow()
        with self.db.session() as s:
            get_workspace_row(s, workspace_id)
            orchestration = s.get(Orchestration, orchestration_id)
            if orchestration is None or orchestration.workspace_id != workspace_id:
                raise NotFound(f"orchestration {orchestration_id!r} not found in workspace {workspace_id}",
                               field="orch_id")
            if orchestration.status == PackageStatus.ERROR.value:
                raise InvalidInput(f"orchestration {orchestration_id!r} failed packaging: "
                                   f"{orchestration.status_reason}", field="orch_id")
            task = Task(id=str(uuid.uuid4()), workspace_id=workspace_id, orchestration_id=orchestration_id,
                        name=name, kind=kind.value, schedule=schedule, overlap=policy.value, timeout_s=timeout_s,
                        arguments=self.secrets.seal_json(arguments), status=TaskStatus.PENDING.value, owner_id=owner,
                        next_fire_at=next_fire(schedule, now) if schedule else None, created_at=now, updated_at=now)
            s.add(task)
            run = None
            if kind is not TaskKind.SCHEDULED:
                s.flush()
                run = self._new_run(s, task, tick=f"seq-{uuid.uuid4().hex}")
        return self._opened(task), run

    def _opened(self, task: Task) -> Task:
        """The detached row with its arguments in plain text (set as loaded: never written back)."""
        set_committed_value(task, "arguments", self.secrets.open_json(task.arguments))
        return task

    def _new_run(self, s: Any, task: Task, tick: str) -> TaskRun:
        run = TaskRun(id=str(uuid.uuid4()), task_id=task.id, tick=tick, status=RunStatus.PENDING.value,
                      server_id=self.server_id, created_at=utcnow(), updated_at=utcnow())
        s.add(run)
        s.flush()
        return run

    def task(self, task_id: str) -> Task:
        return self._opened(self._get(Task, task_id, "task", "id"))

    def tasks(self, workspace_id: int | None = None, *, killed: bool | None = None,
              orchestration_id: str | None = None) -> list[Task]:
        with self.db.session() as s:
            query = select(Task).order_by(Task.created_at)
            if workspace_id is not None:
                get_workspace_row(s, workspace_id)
                query = query.where(Task.workspace_id == workspace_id)
            elif (visible := visible_workspaces(s)) is not None:
                query = query.where(Task.workspace_id.in_(visible))
            if killed is not None:
                query = query.where(Task.killed == killed)
            if orchestration_id is not None:
                query = query.where(Task.orchestration_id == orchestration_id)
            rows = list(s.scalars(query))
        return [self._opened(t) for t in rows]

    def tasks_by_sha(self, sha: str) -> list[str]:
        with self.db.session() as s:
            query = (select(Task.id).join(Orchestration, Task.orchestration_id == Orchestration.id)
                     .where(Orchestration.sha == sha).order_by(Task.created_at))
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(Task.workspace_id.in_(visible))
            return list(s.scalars(query))

    def runs(self, task_id: str, *, status: str | None = None, limit: int | None = None) -> list[TaskRun]:
        """Newest first."""
        if status not in (None, "all", *RUN_FILTERS):
            raise InvalidInput("status must be all, running, failure or success", field="status")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidInput("limit must be a positive integer", field="limit")
        self.task(task_id)
        with self.db.session() as s:
            query = select(TaskRun).where(TaskRun.task_id == task_id).order_by(TaskRun.created_at.desc())
            if status in RUN_FILTERS:
                query = query.where(TaskRun.status.in_([r.value for r in RUN_FILTERS[status]]))
            if limit:
                query = query.limit(limit)
            return list(s.scalars(query))

    def run(self, run_id: str) -> TaskRun:
        return self._get(TaskRun, run_id, "task run", "id")

    def log_path(self, run_id: str) -> Path:
        return self.runs_dir / run_id / "log"

    def logs(self, run_id: str, lines: int | None = None) -> list[str]:
        if lines is not None and (isinstance(lines, bool) or not isinstance(lines, int) or lines < 1):
            raise InvalidInput("lines must be a positive integer", field="lines")
        self.run(run_id)
        path = self.log_path(run_id)
        if not path.exists():
            return []
        text = path.read_text(errors="replace").splitlines()
        return text[-lines:] if lines else text

    # -- what the scheduler and the supervisor record ----------------------------------------------------------------
    def run_start(self, run_id: str) -> RunStart:
        with self.db.session() as s:
            run = s.get(TaskRun, run_id)
            assert run is not None
            task = s.get(Task, run.task_id)
            assert task is not None
            orchestration = s.get(Orchestration, task.orchestration_id)
            assert orchestration is not None
            if orchestration.status != PackageStatus.READY.value:
                raise NotReadyYet(orchestration.status, orchestration.status_reason)
            return RunStart(run.id, task.id, self.unpacked(orchestration.sha), orchestration.entrypoint,
                            orchestration.requirements, dict(self.secrets.open_json(task.arguments) or {}),
                            task.timeout_s, task.workspace_id)

    def mark_running(self, run_id: str, pid: int, token_id: str) -> None:
        with self.db.session() as s:
            run = s.get(TaskRun, run_id)
            if run is None:
                return
            run.status, run.pid, run.token_id, run.updated_at = RunStatus.RUNNING.value, pid, token_id, utcnow()
            task = s.get(Task, run.task_id)
            if task is not None and not task.killed:
                task.status, task.updated_at = TaskStatus.STARTED.value, utcnow()

    def finish_run(self, run_id: str, status: RunStatus, *, exit_code: int | None = None,
                   reason: str | None = None) -> Task | None:
        """Record a run's end; return its task (for continuous tasks, the caller decides on the next run)."""
        with self.db.session() as s:
            run = s.get(TaskRun, run_id)
            if run is None:
                return None
            run.status, run.exit_code, run.reason = status.value, exit_code, reason
            run.finished_at = run.updated_at = utcnow()
            task = s.get(Task, run.task_id)
            if task is None:
                return None
            if task.killed:
                pass
            elif task.kind == TaskKind.ONCE.value:
                task.status = {RunStatus.SUCCESS: TaskStatus.SUCCESS, RunStatus.TIMED_OUT: TaskStatus.TIMED_OUT}.get(
                    status, TaskStatus.FAILED).value
            task.failures_in_a_row = 0 if status is RunStatus.SUCCESS else task.failures_in_a_row + 1
            task.updated_at = utcnow()
            s.flush()
            self._trim_history(s, task.id)
            return task

    def _trim_history(self, s: Any, task_id: str) -> None:
        old = list(s.scalars(select(TaskRun.id).where(TaskRun.task_id == task_id)
                             .order_by(TaskRun.created_at.desc()).offset(self.run_history)))
        if old:
            s.execute(delete(TaskRun).where(TaskRun.id.in_(old)))
            for run_id in old:
                shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)

    def next_continuous_run(self, task_id: str) -> TaskRun | None:
        with self.db.session() as s:
            task = s.get(Task, task_id)
            if task is None or task.killed:
                return None
            return self._new_run(s, task, tick=f"seq-{uuid.uuid4().hex}")

    def due_scheduled(self, now: datetime) -> list[tuple[str, datetime]]:
        with self.db.session() as s:
            rows = s.execute(select(Task.id, Task.next_fire_at).where(
                Task.kind == TaskKind.SCHEDULED.value, Task.killed.is_(False), Task.next_fire_at <= now))
            return [(task_id, when) for task_id, when in rows]

    def next_due(self) -> datetime | None:
        with self.db.session() as s:
            return s.scalar(select(Task.next_fire_at).where(
                Task.kind == TaskKind.SCHEDULED.value, Task.killed.is_(False), Task.next_fire_at.is_not(None))
                .order_by(Task.next_fire_at).limit(1))

    def claim_tick(self, task_id: str, tick: datetime, now: datetime) -> TaskRun | None:
        """Advance the task's schedule and insert the run for `tick`; None when another server claimed that tick,
        or the task forbids overlap and a run is still active."""
        try:
            with self.db.session() as s:
                task = s.get(Task, task_id)
                if task is None or task.killed or task.next_fire_at is None or task.schedule is None:
                    return None
                task.next_fire_at = next_fire(task.schedule, max(now, tick))
                task.updated_at = now
                if task.overlap == Overlap.FORBID.value and s.scalar(select(TaskRun.id).where(
                        TaskRun.task_id == task_id,
                        TaskRun.status.in_([RunStatus.PENDING.value, RunStatus.RUNNING.value])).limit(1)):
                    return None
                return self._new_run(s, task, tick=tick.astimezone(timezone.utc).isoformat())
        except IntegrityError:
            return None

    def begin_kill(self, task_id: str) -> Task:
        with self.db.session() as s:
            task = s.get(Task, task_id)
            if task is None:
                raise NotFound(f"task {task_id!r} not found", field="id")
            require_visible(s, task.workspace_id, f"task {task_id!r}", "id")
            if task.status != TaskStatus.KILLED.value:
                task.killed = True
                task.status = TaskStatus.PENDING_KILL.value
                task.next_fire_at = None
                task.updated_at = utcnow()
        return self._opened(task)

    def end_kill(self, task_id: str) -> None:
        """Runs are stopped: mark them killed, delete their logs (the seed's kill semantics)."""
        with self.db.session() as s:
            task = s.get(Task, task_id)
            if task is None:
                return
            for run in s.scalars(select(TaskRun).where(TaskRun.task_id == task_id)):
                if not RunStatus(run.status).finished:
                    run.status, run.finished_at, run.reason = RunStatus.KILLED.value, utcnow(), "the task was killed"
                shutil.rmtree(self.runs_dir / run.id, ignore_errors=True)
            task.status, task.updated_at = TaskStatus.KILLED.value, utcnow()

    def active_runs(self, task_id: str | None = None, *, orphaned: bool = False) -> list[TaskRun]:
        """Pending or running runs (of one task); `orphaned`: only those whose server is gone (it has no row in
        `servers`: it died, and the ledger of its next start or of a live server removed its row)."""
        with self.db.session() as s:
            query = select(TaskRun).where(TaskRun.status.in_([RunStatus.PENDING.value, RunStatus.RUNNING.value]))
            if task_id is not None:
                query = query.where(TaskRun.task_id == task_id)
            if orphaned:
                live_servers = select(ServerRecord.id)
                query = query.where(or_(TaskRun.server_id.is_(None), TaskRun.server_id.not_in(live_servers)))
            return list(s.scalars(query))

    def last_runs(self, task_id: str, limit: int) -> list[TaskRun]:
        with self.db.session() as s:
            return list(s.scalars(select(TaskRun).where(TaskRun.task_id == task_id)
                                  .order_by(TaskRun.created_at.desc()).limit(limit)))



class NotReadyYet(Exception):
    """The orchestration is still packaging (the run waits) or failed packaging (the run fails)."""

    def __init__(self, status: str, reason: str | None) -> None:
        super().__init__(reason or status)
        self.status = status
