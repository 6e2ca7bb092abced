"""The Open Inference Protocol (KServe V2) over REST, for every deployment: model name = pipeline name, model
version = pipeline version. Errors are {"error": "..."} as the protocol says."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import Response

from modelport import __version__
from modelport.api import errors as error_faces
from modelport.api import fastpath, openapi
from modelport.api.wallaroo.errors import EXAMPLE_PIPELINE, EXAMPLE_PIPELINE_VERSION
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


openapi.describe(openapi.FaceDoc(
    name="V2", prefixes=(PREFIX,),
    error_schema={"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    statuses=(400, 401, 403, 404, 413, 415, 503),
    parameter_examples={"name": EXAMPLE_PIPELINE, "version": EXAMPLE_PIPELINE_VERSION},
))
_READY = {"type": "object", "required": ["name", "ready"],
          "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}
_READY_ANSWERS = openapi.merge(openapi.answers(_READY), openapi.answers(
    _READY, status=503, description="The model is deployed but not ready"))


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


async def _deployment(request: Request, name: str) -> LiveDeployment:
    platform = request.app.state.platform
    live = platform.deployments.plane.routes.get(name)
    if live is not None and live.spec.face == "wallaroo":
        await platform.access.check_inference(request.state.principal, live.spec.workspace_id,
                                              f"model {name!r}")  # another workspace's: not deployed, as far as we say
        return live
    raise NotFound(f"model {name!r} is not deployed", field="model")


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
    live = await _deployment(request, name)
    return JSON(_metadata(live, _variant(live, None)))


@router.get("/models/{name}/versions/{version}", operation_id="v2_model_version_metadata")
async def model_version_metadata(name: str, version: str, request: Request) -> JSON:
    live = await _deployment(request, name)
    return JSON(_metadata(live, _variant(live, version)))


def _ready(live: LiveDeployment, variant: Variant) -> JSON:
    ok = variant.status.value == "Running"
    return JSON({"name": live.spec.pipeline_name, "ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}/ready", operation_id="v2_model_ready", openapi_extra=_READY_ANSWERS)
async def model_ready(name: str, request: Request) -> JSON:
    live = await _deployment(request, name)
    return _ready(live, _variant(live, None))


@router.get("/models/{name}/versions/{version}/ready", operation_id="v2_model_version_ready",
             openapi_extra=_READY_ANSWERS)
async def model_version_ready(name: str, version: str, request: Request) -> JSON:
    live = await _deployment(request, name)
    return _ready(live, _variant(live, version))


# MLServer's names for scikit-learn outputs, accepted as aliases of ours.
_ALIASES = {"predict": "predictions", "predict_proba": "probabilities"}


async def infer(request: fastpath.Request) -> fastpath.Reply:
    """POST /v2/models/{name}[/versions/{version}]/infer: JSON or binary tensors (Inference-Header-Content-Length).
    Without `outputs`, a model's primary outputs come back (scikit-learn: predictions; ask for probabilities)."""
    rest = request.path[len("/v2/models/"):-len("/infer")]
    name, _, version = rest.partition("/versions/")
    if not name or "/" in name or "/" in version:
        raise NotFound(f"no such route {request.path!r}")
    plane = request.platform.plane
    live = plane.routes.get(name)
    if live is None or live.spec.face != "wallaroo":
        raise NotFound(f"model {name!r} is not deployed", field="model")
    if not request.principal.is_admin:
        await request.platform.access.check_inference(request.principal, live.spec.workspace_id, f"model {name!r}")
    header = request.headers.get(b"inference-header-content-length")
    if header is not None and not header.isdigit():
        raise InvalidInput("Inference-Header-Content-Length must be a number")
    parsed = codecs.v2_request(request.body, int(header) if header else None)
    wanted = frozenset(_ALIASES.get(n, n) for n in parsed.outputs) if parsed.outputs else None
    result = await plane.infer(live, parsed.columns, parsed.rows, target=version or None, outputs=wanted,
                               default_outputs=True)
    if parsed.outputs:
        renamed = {}
        for asked in parsed.outputs:
            ours = _ALIASES.get(asked, asked)
            if ours not in result.outputs:
                raise InvalidInput(f"the model has no output {asked!r}", field="outputs")
            renamed[asked] = result.outputs[ours]
        outputs, parsed.outputs = renamed, None
    else:
        outputs = result.outputs
    body, json_length = codecs.v2_response(live.spec.pipeline_name, result.variant.spec.pipeline_version, parsed,
                                           outputs)
    if json_length is None:
        return fastpath.Reply(body)
    return fastpath.Reply(body, b"application/octet-stream",
                          headers=((b"inference-header-content-length", str(json_length).encode()),))


_INFER_OPERATION = {
    "summary": "Open Inference Protocol inference",
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["inputs"],
                   "properties": {"id": {"type": ["string", "null"]}, "parameters": {"type": ["object", "null"]},
                                  "inputs": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                                  "outputs": {"type": ["array", "null"], "items": {"type": "object"}}}},
        "example": {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64",
                                "data": [5.1, 3.5, 1.4, 0.2]}]}}}},
    "responses": {"200": {"description": "the outputs (JSON, or binary tensors after a JSON header)", "content": {
        "application/json": {"schema": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object"}}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    "tags": ["open-inference-protocol"],
}
fastpath.register(fastpath.Route("/v2/models/", "/infer", infer, "/v2/models/{name}/infer",
                                 {"operationId": "v2_model_infer", **_INFER_OPERATION}))
fastpath.register(fastpath.Route("/v2/models/", "/infer", infer, "/v2/models/{name}/versions/{version}/infer",
                                 {"operationId": "v2_model_version_infer", **_INFER_OPERATION}))
