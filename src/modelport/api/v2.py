"""The Open Inference Protocol (KServe V2) over REST, for every deployment: model name = pipeline name, model
version = pipeline version. Errors are {"error": "..."} as the protocol says."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from modelport import __version__
from modelport.api import errors as error_faces
from modelport.api.responses import JSON
from modelport.api.security import require_principal
from modelport.domain.errors import InvalidInput, ModelportError, NotFound
from modelport.serving import codecs
from modelport.serving.plane import LiveDeployment, Variant

PREFIX = "/v2"
health = APIRouter(prefix=PREFIX, tags=["open-inference-protocol"])
router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_principal)], tags=["open-inference-protocol"])


def render_error(error: ModelportError) -> Response:
    return JSON({"error": error.message}, status_code=error.status)


def install(app: FastAPI) -> None:
    error_faces.register_face(PREFIX, render_error)
    app.include_router(health)
    app.include_router(router)


@health.get("/health/live", operation_id="v2_server_live")
async def live() -> JSON:
    return JSON({"live": True})


@health.get("/health/ready", operation_id="v2_server_ready")
async def ready() -> JSON:
    return JSON({"ready": True})


@router.get("", operation_id="v2_server_metadata")
async def server_metadata() -> JSON:
    return JSON({"name": "modelport", "version": __version__, "extensions": []})


def _deployment(request: Request, name: str) -> LiveDeployment:
    live = request.app.state.platform.deployments.plane.routes.get(name)
    if live is None:
        raise NotFound(f"model {name!r} is not deployed", field="model")
    return live


def _variant(live: LiveDeployment, version: str | None) -> Variant:
    if version is None:
        return live.pick()
    return live.pick(version)


def _metadata(live: LiveDeployment, variant: Variant) -> dict[str, Any]:
    models = variant.models()
    first = (models[0].get("signature") or {}) if models else {}
    last = (models[-1].get("signature") or {}) if models else {}
    return {"name": live.spec.pipeline_name, "versions": [v.spec.pipeline_version for v in live.variants],
            "platform": "modelport", "inputs": first.get("inputs", []), "outputs": last.get("outputs", [])}


@router.get("/models/{name}", operation_id="v2_model_metadata")
async def model_metadata(name: str, request: Request) -> JSON:
    live = _deployment(request, name)
    return JSON(_metadata(live, _variant(live, None)))


@router.get("/models/{name}/versions/{version}", operation_id="v2_model_version_metadata")
async def model_version_metadata(name: str, version: str, request: Request) -> JSON:
    live = _deployment(request, name)
    return JSON(_metadata(live, _variant(live, version)))


def _ready(live: LiveDeployment, variant: Variant) -> JSON:
    ok = variant.status.value == "Running"
    return JSON({"name": live.spec.pipeline_name, "ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}/ready", operation_id="v2_model_ready")
async def model_ready(name: str, request: Request) -> JSON:
    live = _deployment(request, name)
    return _ready(live, _variant(live, None))


@router.get("/models/{name}/versions/{version}/ready", operation_id="v2_model_version_ready")
async def model_version_ready(name: str, version: str, request: Request) -> JSON:
    live = _deployment(request, name)
    return _ready(live, _variant(live, version))


async def _infer(request: Request, name: str, version: str | None) -> Response:
    live = _deployment(request, name)
    header = request.headers.get("inference-header-content-length")
    if header is not None and not header.isdigit():
        raise InvalidInput("Inference-Header-Content-Length must be a number")
    parsed = codecs.v2_request(await request.body(), int(header) if header else None)
    plane = request.app.state.platform.deployments.plane
    result = await plane.infer(live, parsed.columns, parsed.rows, target=version)
    body, json_length = codecs.v2_response(live.spec.pipeline_name, result.variant.spec.pipeline_version, parsed,
                                           result.outputs)
    if json_length is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(json_length)})


@router.post("/models/{name}/infer", operation_id="v2_model_infer")
async def model_infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", operation_id="v2_model_version_infer")
async def model_version_infer(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)
