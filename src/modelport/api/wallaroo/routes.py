"""Wallaroo control plane: workspaces, models and model versions, pipelines. Thin: parse, call a service, render."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from modelport.api import errors as error_faces
from modelport.api import gate, openapi
from modelport.api.bodies import documented, json_body, parse_json, validate
from modelport.api.responses import JSON
from modelport.api.security import require_principal
from modelport.api.wallaroo import schemas
from modelport.api.wallaroo.errors import render as render_error
from modelport.domain.entities import ModelInfo, ModelVersionInfo, PipelineInfo, PipelineVersionInfo, Principal
from modelport.domain.errors import InvalidInput, UnsupportedMediaType
from modelport.domain.models import parse_framework
from modelport.services.registry import ModelUpload
from modelport.services.users import WALLAROO_ROLES

PREFIX = "/v1/api"
ARRAY = {"type": "array", "items": {"type": "object"}}


def multipart(schema: type[schemas.Body], what: str, file: str = "not a model: loading it fails, the upload does not"
              ) -> dict[str, Any]:
    """The OpenAPI request body of an upload: a JSON `metadata` part and the `file` part (with examples)."""
    example = (schema.model_config.get("json_schema_extra") or {}).get("examples", [{}])[0]  # type: ignore[union-attr]
    return openapi.body({"type": "object", "required": ["metadata", "file"], "properties": {
        "metadata": {"type": "string", "description": f"JSON: {schema.__name__}",
                     "contentMediaType": "application/json"},
        "file": {"type": "string", "format": "binary", "description": what}}},
        {"metadata": orjson.dumps(example).decode(), "file": file},
        media_type="multipart/form-data")
T = TypeVar("T", bound=schemas.Body)
router = APIRouter(prefix=PREFIX, dependencies=[Depends(require_principal)], tags=["wallaroo"])
public = APIRouter(prefix=PREFIX, tags=["wallaroo"])


def install(app: FastAPI) -> None:
    error_faces.register_face(PREFIX, render_error)
    for upload in ("/models/upload", "/orchestration/upload"):  # (upload_and_convert too: a prefix)
        gate.register(PREFIX + upload, gate.Policy(require_principal, large=True))
    app.include_router(public)
    app.include_router(router)


def _platform(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.platform


# -- rendering ---------------------------------------------------------------------------------------------------

def model_version_json(v: ModelVersionInfo) -> dict[str, Any]:
    return {
        "id": v.id, "models_pk_id": v.model_pk, "model_id": v.model_name, "model_version": v.version, "sha": v.sha,
        "file_name": v.file_name, "image_path": None, "status": v.status, "reason": v.status_reason,
        "framework": v.framework, "arch": v.arch, "accel": v.accel, "visibility": v.visibility,
        "owner_id": v.owner_id, "workspace_id": v.workspace_id, "size": v.size,
        "created_at": v.created_at, "updated_at": v.updated_at,
    }


def model_json(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "name": m.name, "workspace_id": m.workspace_id, "owner_id": m.owner_id,
            "created_at": m.created_at, "updated_at": m.updated_at,
            "models": [model_version_json(v) for v in m.versions]}


def pipeline_version_json(v: PipelineVersionInfo) -> dict[str, Any]:
    return {"id": v.id, "version": v.version, "definition": v.definition, "created_at": v.created_at}


def pipeline_json(p: PipelineInfo) -> dict[str, Any]:
    return {"id": p.id, "pipeline_id": p.name, "name": p.name, "workspace_id": p.workspace_id,
            "owner_id": p.owner_id, "created_at": p.created_at, "updated_at": p.updated_at,
            "pipeline_versions": [pipeline_version_json(v) for v in p.versions]}


# -- configuration and workspaces ----------------------------------------------------------------------------------

@public.get("/config", operation_id="wallaroo_get_config")
async def get_config() -> JSON:
    """Discovery document the Wallaroo SDK reads before authenticating."""
    return JSON({"default_arch": "x86"})


@router.post("/workspaces/create", operation_id="wallaroo_create_workspace", openapi_extra=documented(schemas.CreateWorkspace))
async def create_workspace(request: Request, body: schemas.CreateWorkspace = json_body(schemas.CreateWorkspace),
                           principal: Principal = Depends(require_principal)) -> JSON:
    info = await run_in_threadpool(_platform(request).registry.create_workspace, body.workspace_name, principal.name)
    return JSON({"workspace_id": info.id})


@router.post("/workspaces/list", operation_id="wallaroo_list_workspaces", openapi_extra=documented(schemas.ListWorkspaces))
async def list_workspaces(request: Request, body: schemas.ListWorkspaces = json_body(schemas.ListWorkspaces)) -> JSON:
    spaces = await run_in_threadpool(_platform(request).registry.list_workspaces)
    return JSON({"workspaces": [
        {"id": w.id, "name": w.name, "created_at": w.created_at, "created_by": w.created_by,
         "archived": w.archived, "models": list(w.model_ids), "pipelines": list(w.pipeline_ids)}
        for w in spaces
    ]})


@router.post("/workspaces/add_user", operation_id="wallaroo_workspace_add_user",
             openapi_extra=documented(schemas.AddWorkspaceUser))
async def add_workspace_user(request: Request,
                             body: schemas.AddWorkspaceUser = json_body(schemas.AddWorkspaceUser)) -> JSON:
    """Owners (and admins) add a user, by email, as OWNER or COLLABORATOR (default)."""
    role = WALLAROO_ROLES.get(body.user_type.upper())
    if role is None:
        raise InvalidInput("user_type must be OWNER or COLLABORATOR", field="user_type")
    await run_in_threadpool(_platform(request).users.add_member, body.workspace_id, body.email, role)
    return JSON({})


@router.post("/workspaces/remove_user", operation_id="wallaroo_workspace_remove_user",
             openapi_extra=documented(schemas.RemoveWorkspaceUser))
async def remove_workspace_user(request: Request,
                                body: schemas.RemoveWorkspaceUser = json_body(schemas.RemoveWorkspaceUser)) -> JSON:
    who = body.email or body.user_id
    if not who:
        raise InvalidInput("email is required", field="email")
    removed = await run_in_threadpool(_platform(request).users.remove_member, body.workspace_id, who)
    return JSON({"affected_rows": removed})


@router.post("/workspaces/list_users", operation_id="wallaroo_workspace_list_users",
             openapi_extra=documented(schemas.ListWorkspaceUsers))
async def list_workspace_users(request: Request,
                               body: schemas.ListWorkspaceUsers = json_body(schemas.ListWorkspaceUsers)) -> JSON:
    members = await run_in_threadpool(_platform(request).users.members, body.workspace_id)
    return JSON({"users": [{"user_id": user.id, "email": user.email, "user_type": role.upper()}
                           for user, role in members]})


# -- models ----------------------------------------------------------------------------------------------------------

async def read_upload(request: Request, schema: type[T], what: str) -> tuple[T, UploadFile]:
    """Wallaroo's uploads: multipart with a JSON `metadata` part (validated by `schema`) and a `file` part."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"{what} uploads are multipart/form-data with parts 'metadata' and 'file'")
    try:
        form = await request.form(max_files=2, max_fields=10)
    except InvalidInput:
        raise
    except Exception as exc:  # the multipart parser's own errors: truncated body, bad boundary, ...
        raise InvalidInput(f"malformed multipart body: {exc}") from None
    raw_metadata = form.get("metadata")
    if raw_metadata is None:
        raise InvalidInput("the 'metadata' part is required", field="metadata")
    if isinstance(raw_metadata, UploadFile):
        raw_metadata = (await raw_metadata.read()).decode("utf-8", errors="replace")
    metadata = validate(schema, parse_json(raw_metadata.encode()), "metadata.")
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput("the 'file' part is required and must be a file", field="file")
    return metadata, file


async def _upload(request: Request, principal: Principal, default_framework: str) -> JSON:
    metadata, file = await read_upload(request, schemas.UploadMetadata, "model")
    conversion = metadata.conversion or schemas.Conversion(framework=default_framework)
    upload = ModelUpload(
        workspace_id=metadata.workspace_id, name=metadata.name, framework=parse_framework(conversion.framework),
        file=file.file, file_name=file.filename or metadata.name, visibility=metadata.visibility,
        python_version=conversion.python_version, requirements=conversion.requirements, arch=conversion.arch,
        accel=conversion.accel, framework_config=conversion.framework_config, owner_id=principal.name,
    )
    try:
        info = await run_in_threadpool(_platform(request).registry.upload_model, upload)
    finally:
        await file.close()
    return JSON({"insert_models": {"returning": [{"models": [
        {"id": info.id, "model_id": info.model_name, "models_pk_id": info.model_pk,
         "model_version": info.version, "sha": info.sha, "file_name": info.file_name, "status": info.status}
    ]}]}})


@router.post("/models/upload", operation_id="wallaroo_upload_model",
             openapi_extra=multipart(schemas.UploadMetadata, "the model file"))
async def upload_model(request: Request, principal: Principal = Depends(require_principal)) -> JSON:
    """Multipart `metadata` (JSON) + `file`; framework defaults to onnx."""
    return await _upload(request, principal, "onnx")


@router.post("/models/upload_and_convert", operation_id="wallaroo_upload_and_convert_model",
             openapi_extra=multipart(schemas.UploadMetadata, "the model file"))
async def upload_and_convert(request: Request, principal: Principal = Depends(require_principal)) -> JSON:
    """Multipart `metadata` (JSON, with conversion.framework) + `file`."""
    return await _upload(request, principal, "onnx")


@router.post("/models/list", operation_id="wallaroo_list_models", openapi_extra=documented(schemas.ListModels))
async def list_models(request: Request, body: schemas.ListModels = json_body(schemas.ListModels)) -> JSON:
    models = await run_in_threadpool(_platform(request).registry.list_models, body.workspace_id)
    return JSON({"models": [model_json(m) for m in models]})


@router.post("/models/list_versions", operation_id="wallaroo_list_model_versions", openapi_extra=openapi.merge(documented(schemas.ListVersions), openapi.answers(ARRAY)))
async def list_versions(request: Request, body: schemas.ListVersions = json_body(schemas.ListVersions)) -> JSON:
    versions = await run_in_threadpool(_platform(request).registry.list_versions, body.model_id, body.models_pk_id)
    return JSON([model_version_json(v) for v in versions])


@router.post("/models/get_version_by_id", operation_id="wallaroo_get_model_version", openapi_extra=documented(schemas.VersionById))
async def get_version_by_id(request: Request, body: schemas.VersionById = json_body(schemas.VersionById)) -> JSON:
    v = await run_in_threadpool(_platform(request).registry.get_version, body.model_version_id)
    return JSON({"model_version": {
        "model_version": {**model_version_json(v), "signature": v.signature},
        "config": {"id": v.id, "model_version_id": v.id, "runtime": v.framework, "tensor_fields": None,
                   "filter_threshold": None, "batch_config": None},
    }})


# -- pipelines -------------------------------------------------------------------------------------------------------

@router.post("/pipelines/create", operation_id="wallaroo_create_pipeline", openapi_extra=documented(schemas.CreatePipeline))
async def create_pipeline(request: Request, body: schemas.CreatePipeline = json_body(schemas.CreatePipeline),
                          principal: Principal = Depends(require_principal)) -> JSON:
    _, version = await run_in_threadpool(
        _platform(request).pipelines.create, body.workspace_id, body.pipeline_id, body.definition, principal.name)
    return JSON({"pipeline_pk_id": version.pipeline_pk, "pipeline_variant_pk_id": version.id,
                 "pipeline_variant_version": version.version})


@router.post("/pipelines/get_pipeline_by_name", operation_id="wallaroo_get_pipeline_by_name", openapi_extra=documented(schemas.PipelineByName))
async def get_pipeline_by_name(request: Request, body: schemas.PipelineByName = json_body(schemas.PipelineByName)) -> JSON:
    info = await run_in_threadpool(_platform(request).pipelines.get_by_name, body.pipeline_name, body.workspace_id)
    return JSON({"pipeline": pipeline_json(info)})


@router.post("/pipelines/list", operation_id="wallaroo_list_pipelines", openapi_extra=documented(schemas.ListPipelines))
async def list_pipelines(request: Request, body: schemas.ListPipelines = json_body(schemas.ListPipelines)) -> JSON:
    infos = await run_in_threadpool(_platform(request).pipelines.list, body.workspace_id)
    return JSON({"pipelines": [pipeline_json(p) for p in infos]})


@router.post("/pipelines/copy", operation_id="wallaroo_copy_pipeline", openapi_extra=documented(schemas.CopyPipeline))
async def copy_pipeline(request: Request, body: schemas.CopyPipeline = json_body(schemas.CopyPipeline),
                        principal: Principal = Depends(require_principal)) -> JSON:
    if body.deploy is not None and body.deploy != body.name:
        raise InvalidInput("deploy must be the new pipeline's name (a deployment is named after its pipeline)",
                           field="deploy")
    platform = _platform(request)
    if body.deploy is not None:
        source = await run_in_threadpool(platform.pipelines.get, body.source_pipeline)
        platform.deployments.check_deployable(source.latest.definition, body.engine_config)
    _, version = await run_in_threadpool(
        platform.pipelines.copy, body.source_pipeline, body.name, body.workspace_id, body.pipeline_version,
        principal.name)
    deployment = None
    if body.deploy is not None:
        spec = await platform.deployments.deploy(pipeline_pk=version.pipeline_pk, pipeline_version_pk=version.id,
                                                 name=body.deploy, engine_config=body.engine_config)
        deployment = {"id": spec.id, "deploy_id": spec.name, "name": spec.route}
    return JSON({"pipeline_pk_id": version.pipeline_pk, "pipeline_variant_pk_id": version.id,
                 "pipeline_version": body.pipeline_version and version.version, "deployment": deployment})
