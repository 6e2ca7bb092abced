"""Dataiku API node admin API under /admin/api: both the official client's paths and the public spec's.

Bodies are read as JSON whatever the Content-Type (the official client sends none, and no body at all for an empty
object). Admin calls need an admin key: a modelport admin token, or a key made through `keys`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from modelport.api import errors as error_faces
from modelport.api import fastpath, gate, openapi
from modelport.api.examples import DATAIKU_BUNDLE_ZIP
from modelport.api.bodies import parse_json
from modelport.api.dataiku.errors import (
    ADMIN_PREFIX,
    EXAMPLE_BUNDLE_PATH,
    EXAMPLE_GENERATION,
    credential,
    normalise_path,
    render,
)
from modelport.api.responses import JSON
from modelport.domain.entities import Principal, TokenInfo
from modelport.domain.errors import Forbidden, InvalidInput, NotFound, UnsupportedMediaType
from modelport.services.dataiku import DataikuServices

error_faces.register_face(ADMIN_PREFIX, render)
fastpath.register_rewrite(normalise_path)


async def require_admin_key(request: Request, _: Any = openapi.CREDENTIALS) -> Principal:
    auth = request.app.state.platform.auth
    key = credential(request.headers.get("authorization", ""))
    principal = auth.cached(key) or await run_in_threadpool(auth.authenticate, key)
    if not principal.is_admin:
        raise Forbidden("the admin API needs an admin key")
    return principal


ARRAY = openapi.answers({"type": "array", "items": {"type": "object"}})
NO_CONTENT = openapi.answers(None, status=204)
# Objects of their own for the operations that end, disable or add to one, so that `iris` keeps serving its newest
# generation, v1 (switching to it again is instant); stand-ins for server-made keys, see errors.py.
RETIRED_SERVICE, IDLE_SERVICE, RETIRED_GENERATION = "retired", "idle", "v0"
EXAMPLE_ADMIN_KEY_ID = "00000000-0000-4000-8000-00000000d002"
EXAMPLE_ADMIN_KEY_VALUE = "mp_00000000000000000000000000d003"
EXAMPLE_RETIRED_SERVICE_KEY_ID = "00000000-0000-4000-8000-00000000d004"

router = APIRouter(prefix=ADMIN_PREFIX, dependencies=[Depends(require_admin_key)], tags=["dataiku"])
gate.register(ADMIN_PREFIX, gate.Policy(require_admin_key))
gate.register(f"{ADMIN_PREFIX}/services/", gate.Policy(require_admin_key, large=True), suffix="/generations")
public = APIRouter(prefix=ADMIN_PREFIX, tags=["dataiku"])


def _services(request: Request) -> DataikuServices:
    return request.app.state.platform.dataiku


async def _body(request: Request) -> Any:
    return parse_json(await request.body())


# -- services -----------------------------------------------------------------------------------------------------------

@router.get("/services", operation_id="dataiku_list_services", openapi_extra=ARRAY)
async def list_services(request: Request) -> JSON:
    return JSON(await run_in_threadpool(_services(request).list_services))


@router.post("/services", operation_id="dataiku_create_service", openapi_extra=openapi.body(
    {"type": "object", "required": ["serviceId"], "properties": {"serviceId": {"type": "string"}}},
    {"serviceId": "scratch"}))
async def create_service(request: Request) -> JSON:
    """{"serviceId": "..."} (the official client's create_service)."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be an object with serviceId", field="serviceId")
    return JSON(await run_in_threadpool(_services(request).create_service, body.get("serviceId")))


@router.get("/services/{service_id}", operation_id="dataiku_get_service")
async def get_service(service_id: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_services(request).get_service, service_id))


@router.delete("/services/{service_id}", operation_id="dataiku_delete_service", status_code=204,
                openapi_extra=openapi.examples(service_id=RETIRED_SERVICE))
async def delete_service(service_id: str, request: Request) -> Response:
    await _services(request).delete_service(service_id)
    return Response(status_code=204)


async def _enable(service_id: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_services(request).set_enabled, service_id, True))


async def _disable(service_id: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_services(request).set_enabled, service_id, False))


_IDLE = openapi.examples(service_id=IDLE_SERVICE)
router.add_api_route("/services/{service_id}/actions/enable", _enable, methods=["POST"],
                     operation_id="dataiku_enable_service", openapi_extra=_IDLE)
router.add_api_route("/services/{service_id}/enable", _enable, methods=["POST"],
                     operation_id="dataiku_enable_service_spec", openapi_extra=_IDLE)
router.add_api_route("/services/{service_id}/actions/disable", _disable, methods=["POST"],
                     operation_id="dataiku_disable_service", openapi_extra=_IDLE)
router.add_api_route("/services/{service_id}/disable", _disable, methods=["POST"],
                     operation_id="dataiku_disable_service_spec", openapi_extra=_IDLE)


@router.post("/services/{service_id}/actions/switchTo/{generation}", operation_id="dataiku_switch_to")
async def switch_to(service_id: str, generation: str, request: Request) -> JSON:
    """All traffic to one generation, preloading it first if needed; the previous one drains and stops."""
    return JSON(await _services(request).switch(service_id, generation))


@router.post("/services/{service_id}/actions/switchToNewest", operation_id="dataiku_switch_to_newest")
async def switch_to_newest(service_id: str, request: Request) -> JSON:
    return JSON(await _services(request).switch(service_id, None))


@router.post("/services/{service_id}/actions/setMapping", operation_id="dataiku_set_mapping", openapi_extra=openapi.body(
    {"type": "object", "required": ["entries"], "properties": {
        "entries": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["generation", "proba"],
                    "properties": {"generation": {"type": "string"}, "proba": {"type": "number"}}}},
        "hashBased": {"type": "boolean"}}},
    {"entries": [{"generation": EXAMPLE_GENERATION, "proba": 1.0}], "hashBased": False}))
async def set_mapping(service_id: str, request: Request) -> JSON:
    """{"entries": [{"generation", "proba"}], "hashBased": false}; probabilities sum to 1; enables the service."""
    return JSON(await _services(request).set_mapping(service_id, await _body(request)))


# -- generations --------------------------------------------------------------------------------------------------------

@router.get("/services/{service_id}/generations", operation_id="dataiku_list_generations")
async def list_generations(service_id: str, request: Request) -> JSON:
    """An object, {"generations": [...]}: the official client indexes the reply by that key."""
    return JSON({"generations": await run_in_threadpool(_services(request).list_generations, service_id)})


@router.post("/services/{service_id}/generations/actions/importFromArchive",
             operation_id="dataiku_import_from_archive", openapi_extra=openapi.merge(
                 openapi.query("filePath", {"type": "string"}, EXAMPLE_BUNDLE_PATH, required=True,
                               description="an absolute path inside MODELPORT_DATAIKU_IMPORT_ROOTS"),
                 openapi.examples(service_id=IDLE_SERVICE)))
async def import_from_archive(service_id: str, request: Request) -> JSON:
    """`?filePath=` names a bundle on the server, inside the configured import folders (403 otherwise)."""
    services = _services(request)
    path = await run_in_threadpool(services.resolve_import_path, request.query_params.get("filePath"))
    return JSON(await run_in_threadpool(services.import_generation, service_id, path))


@router.post("/services/{service_id}/generations", operation_id="dataiku_import_generation", openapi_extra=openapi.merge(
    openapi.body({"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}},
                 {"file": DATAIKU_BUNDLE_ZIP}, media_type="multipart/form-data"),
    openapi.examples(service_id=IDLE_SERVICE)))
async def import_generation(service_id: str, request: Request) -> JSON:
    """Multipart upload, the bundle in the part `file`; answers {"generationId", "active", "createdOn", ...}."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("import a bundle as multipart/form-data with the ZIP in the part 'file'")
    try:
        form = await request.form(max_files=1, max_fields=10)
    except InvalidInput:
        raise
    except Exception as exc:  # the multipart parser's own errors: truncated body, bad boundary, ...
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput("the 'file' part is required and must be a file", field="file")
    try:
        return JSON(await run_in_threadpool(_services(request).import_generation, service_id, file.file))
    finally:
        await file.close()


@router.get("/services/{service_id}/generations/{generation}", operation_id="dataiku_get_generation")
async def get_generation(service_id: str, generation: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_services(request).get_generation, service_id, generation))


@router.delete("/services/{service_id}/generations/{generation}", operation_id="dataiku_delete_generation",
               status_code=204, openapi_extra=openapi.examples(generation=RETIRED_GENERATION))
async def delete_generation(service_id: str, generation: str, request: Request) -> Response:
    """Refused (409) while the generation takes traffic; otherwise its replicas stop."""
    await _services(request).delete_generation(service_id, generation)
    return Response(status_code=204)


@router.post("/services/{service_id}/generations/{generation}/preload", operation_id="dataiku_preload_generation")
async def preload_generation(service_id: str, generation: str, request: Request) -> JSON:
    """Start the generation's replicas, warm, without traffic; answers once they are ready."""
    return JSON(await _services(request).preload(service_id, generation))


@router.post("/services/{service_id}/generations/{generation}/switch", operation_id="dataiku_switch_generation")
async def switch_generation(service_id: str, generation: str, request: Request) -> JSON:
    return JSON(await _services(request).switch(service_id, generation))


# -- keys ---------------------------------------------------------------------------------------------------------------

def _key_json(info: TokenInfo, value: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": info.id, "label": info.name, "createdOn": int(info.created_at.timestamp() * 1000)}
    if info.kind == "service":
        body["allowedServices"] = list(info.services)
    if value is not None:
        body["key"] = value  # shown once: modelport keeps only a hash
    return body


def _label(body: Any, default: str) -> str:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise InvalidInput("label must be a string", field="label")
    return label or default


@router.get("/keys", operation_id="dataiku_list_admin_keys", openapi_extra=ARRAY)
async def list_admin_keys(request: Request) -> JSON:
    auth = request.app.state.platform.auth
    return JSON([_key_json(k) for k in await run_in_threadpool(auth.list, "admin")])


@router.post("/keys", operation_id="dataiku_create_admin_key", openapi_extra=openapi.body(
    {"type": "object", "properties": {"label": {"type": ["string", "null"]},
                                      "description": {"type": ["string", "null"]}}},
    {"label": "ci", "description": "the CI's admin key"}, required=False))
async def create_admin_key(request: Request) -> JSON:
    """{label, description, createdBy, expiry}: an admin key (a modelport admin token)."""
    body = await _body(request)
    info, value = await run_in_threadpool(request.app.state.platform.auth.create, _label(body, "dataiku-admin-key"),
                                          "admin")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidInput("description must be a string", field="description")
    return JSON(_key_json(info, value) | {"description": description})


async def _revoke(request: Request, info: TokenInfo | None, kind: str) -> Response:
    if info is None or info.kind != kind or info.revoked_at is not None:
        raise NotFound("key not found", field="key")
    await run_in_threadpool(request.app.state.platform.auth.revoke, info.id)
    return Response(status_code=204)


@router.delete("/keys/{key}/key", operation_id="dataiku_delete_admin_key_by_id", status_code=204,
                openapi_extra=openapi.examples(key=EXAMPLE_ADMIN_KEY_ID))
async def delete_admin_key_by_id(key: str, request: Request) -> Response:
    auth = request.app.state.platform.auth
    return await _revoke(request, await run_in_threadpool(_by_id, auth, key), "admin")


@router.delete("/keys/{key}", operation_id="dataiku_delete_admin_key", status_code=204,
                openapi_extra=openapi.examples(key=EXAMPLE_ADMIN_KEY_VALUE))
async def delete_admin_key(key: str, request: Request) -> Response:
    """By the key's value (the official client's delete_key)."""
    return await _revoke(request, await run_in_threadpool(request.app.state.platform.auth.find, key), "admin")


def _by_id(auth: Any, key_id: str) -> TokenInfo | None:
    try:
        return auth.get(key_id)
    except NotFound:
        return None


@router.get("/auth/keys", operation_id="dataiku_list_service_keys", openapi_extra=ARRAY)
async def list_service_keys(request: Request) -> JSON:
    auth = request.app.state.platform.auth
    return JSON([_key_json(k) for k in await run_in_threadpool(auth.list, "service")])


@router.post("/auth/keys", operation_id="dataiku_create_service_key", openapi_extra=openapi.body(
    {"type": "object", "properties": {"label": {"type": ["string", "null"]},
                                      "allowedServices": {"type": ["array", "null"], "items": {"type": "string"}}}},
    {"label": "app", "allowedServices": ["iris"]}, required=False))
async def create_service_key(request: Request) -> JSON:
    """{label, allowedServices}: a key for the prediction API of those services (all when empty)."""
    body = await _body(request)
    label = _label(body, "dataiku-service-key")
    allowed = body.get("allowedServices")
    if allowed is None:
        allowed = []
    if not isinstance(allowed, list) or not all(isinstance(s, str) and 0 < len(s) <= 64 for s in allowed):
        raise InvalidInput("allowedServices must be a list of service ids", field="allowedServices")
    info, value = await run_in_threadpool(request.app.state.platform.auth.create, label, "service",
                                          services=tuple(allowed))
    return JSON(_key_json(info, value))


@router.get("/auth/keys/{key_id}", operation_id="dataiku_get_service_key")
async def get_service_key(key_id: str, request: Request) -> JSON:
    info = await run_in_threadpool(_by_id, request.app.state.platform.auth, key_id)
    if info is None or info.kind != "service" or info.revoked_at is not None:
        raise NotFound(f"key {key_id!r} not found", field="keyId")
    return JSON(_key_json(info))


@router.delete("/auth/keys/{key_id}", operation_id="dataiku_delete_service_key", status_code=204,
                openapi_extra=openapi.examples(key_id=EXAMPLE_RETIRED_SERVICE_KEY_ID))
async def delete_service_key(key_id: str, request: Request) -> Response:
    return await _revoke(request, await run_in_threadpool(_by_id, request.app.state.platform.auth, key_id), "service")


# -- observability ------------------------------------------------------------------------------------------------------

@router.get("/metrics", operation_id="dataiku_metrics")
async def metrics(request: Request) -> JSON:
    return JSON(await run_in_threadpool(_services(request).metrics))


@public.get("/health", operation_id="dataiku_health")
async def health() -> JSON:
    """Answers without authentication, like /healthz."""
    return JSON({"status": "HEALTHY", "details": {}})
