"""Wallaroo orchestrations, tasks and task runs (seed: wallaroo-orchestration-management.txt)."""

from __future__ import annotations

import sys
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from modelport.api import openapi
from modelport.api.examples import ORCHESTRATION_ZIP
from modelport.api.bodies import documented, json_body
from modelport.api.responses import JSON
from modelport.api.security import require_principal
from modelport.api.wallaroo import schemas
from modelport.api.wallaroo.routes import ARRAY, PREFIX, _platform, multipart, read_upload
from modelport.domain.entities import Principal
from modelport.domain.jobs import TaskKind
from modelport.store.tables import Orchestration, Task, TaskRun

router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_principal)], tags=["wallaroo"])

_FLAVORS = {"once": "exec_orch_oneshot", "scheduled": "exec_orch_cron", "continuous": "exec_orch_continuous"}


def orchestration_json(o: Orchestration) -> dict[str, Any]:
    return {"id": o.id, "sha": o.sha, "name": o.name, "file_name": o.file_name, "task_id": None,
            "owner_id": o.owner_id, "status": o.status, "reason": o.status_reason, "workspace_id": o.workspace_id,
            "entrypoint": o.entrypoint, "created_at": o.created_at, "updated_at": o.updated_at}


def run_json(r: TaskRun) -> dict[str, Any]:
    return {"task": r.task_id, "run_id": r.id, "status": r.status, "reason": r.reason, "exit_code": r.exit_code,
            "created_at": r.created_at, "updated_at": r.updated_at}


def task_json(t: Task, orchestration: Orchestration | None, last_runs: list[TaskRun]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": t.name, "id": t.id, "image": "modelport/local-python",
        "image_tag": f"{sys.version_info.major}.{sys.version_info.minor}", "bind_secrets": [],
        "extra_env_vars": {"ORCH_OWNER_ID": t.owner_id, "ORCH_SHA": orchestration.sha if orchestration else None,
                           "TASK_ID": t.id},
        "auth_init": True, "workspace_id": t.workspace_id, "orch_id": t.orchestration_id,
        "flavor": _FLAVORS[t.kind], "reap_threshold_secs": t.timeout_s or 900,
        "exec_type": "cron" if t.kind == "scheduled" else "job", "status": t.status, "input_data": t.arguments,
        "killed": t.killed, "created_at": t.created_at, "updated_at": t.updated_at,
        "last_runs": [{"run_id": r.id, "status": r.status, "created_at": r.created_at} for r in last_runs],
    }
    if t.schedule is not None:
        body["schedule"] = t.schedule
        body["overlap"] = t.overlap
        body["next_run_at"] = t.next_fire_at
    return body


def _task_reply(platform: Any, task: Task, run_limit: int = 10) -> dict[str, Any]:
    orchestration = platform.jobs.orchestration(task.orchestration_id)
    return task_json(task, orchestration, platform.jobs.last_runs(task.id, run_limit))


# -- orchestrations ----------------------------------------------------------------------------------------------------

@router.post("/orchestration/upload", operation_id="wallaroo_upload_orchestration", status_code=202,
             openapi_extra=multipart(schemas.UploadOrchestrationMetadata, "a ZIP with main.py", ORCHESTRATION_ZIP))
async def upload(request: Request, principal: Principal = Depends(require_principal)) -> JSON:
    """Multipart `file` (a ZIP with main.py and at most one requirements.txt) and `metadata` {"workspace_id"}."""
    metadata, file = await read_upload(request, schemas.UploadOrchestrationMetadata, "orchestration")
    try:
        row = await run_in_threadpool(_platform(request).jobs.upload, metadata.workspace_id, metadata.name,
                                      file.file, file.filename or "orchestration.zip", principal.name)
    finally:
        await file.close()
    return JSON({"id": row.id}, status_code=202)


@router.post("/orchestration/list", operation_id="wallaroo_list_orchestrations",
             openapi_extra=openapi.merge(documented(schemas.ListOrchestrations), openapi.answers(ARRAY)))
async def list_orchestrations(request: Request,
                              body: schemas.ListOrchestrations = json_body(schemas.ListOrchestrations)) -> JSON:
    rows = await run_in_threadpool(_platform(request).jobs.orchestrations, [body.workspace_id])
    return JSON([orchestration_json(o) for o in rows])


@router.post("/orchestration/list_all", operation_id="wallaroo_list_all_orchestrations",
             openapi_extra=documented(schemas.ListAllOrchestrations))
async def list_all(request: Request,
                   body: schemas.ListAllOrchestrations = json_body(schemas.ListAllOrchestrations)) -> JSON:
    platform = _platform(request)

    def collect() -> list[dict[str, Any]]:
        spaces = {w.id: w for w in platform.registry.list_workspaces()}
        items = []
        for o in platform.jobs.orchestrations(body.workspace_ids):
            tasks = platform.jobs.tasks(orchestration_id=o.id)
            items.append({"orchestration": orchestration_json(o),
                          "tasks": [task_json(t, o, platform.jobs.last_runs(t.id, 10)) for t in tasks],
                          "workspace": {"id": o.workspace_id, "name": spaces[o.workspace_id].name}})
        return items

    return JSON({"orchestrations": await run_in_threadpool(collect)})


# -- tasks -----------------------------------------------------------------------------------------------------------

async def _create(request: Request, body: schemas.RunTask, kind: TaskKind, principal: Principal) -> JSON:
    platform = _platform(request)
    task, run = await run_in_threadpool(
        lambda: platform.jobs.create_task(
            kind=kind, workspace_id=body.workspace_id, orchestration_id=body.orch_id, name=body.name,
            arguments=body.json_, timeout_s=body.timeout, schedule=getattr(body, "schedule", None),
            overlap=getattr(body, "overlap", None), owner=principal.name))
    if run is not None:
        platform.supervisor.launch(run.id, task.id)
    else:
        platform.scheduler.wake()
    return JSON({"id": task.id})


@router.post("/task/run_once", operation_id="wallaroo_task_run_once", openapi_extra=documented(schemas.RunTask))
async def run_once(request: Request, body: schemas.RunTask = json_body(schemas.RunTask),
                   principal: Principal = Depends(require_principal)) -> JSON:
    return await _create(request, body, TaskKind.ONCE, principal)


@router.post("/task/run_scheduled", operation_id="wallaroo_task_run_scheduled",
             openapi_extra=documented(schemas.RunScheduledTask))
async def run_scheduled(request: Request, body: schemas.RunScheduledTask = json_body(schemas.RunScheduledTask),
                        principal: Principal = Depends(require_principal)) -> JSON:
    """`schedule`: 5-field cron, UTC. `overlap`: allow (default) or forbid a run while the previous one runs."""
    return await _create(request, body, TaskKind.SCHEDULED, principal)


@router.post("/task/run_continuously", operation_id="wallaroo_task_run_continuously",
             openapi_extra=documented(schemas.RunTask))
async def run_continuously(request: Request, body: schemas.RunTask = json_body(schemas.RunTask),
                           principal: Principal = Depends(require_principal)) -> JSON:
    return await _create(request, body, TaskKind.CONTINUOUS, principal)


@router.post("/task/get_by_id", operation_id="wallaroo_task_get_by_id", openapi_extra=documented(schemas.TaskById))
async def get_by_id(request: Request, body: schemas.TaskById = json_body(schemas.TaskById)) -> JSON:
    platform = _platform(request)
    task = await run_in_threadpool(platform.jobs.task, body.id)
    return JSON(await run_in_threadpool(_task_reply, platform, task, body.run_limit))


@router.post("/task/list", operation_id="wallaroo_task_list", openapi_extra=openapi.merge(documented(schemas.ListTasks), openapi.answers(ARRAY)))
async def list_tasks(request: Request, body: schemas.ListTasks = json_body(schemas.ListTasks)) -> JSON:
    platform = _platform(request)

    def collect() -> list[dict[str, Any]]:
        tasks = platform.jobs.tasks(body.workspace_id, killed=body.killed, orchestration_id=body.orch_id)
        return [_task_reply(platform, t) for t in tasks]

    return JSON(await run_in_threadpool(collect))


@router.post("/task/get_tasks_by_orch_sha", operation_id="wallaroo_tasks_by_orchestration_sha",
             openapi_extra=documented(schemas.TasksBySha))
async def tasks_by_sha(request: Request, body: schemas.TasksBySha = json_body(schemas.TasksBySha)) -> JSON:
    return JSON({"ids": await run_in_threadpool(_platform(request).jobs.tasks_by_sha, body.sha)})


@router.post("/task/kill", operation_id="wallaroo_task_kill", status_code=202, openapi_extra=openapi.merge(documented(schemas.KillTask), openapi.answers({"type": "object"}, status=202)))
async def kill(request: Request, body: schemas.KillTask = json_body(schemas.KillTask)) -> JSON:
    """Stops active runs (process group: SIGTERM, then SIGKILL), deletes the task's run logs, fires no more runs."""
    platform = _platform(request)
    task = await run_in_threadpool(platform.jobs.begin_kill, body.id)
    reply = await run_in_threadpool(_task_reply, platform, task)
    platform.background(platform.supervisor.kill_task(body.id))
    return JSON(reply, status_code=202)


@router.post("/task/list_task_runs", operation_id="wallaroo_task_list_runs",
             openapi_extra=openapi.merge(documented(schemas.ListTaskRuns), openapi.answers(ARRAY)))
async def list_task_runs(request: Request, body: schemas.ListTaskRuns = json_body(schemas.ListTaskRuns)) -> JSON:
    runs = await run_in_threadpool(lambda: _platform(request).jobs.runs(body.task_id, status=body.status,
                                                                          limit=body.limit))
    return JSON([run_json(r) for r in runs])


@router.post("/task/get_logs_for_run", operation_id="wallaroo_task_run_logs", openapi_extra=documented(schemas.RunLogs))
async def get_logs_for_run(request: Request, body: schemas.RunLogs = json_body(schemas.RunLogs)) -> JSON:
    return JSON({"logs": await run_in_threadpool(_platform(request).jobs.logs, body.id, body.lines)})
