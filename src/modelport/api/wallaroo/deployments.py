"""Wallaroo deployments and inference: deploy, undeploy, status, external URL, and the inference URL itself."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from modelport.api import fastpath, openapi
from modelport.api.bodies import documented, json_body
from modelport.api.responses import JSON
from modelport.api.security import require_principal
from modelport.api.wallaroo import schemas
from modelport.api.wallaroo.routes import PREFIX, _platform
from modelport.domain.errors import InvalidInput, NotFound, UnsupportedMediaType
from modelport.serving import codecs
from modelport.serving.plane import LiveDeployment, Variant

router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_principal)], tags=["wallaroo"])

ARROW = "application/vnd.apache.arrow.file"


@router.post("/pipelines/deploy", operation_id="wallaroo_deploy_pipeline",
             openapi_extra=documented(schemas.DeployPipeline))
async def deploy(request: Request, body: schemas.DeployPipeline = json_body(schemas.DeployPipeline)) -> JSON:
    """Returns at once; the status goes Starting -> Running once every replica has loaded every model."""
    spec = await _platform(request).deployments.deploy(
        pipeline_pk=body.pipeline_id, pipeline_version_pk=body.pipeline_version_pk_id, name=body.deploy_id,
        engine_config=body.engine_config)
    return JSON({"id": spec.id})


@router.post("/pipelines/undeploy", operation_id="wallaroo_undeploy_pipeline",
             openapi_extra=openapi.merge(documented(schemas.UndeployPipeline), openapi.answers({"type": "null"})))
async def undeploy(request: Request, body: schemas.UndeployPipeline = json_body(schemas.UndeployPipeline)) -> JSON:
    await _platform(request).deployments.undeploy(body.pipeline_id, body.deployment_id)
    return JSON(None)


def engine_json(variant: Variant, live: LiveDeployment) -> list[dict[str, Any]]:
    models = variant.models()
    engines = []
    for replica in variant.replicas:
        engines.append({
            "ip": "127.0.0.1", "name": replica.name, "status": replica.state, "reason": replica.reason,
            "details": [f"pid {replica.pid}"] if replica.pid else [],
            "pipeline_statuses": {"pipelines": [{"id": live.spec.pipeline_name, "status": replica.state}]},
            "model_statuses": {"models": [{"name": m["name"], "version": m["version"], "sha": m["sha"],
                                           "status": replica.state} for m in models]},
            "pipeline_version": variant.spec.pipeline_version, "weight": variant.weight,
        })
    return engines


def status_json(live: LiveDeployment) -> dict[str, Any]:
    engines = [e for v in live.variants for e in engine_json(v, live)]
    details = [live.error] if live.error else []
    details += [f"variant {v.name}: {v.error}" for v in live.variants if v.error]
    return {
        "status": live.status.value, "details": details, "engines": engines,
        "engine_lbs": [{"ip": "127.0.0.1", "name": f"engine-lb-{live.spec.route}", "status": "Running",
                        "reason": None, "details": []}],
        "sidekicks": [],
    }


@router.post("/status/get_deployment", operation_id="wallaroo_get_deployment_status",
             openapi_extra=documented(schemas.DeploymentStatusQuery))
async def get_deployment(request: Request,
                         body: schemas.DeploymentStatusQuery = json_body(schemas.DeploymentStatusQuery)) -> JSON:
    live = await run_in_threadpool(_platform(request).deployments.live, body.name)
    return JSON(status_json(live))


@router.post("/admin/get_pipeline_external_url", operation_id="wallaroo_get_pipeline_external_url",
             openapi_extra=documented(schemas.ExternalUrl))
async def external_url(request: Request, body: schemas.ExternalUrl = json_body(schemas.ExternalUrl)) -> JSON:
    spec = await run_in_threadpool(_platform(request).deployments.find_running, body.workspace_id, body.pipeline_name)
    base = request.app.state.settings.base_url
    return JSON({"url": f"{base}{PREFIX}/pipelines/infer/{spec.route}/{spec.pipeline_name}"})


# -- inference --------------------------------------------------------------------------------------------------------

@codecs.decoder
def _decode(content_type: str, body: bytes) -> tuple[codecs.Columns, int, bool]:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in (ARROW, "application/vnd.apache.arrow.stream"):
        columns, rows = codecs.columns_from_arrow(body)
        return columns, rows, True
    if kind in ("application/json", ""):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput("the body is not valid JSON") from None
        if "format=wallaroo" in content_type.replace(" ", "").lower():
            columns, rows = codecs.columns_from_dict(data)
        else:
            columns, rows = codecs.columns_from_records(data)
        return columns, rows, False
    raise UnsupportedMediaType(f"content type {kind!r} is not accepted: use application/json; format=pandas-records, "
                               f"application/json; format=wallaroo or {ARROW}")


INFER_PREFIX = f"{PREFIX}/pipelines/infer/"


async def infer(request: fastpath.Request) -> fastpath.Reply:
    """POST /v1/api/pipelines/infer/<deploy_id>-<id>/<pipeline>: pandas-records JSON, Wallaroo JSON or an Arrow IPC
    file in; the same format out (or as Accept asks)."""
    started = time.perf_counter_ns()
    deployment, _, pipeline = request.path[len(INFER_PREFIX):].partition("/")
    plane = request.platform.plane
    live = plane.routes.get(deployment)
    if live is None or live.spec.route != deployment or live.spec.pipeline_name != pipeline:
        raise NotFound(f"no live deployment {deployment!r} of pipeline {pipeline!r}", field="deployment")
    if not request.principal.is_admin:
        await request.platform.access.check_inference(request.principal, live.spec.workspace_id,
                                                      f"live deployment {deployment!r} of pipeline {pipeline!r}")
    content_type = request.header(b"content-type")
    columns, rows, arrow_in = _decode(content_type, request.body)
    result = await plane.infer(live, columns, rows)
    last = result.variant.spec.steps[-1][0]
    answer = codecs.Answer(columns, result.outputs, rows, time.time_ns() // 1_000_000, {
        "last_model": last.tag,
        "pipeline_version": result.variant.spec.pipeline_version,
        "elapsed": [sum(result.elapsed), time.perf_counter_ns() - started],
        "dropped": [], "partition": result.replica,
    })
    dataset = codecs.DatasetFilter.from_query(QueryParams(request.query)) if request.query else codecs.EVERYTHING
    request.platform.inference_log.record(live, result, answer)
    accept = request.header(b"accept")
    if ARROW in accept or (arrow_in and "json" not in accept):
        return fastpath.Reply(codecs.arrow_file(answer, dataset), ARROW.encode())
    return fastpath.Reply(codecs.records_json(answer, dataset), b"application/json; format=pandas-records")


fastpath.register(fastpath.Route(INFER_PREFIX, "", infer, f"{INFER_PREFIX}{{deployment}}/{{pipeline}}", {
    "operationId": "wallaroo_infer", "summary": "Inference through a deployment's external URL",
    "requestBody": {"required": True, "content": {
        "application/json; format=pandas-records": {
            "schema": {"type": "array", "items": {"type": "object"}},  # [] is zero rows in, zero rows out
            "example": [{"features": [5.1, 3.5, 1.4, 0.2]}]},
        "application/json; format=wallaroo": {"schema": {"type": "object"}},
        ARROW: {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {"200": {"description": "records (time, in, out, check_failures, metadata) or an Arrow file",
                          "content": {"application/json; format=pandas-records": {
                              "schema": {"type": "array", "items": {"type": "object"}}},
                              ARROW: {"schema": {"type": "string", "format": "binary"}}}}},
    "tags": ["wallaroo"],
}))


@router.post("/pipelines/get_logs", operation_id="wallaroo_get_pipeline_logs",
             openapi_extra=documented(schemas.InferenceLogsQuery))
async def get_logs(request: Request, body: schemas.InferenceLogsQuery = json_body(schemas.InferenceLogsQuery)) -> JSON:
    """Recent inference records of a pipeline (all its versions, or one), newest first."""
    platform = _platform(request)
    pipeline = await run_in_threadpool(platform.pipelines.get_by_name, body.pipeline_name, body.workspace_id)
    versions = [v.version for v in pipeline.versions]
    if body.pipeline_version is not None:
        if body.pipeline_version not in versions:
            raise NotFound(f"pipeline version {body.pipeline_version!r} not found", field="pipeline_version")
        versions = [body.pipeline_version]
    await platform.inference_log.flush()
    logs = await run_in_threadpool(platform.inference_log.query, versions, body.limit)
    return JSON({"logs": logs})
