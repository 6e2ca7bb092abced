"""Craft AI routes, as the official craft-ai-sdk calls them (`environment_url` and `control_url` both point here).

Long polls: `?wait_for_completion=true` holds a request for a few seconds while something is still being created
or run (the SDK re-asks at once, without sleeping); outputs that are not ready yet answer 307 (the SDK re-asks).
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, RedirectResponse, Response

from modelport.api import errors as error_faces
from modelport.api import gate
from modelport.api.bodies import parse_json
from modelport.services.access import act_as
from modelport.api import openapi
from modelport.api.examples import CRAFTAI_CODE_TAR
from modelport.api.craftai.security import (
    EXAMPLE_ENDPOINT,
    EXAMPLE_ENDPOINT_EXECUTION,
    EXAMPLE_ENDPOINT_TOKEN,
    EXAMPLE_EXPIRES,
    EXAMPLE_PIPELINE,
    EXAMPLE_REFRESH_TOKEN,
    EXAMPLE_RETIRED_EXECUTION,
    EXAMPLE_SIGNATURE,
    PREFIXES,
    render,
    require_user,
)
from modelport.api.responses import JSON
from modelport.domain.entities import Principal
from modelport.domain.errors import Forbidden, InvalidInput, NotFound, Unauthenticated, UnsupportedMediaType
from modelport.services.craftai import FINISHED, CraftAiService

for _prefix in PREFIXES:
    error_faces.register_face(_prefix, render)

LONG_POLL_S = 10.0
API = "/api/v1"
HIDDEN = "********"  # what a set environment variable shows instead of its value
router = APIRouter(prefix=API, dependencies=[Depends(require_user)], tags=["craftai"])
public = APIRouter(tags=["craftai"])
gate.register(f"{API}/", gate.Policy(require_user))
gate.register(f"{API}/pipelines", gate.Policy(require_user, large=True))  # code folders, file inputs
gate.register(f"{API}/auth/refresh", gate.Policy(None), exact=True)  # the refresh token is in the body


ARRAY = openapi.answers({"type": "array"})
WAIT = openapi.query("wait_for_completion", {"type": "string"}, "true",
                     description="`true` holds the request while it is pending; any other value does not")
DEPLOYMENT = openapi.examples(name=EXAMPLE_ENDPOINT)
LOGS_BODY = openapi.body({"type": "object", "properties": {
    "from": {"type": ["integer", "null"]}, "to": {"type": ["integer", "null"]}, "limit": {"type": ["integer", "null"]}}},
    {"limit": 100}, required=False)
MAYBE = openapi.merge(openapi.answers({"type": "object"}), openapi.answers(None, status=204,
                                                                           description="Nothing yet"))
DEPLOYMENT_BODY = {"type": "object", "required": ["name", "pipeline_name"], "properties": {
    "name": {"type": "string"}, "pipeline_name": {"type": "string"}, "mode": {"enum": ["elastic", "low_latency"]},
    "description": {"type": "string"}, "execution_timeout_s": {"type": "integer", "minimum": 1},
    "inputs_mapping": {"type": "array", "items": {"type": "object"}},
    "outputs_mapping": {"type": "array", "items": {"type": "object"}}}}


def _service(request: Request) -> CraftAiService:
    return request.app.state.platform.craftai


def _wait(request: Request) -> bool:
    return request.query_params.get("wait_for_completion", "").lower() == "true"


def unflatten(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Bracket-flattened form fields (`inputs[0][name]`) back into nested objects and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        if not parts or len(parts) > 8:
            raise InvalidInput(f"form field {key!r} is not understood", field=key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            container_key: Any = int(part) if part.isdigit() and isinstance(node, list) else part
            if isinstance(node, list):
                if not isinstance(container_key, int) or container_key > 10_000:
                    raise InvalidInput(f"form field {key!r} is not understood", field=key)
                while len(node) <= container_key:
                    node.append(None)
            if last:
                node[container_key] = value
            else:
                child = node[container_key] if (isinstance(node, list) or container_key in node) else None
                if child is None:
                    child = [] if parts[i + 1].isdigit() else {}
                    node[container_key] = child
                node = child
    return root


async def _form(request: Request, *, max_files: int = 32) -> tuple[list[tuple[str, str]], dict[str, UploadFile]]:
    content_type = request.headers.get("content-type", "").lower()
    if not (content_type.startswith("multipart/form-data") or
            content_type.startswith("application/x-www-form-urlencoded")):
        raise UnsupportedMediaType("send multipart/form-data")
    try:
        form = await request.form(max_files=max_files, max_fields=2000)
    except Exception as exc:  # the multipart parser's own errors
        raise InvalidInput(f"malformed form body: {exc}") from None
    fields, files = [], {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files[key] = value
        else:
            fields.append((key, value))
    return fields, files


def _json_field(value: str | None, field: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{field} is not valid JSON", field=field) from None


# -- auth and project ---------------------------------------------------------------------------------------------------

@public.post(f"{API}/auth/refresh", operation_id="craftai_refresh_token", openapi_extra=openapi.merge(
    openapi.body({"type": "object", "required": ["refresh_token"], "properties": {"refresh_token": {"type": "string"}}},
                 {"refresh_token": EXAMPLE_REFRESH_TOKEN}),
    {"x-errors": [401]}))
async def refresh(request: Request) -> JSON:
    """{"refresh_token": <a modelport token>} -> {"access_token": <signed, expiring JWT>}."""
    body = parse_json(await request.body())
    token = body.get("refresh_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise Unauthenticated("refresh_token is required")
    platform = request.app.state.platform
    principal = await run_in_threadpool(platform.auth.authenticate, token)
    if principal.is_service_key:
        raise Forbidden("a service key may only call the prediction API of its services")
    return JSON({"access_token": platform.craftai_tokens.issue(principal)})


@router.get("/users/me", operation_id="craftai_who_am_i")
async def who_am_i(principal: Principal = Depends(require_user)) -> JSON:
    return JSON({"id": principal.token_id, "name": principal.name, "email": None})


@router.get("/project-information", operation_id="craftai_project_information")
async def project_information() -> JSON:
    """What the SDK packs when a pipeline's container_config does not say: the whole local folder."""
    return JSON({"included_folders": ["."], "requirements_path": None, "language": "python:3.11"})


# -- pipelines ----------------------------------------------------------------------------------------------------------

@router.post("/pipelines", operation_id="craftai_create_pipeline", openapi_extra=openapi.body(
    {"type": "object", "required": ["pipeline_name", "function_path", "function_name", "step_file"], "properties": {
        "pipeline_name": {"type": "string"}, "function_path": {"type": "string"}, "function_name": {"type": "string"},
        "step_file": {"type": "string", "format": "binary", "description": "the code folder as a tar(.gz)"}}},
    {"pipeline_name": "scratch-pipeline", "function_path": "src/double.py", "function_name": "double",
     "step_file": CRAFTAI_CODE_TAR}, media_type="multipart/form-data"))
async def create_pipeline(request: Request, principal: Principal = Depends(require_user)) -> JSON:
    """Multipart: bracket-flattened parameters and the code folder as the tar.gz part `step_file`."""
    fields, files = await _form(request, max_files=1)
    service = _service(request)
    package = files.get("step_file")
    try:
        created = await run_in_threadpool(service.create_pipeline, unflatten(fields),
                                          package.file if package else None, principal.name)
    finally:
        if package is not None:
            await package.close()
    request.app.state.platform.background(service.prepare_pipeline(created["pipeline_name"]))
    return JSON(created)


@router.get("/pipelines", operation_id="craftai_list_pipelines", openapi_extra=ARRAY)
async def list_pipelines(request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).list_pipelines))


@router.get("/pipelines/{name}", operation_id="craftai_get_pipeline", openapi_extra=WAIT)
async def get_pipeline(name: str, request: Request) -> JSON:
    service = _service(request)
    if _wait(request) and await run_in_threadpool(service.pipeline_status, name) == "creation_pending":
        await service.wait_for_change(f"pipeline:{name}", LONG_POLL_S)
    return JSON(await run_in_threadpool(service.get_pipeline, name))


@router.delete("/pipelines/{name}", operation_id="craftai_delete_pipeline", openapi_extra=openapi.merge(
    openapi.examples(name="retired-pipeline"), openapi.query("force_deployments_deletion", {"type": "string"},
                                                              description="`true` deletes its deployments too")))
async def delete_pipeline(name: str, request: Request) -> JSON:
    force = request.query_params.get("force_deployments_deletion", "false").lower() == "true"
    return JSON(await _service(request).delete_pipeline(name, force))


def _maybe(value: Any) -> Response:
    return JSON(value) if value is not None else Response(status_code=204)


@router.get("/pipelines/{name}/executions/latest", operation_id="craftai_latest_pipeline_execution",
            openapi_extra=MAYBE)
async def latest_pipeline_execution(name: str, request: Request) -> Response:
    return _maybe(await run_in_threadpool(lambda: _service(request).latest_execution(pipeline_name=name)))


@router.get("/pipelines/{name}/executions", operation_id="craftai_list_pipeline_executions", openapi_extra=ARRAY)
async def list_pipeline_executions(name: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).list_executions, name))


@router.post("/pipelines/{name}/logs", operation_id="craftai_pipeline_logs", openapi_extra=ARRAY)
async def pipeline_logs(name: str, request: Request) -> JSON:
    """The pipeline's creation log: why it failed, when it did."""
    pipeline = await run_in_threadpool(_service(request).get_pipeline, name)
    reason = pipeline["creation_info"].get("failure_reason")
    return JSON([{"timestamp": pipeline["creation_info"]["created_at"], "message": reason}] if reason else [])


@router.post("/pipelines/{name}/run", operation_id="craftai_run_pipeline", openapi_extra=openapi.body(
    {"type": "object", "properties": {"json_inputs": {"type": "string", "contentMediaType": "application/json"},
                                      "inputs_mapping": {"type": "string"}, "outputs_mapping": {"type": "string"}}},
    {"json_inputs": '{"x": 2}'}, media_type="multipart/form-data"))
async def run_pipeline(name: str, request: Request, principal: Principal = Depends(require_user)) -> JSON:
    """Form fields json_inputs, inputs_mapping, outputs_mapping (JSON strings), plus file inputs as parts."""
    fields, files = await _form(request)
    values = dict(fields)
    given = _json_field(values.get("json_inputs"), "json_inputs") or {}
    if not isinstance(given, dict):
        raise InvalidInput("json_inputs must be a JSON object", field="json_inputs")
    inputs_mapping = _json_field(values.get("inputs_mapping"), "inputs_mapping") or None
    outputs_mapping = _json_field(values.get("outputs_mapping"), "outputs_mapping") or None
    data = {key: await upload.read() for key, upload in files.items()}
    execution_id = await run_in_threadpool(
        lambda: _service(request).start_execution(pipeline_name=name, deployment_name=None, given=given, files=data,
                                                  creator=principal.name, inputs_mapping=inputs_mapping,
                                                  outputs_mapping=outputs_mapping))
    return JSON({"execution_id": execution_id})


# -- executions ---------------------------------------------------------------------------------------------------------

@router.get("/executions/{execution_id}", operation_id="craftai_get_execution")
async def get_execution(execution_id: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).get_execution, execution_id))


@router.delete("/executions/{execution_id}", operation_id="craftai_delete_execution",
               openapi_extra=openapi.examples(execution_id=EXAMPLE_RETIRED_EXECUTION))
async def delete_execution(execution_id: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).delete_execution, execution_id))


@router.get("/executions/{execution_id}/outputs", operation_id="craftai_execution_outputs", openapi_extra=openapi.merge(
    WAIT, openapi.answers(None, status=307, description="Still running: ask again",
                          headers={"Location": {"schema": {"type": "string"}}})))
async def execution_outputs(execution_id: str, request: Request) -> Response:
    """307 back to itself while the execution runs (after holding the request a while); then its outputs."""
    service = _service(request)
    execution = await service.wait_for_execution(execution_id, LONG_POLL_S if _wait(request) else 0)
    if execution["status"] not in FINISHED:
        return RedirectResponse(str(request.url), status_code=307)
    if execution["status"] == "Failed":
        return JSON({"message": f"execution {execution_id} failed: {execution['error']}", "name": "ExecutionFailed",
                     "request_id": None, "additional_data": {"execution_id": execution_id}}, status_code=500)
    return JSON({"outputs": execution["outputs"]})


@router.get("/executions/{execution_id}/outputs/{output_name}", operation_id="craftai_execution_output_file",
            openapi_extra=openapi.answers({"type": "string", "format": "binary"},
                                          media_type="application/octet-stream"))
async def execution_output_file(execution_id: str, output_name: str, request: Request) -> FileResponse:
    path = await run_in_threadpool(_service(request).execution_output_file, execution_id, output_name)
    return FileResponse(path, media_type="application/octet-stream")


@router.post("/executions/{execution_id}/logs", operation_id="craftai_execution_logs",
             openapi_extra=openapi.merge(LOGS_BODY, ARRAY))
async def execution_logs(execution_id: str, request: Request) -> JSON:
    """{from, to, limit} (epoch milliseconds) -> [[{timestamp, message, stream}, ...]]."""
    body = parse_json(await request.body())
    return JSON(await run_in_threadpool(_service(request).execution_logs, execution_id, body))


# -- deployments --------------------------------------------------------------------------------------------------------

async def _create(request: Request, rule: str, principal: Principal) -> JSON:
    service = _service(request)
    deployment = await run_in_threadpool(service.create_deployment, parse_json(await request.body()), rule,
                                         principal.name)
    if deployment["mode"] == "low_latency":
        request.app.state.platform.background(service.start_warm(deployment["name"]))
    return JSON(deployment)


@router.post("/endpoints", operation_id="craftai_create_endpoint_deployment", openapi_extra=openapi.body(
    DEPLOYMENT_BODY, {"name": "scratch-endpoint", "pipeline_name": EXAMPLE_PIPELINE}))
async def create_endpoint(request: Request, principal: Principal = Depends(require_user)) -> JSON:
    return await _create(request, "endpoint", principal)


@router.post("/periodic-deployment", operation_id="craftai_create_periodic_deployment", openapi_extra=openapi.body(
    openapi.merge(DEPLOYMENT_BODY, {"required": ["name", "pipeline_name", "schedule"],
                                    "properties": {"schedule": {"type": "string"}}}),
    {"name": "scratch-periodic", "pipeline_name": EXAMPLE_PIPELINE, "schedule": "0 0 1 1 *",
     "inputs_mapping": [{"pipeline_input_name": "x", "constant_value": 1}],
     "outputs_mapping": [{"pipeline_output_name": "y", "is_null": True},
                         {"pipeline_output_name": "report", "is_null": True}]}))
async def create_periodic(request: Request, principal: Principal = Depends(require_user)) -> JSON:
    return await _create(request, "periodic", principal)


@router.get("/deployments", operation_id="craftai_list_deployments", openapi_extra=ARRAY)
async def list_deployments(request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).list_deployments))


@router.get("/deployments/{name}", operation_id="craftai_get_deployment", openapi_extra=openapi.merge(DEPLOYMENT, WAIT))
async def get_deployment(name: str, request: Request) -> JSON:
    service = _service(request)
    deployment = await run_in_threadpool(service.get_deployment, name)
    if _wait(request) and deployment["status"] == "creation_pending":
        await service.wait_for_change(f"deployment:{name}", LONG_POLL_S)
        deployment = await run_in_threadpool(service.get_deployment, name)
    return JSON(deployment)


@router.patch("/deployments/{name}", operation_id="craftai_update_deployment", openapi_extra=openapi.merge(
    DEPLOYMENT, openapi.body({"type": "object", "properties": {
        "is_enabled": {"type": "boolean"}, "schedule": {"type": ["string", "null"]},  # null: unchanged
        "inputs_mapping": {"type": ["array", "null"], "items": {"type": "object"}},
        "outputs_mapping": {"type": ["array", "null"], "items": {"type": "object"}}}}, {"is_enabled": True},
        required=False)))
async def update_deployment(name: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).update_deployment, name, parse_json(await request.body())))


@router.delete("/deployments/{name}", operation_id="craftai_delete_deployment",
               openapi_extra=openapi.examples(name="retired-endpoint"))
async def delete_deployment(name: str, request: Request) -> JSON:
    return JSON(await _service(request).delete_deployment(name))


@router.get("/deployments/{name}/executions/latest", operation_id="craftai_latest_deployment_execution",
            openapi_extra=openapi.merge(DEPLOYMENT, MAYBE))
async def latest_deployment_execution(name: str, request: Request) -> Response:
    return _maybe(await run_in_threadpool(lambda: _service(request).latest_execution(deployment_name=name)))


@router.post("/deployments/{name}/logs", operation_id="craftai_deployment_logs",
             openapi_extra=openapi.merge(DEPLOYMENT, LOGS_BODY, ARRAY))
async def deployment_logs(name: str, request: Request) -> JSON:
    """The logs of the deployment's latest execution."""
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object of from, to and limit")
    latest = await run_in_threadpool(lambda: _service(request).latest_execution(deployment_name=name))
    if latest is None:
        return JSON([])
    logs = await run_in_threadpool(_service(request).execution_logs, latest["execution_id"], body)
    return JSON(logs[0])


async def _trigger_inputs(request: Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A JSON object of inputs, or multipart with JSON-encoded fields and file parts."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        fields, files = await _form(request)
        given = {key: _json_field(value, key) for key, value in fields}
        return given, {key: await upload.read() for key, upload in files.items()}
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidInput("the inputs must be a JSON object")
    return body, {}


@router.post("/deployments/{name}/executions", operation_id="craftai_trigger_deployment", openapi_extra=openapi.merge(
    DEPLOYMENT, openapi.body({"type": "object"}, {"x": 2})))
async def trigger_deployment(name: str, request: Request, principal: Principal = Depends(require_user)) -> JSON:
    service = _service(request)
    deployment = await run_in_threadpool(service.get_deployment, name)
    given, files = await _trigger_inputs(request)
    execution_id = await run_in_threadpool(
        lambda: service.start_execution(pipeline_name=deployment["pipeline"]["name"], deployment_name=name,
                                        given=given, files=files, creator=principal.name))
    return JSON({"execution_id": execution_id})


@router.post("/endpoints/{name}/generate-new-token", operation_id="craftai_new_endpoint_token",
             openapi_extra=openapi.merge(openapi.examples(name="spare-endpoint"), openapi.body(
                 {"type": "object", "properties": {"endpoint_token": {
                     "type": ["string", "null"], "minLength": 16, "maxLength": 256}}}, {}, required=False)))
async def new_endpoint_token(name: str, request: Request) -> JSON:
    body = parse_json(await request.body())
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    token = body.get("endpoint_token")
    if token is not None and not isinstance(token, str):
        raise InvalidInput("endpoint_token must be a string", field="endpoint_token")
    return JSON(await run_in_threadpool(_service(request).new_endpoint_token, name, token))


# -- environment variables ----------------------------------------------------------------------------------------------

@router.get("/environment-variables", operation_id="craftai_list_environment_variables", openapi_extra=ARRAY)
async def list_variables(request: Request) -> JSON:
    """Which variables are set; their values are write-only (sealed at rest, given only to executions)."""
    names = await run_in_threadpool(_service(request).environment_variable_names)
    return JSON([{"name": name, "value": HIDDEN} for name in names])


@router.put("/environment-variables", operation_id="craftai_set_environment_variable", openapi_extra=openapi.merge(
    openapi.body({"type": "object", "required": ["environment_variables"], "properties": {
        "environment_variables": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}}},
        {"environment_variables": {"IRIS_SCALE": "2"}}),
    openapi.answers(None, status=204)))
async def set_variable(request: Request) -> Response:
    """{"environment_variables": {name: value, ...}}"""
    body = parse_json(await request.body())
    variables = body.get("environment_variables") if isinstance(body, dict) else None
    if not isinstance(variables, dict) or not variables:
        raise InvalidInput("environment_variables must be an object of names to values", field="environment_variables")
    for name, value in variables.items():
        await run_in_threadpool(_service(request).set_environment_variable, name, value)
    return Response(status_code=204)


@router.delete("/environment-variables/{name}", operation_id="craftai_delete_environment_variable",
               openapi_extra=openapi.examples(name="RETIRED_VAR"))
async def delete_variable(name: str, request: Request) -> JSON:
    return JSON(await run_in_threadpool(_service(request).delete_environment_variable, name))


# -- datastore ----------------------------------------------------------------------------------------------------------

@router.get("/data-store/list", operation_id="craftai_list_datastore",
            openapi_extra=openapi.query("folder_path", {"type": "string"}, "iris"))
async def list_datastore(request: Request) -> JSON:
    items = await run_in_threadpool(_service(request).list_datastore, request.query_params.get("folder_path"))
    return JSON({"items": items, "continuation_token": None})


@router.post("/data-store/download", operation_id="craftai_datastore_download_url", openapi_extra=openapi.body(
    {"type": "object", "required": ["path_to_object"], "properties": {"path_to_object": {"type": "string"}}},
    {"path_to_object": "iris/input.json"}, media_type="multipart/form-data"))
async def datastore_download_url(request: Request) -> JSON:
    """A signed URL, valid 15 minutes, from which the object can be fetched without credentials."""
    form = await request.form()
    path = form.get("path_to_object")
    service = _service(request)
    if not isinstance(path, str) or not service.datastore_path(path).is_file():
        raise NotFound(f"no datastore object at {path!r}", field="path_to_object")
    expires = int(time.time()) + 900
    signature = service.sign(request.app.state.platform.craftai_tokens.key.encode(), "get", path, expires)
    url = request.url_for("craftai_datastore_object").include_query_params(path=path, expires=expires,
                                                                           signature=signature)
    return JSON({"signed_url": str(url)})


@public.get(f"{API}/data-store/object", operation_id="craftai_datastore_object", name="craftai_datastore_object",
            openapi_extra=openapi.merge(
                openapi.query("path", {"type": "string"}, "iris/input.json", required=True),
                openapi.query("expires", {"type": "integer"}, EXAMPLE_EXPIRES, required=True),
                openapi.query("signature", {"type": "string"}, EXAMPLE_SIGNATURE, required=True),
                openapi.answers({"type": "string", "format": "binary"}, media_type="application/octet-stream")))
async def datastore_object(request: Request) -> FileResponse:
    """Answers only a valid, unexpired signature from `data-store/download`."""
    import hmac

    query = request.query_params
    path, expires, signature = query.get("path", ""), query.get("expires", ""), query.get("signature", "")
    service = _service(request)
    if not expires.isdigit() or int(expires) < time.time():
        raise Forbidden("the signed URL has expired")
    expected = service.sign(request.app.state.platform.craftai_tokens.key.encode(), "get", path, int(expires))
    if not hmac.compare_digest(expected, signature):
        raise Forbidden("invalid signature")
    file = service.datastore_path(path)
    if not file.is_file():
        raise NotFound(f"no datastore object at {path!r}")
    return FileResponse(file, media_type="application/octet-stream")


# -- endpoint triggers --------------------------------------------------------------------------------------------------

def _endpoint_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme == "EndpointToken" and value.strip() else None


async def _endpoint_caller(request: Request) -> None:
    """The endpoint token checked from the headers, before the inputs (which may hold files) are read."""
    path = request.url.path[len("/endpoints/"):]
    await run_in_threadpool(_service(request).endpoint_for, path, _endpoint_token(request))


gate.register("/endpoints/", gate.Policy(_endpoint_caller, large=True))


@public.post("/endpoints/{path}", operation_id="craftai_trigger_endpoint", openapi_extra=openapi.merge(
    {"security": [{"endpointToken": []}], "x-errors": [401]}, openapi.body({"type": "object"}, {"x": 2})))
async def trigger_endpoint(path: str, request: Request) -> JSON:
    """`Authorization: EndpointToken <token>`; a JSON object of inputs (or multipart with file parts)."""
    service = _service(request)
    name, pipeline, caller = await run_in_threadpool(service.endpoint_for, path, _endpoint_token(request))
    act_as(caller)
    given, files = await _trigger_inputs(request)
    execution_id = await run_in_threadpool(
        lambda: service.start_execution(pipeline_name=pipeline, deployment_name=name, given=given, files=files,
                                        creator=f"endpoint:{path}"))
    return JSON({"execution_id": execution_id})


@public.get("/endpoints/v1/{path}/executions/{execution_id}", operation_id="craftai_endpoint_result",
            openapi_extra=openapi.merge(
                openapi.examples(execution_id=EXAMPLE_ENDPOINT_EXECUTION), {"x-errors": [401]},
                openapi.query("token", {"type": "string"}, EXAMPLE_ENDPOINT_TOKEN, required=True)))
async def endpoint_result(path: str, execution_id: str, request: Request) -> JSON:
    """`?token=<endpoint token>`; waits for the execution, then {"outputs": {name: {"value": v}}}."""
    service = _service(request)
    name, _, caller = await run_in_threadpool(service.endpoint_for, path, request.query_params.get("token"))
    act_as(caller)
    execution = await service.wait_for_execution(execution_id, service.default_timeout_s)
    if execution["deployment_name"] != name:
        raise NotFound(f"execution {execution_id!r} is not one of endpoint {path!r}", field="execution_id")
    if execution["status"] == "Failed":
        return JSON({"message": f"execution {execution_id} failed: {execution['error']}", "name": "ExecutionFailed",
                     "request_id": None, "additional_data": {"execution_id": execution_id}}, status_code=500)
    if execution["status"] not in FINISHED:
        return JSON({"message": f"execution {execution_id} is still {execution['status']}", "name": "NotReady",
                     "request_id": None, "additional_data": None}, status_code=503)
    outputs = {o["mapping_value"].get("endpoint_output_name", o["pipeline_output_name"]): {"value": o["value"]}
               for o in execution["outputs"] if o["mapping_type"] == "endpoint"}
    return JSON({"outputs": outputs, "execution_id": execution_id})
