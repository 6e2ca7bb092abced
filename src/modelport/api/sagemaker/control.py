"""SageMaker control plane: `POST /` with `X-Amz-Target: SageMaker.<Op>` and an `application/x-amz-json-1.1` body."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport.api import gate, openapi
from modelport.api.sagemaker.auth import authenticate, authenticate_headers
from modelport.domain.errors import ModelportError
from modelport.services.sagemaker import SageMakerError, validation

router = APIRouter(tags=["sagemaker"])
AMZ_JSON = "application/x-amz-json-1.1"
OPERATIONS = ("CreateModel", "DescribeModel", "DeleteModel", "ListModels", "CreateEndpointConfig",
              "DescribeEndpointConfig", "DeleteEndpointConfig", "ListEndpointConfigs", "CreateEndpoint",
              "DescribeEndpoint", "UpdateEndpoint", "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint",
              "ListEndpoints")
EXAMPLE_ENDPOINT = "iris"

openapi.describe(openapi.FaceDoc(
    name="SageMaker", exact=("/", "/sagemaker"), error_media_type=AMZ_JSON,
    error_schema={"type": "object", "required": ["__type", "Message"], "properties": {
        "__type": {"type": "string"}, "Message": {"type": "string"}}},
    statuses=(400, 401, 403), security=({"sigv4": []},), methods=("post",),
))
_OPERATION_DOC = openapi.merge(
    {"security": [{"sigv4": []}], "parameters": [{
        "name": "X-Amz-Target", "in": "header", "required": True, "example": "SageMaker.DescribeEndpoint",
        "schema": {"type": "string", "enum": [f"SageMaker.{op}" for op in OPERATIONS]}}]},
    openapi.body({"type": "object"}, {"EndpointName": EXAMPLE_ENDPOINT}, media_type=AMZ_JSON),
    openapi.answers({"type": "object"}, media_type=AMZ_JSON))


async def _signed(request: Request) -> None:
    headers = {k.lower(): v for k, v in request.headers.items()}
    await authenticate_headers(request.app.state.platform, method=request.method, path=request.url.path,
                               query=request.url.query, headers=headers)


def render(error: ModelportError) -> Response:
    code = getattr(error, "code", "ValidationException")
    return Response(orjson.dumps({"__type": code, "Message": error.message}), status_code=error.status,
                    media_type=AMZ_JSON, headers={"x-amzn-ErrorType": code})


for _path in ("/", "/sagemaker"):  # SigV4 before the body; the body's hash completes the check in `_operation`
    gate.register(_path, gate.Policy(_signed, render=render), exact=True)


async def _operation(request: Request) -> Response:
    platform = request.app.state.platform
    service = platform.sagemaker
    try:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        region = await authenticate(platform, method="POST", path=request.url.path, query=request.url.query,
                                    headers=headers, body=body)
        target = headers.get("x-amz-target", "")
        prefix, _, op = target.partition(".")
        if prefix != "SageMaker" or not op:
            raise SageMakerError("UnknownOperationException", f"unknown operation {target!r}")
        try:
            payload = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise SageMakerError("SerializationException", "the request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise SageMakerError("SerializationException", "the request body must be a JSON object")
        result = await _dispatch(service, op, payload, region)
    except ModelportError as exc:
        return render(exc)
    return Response(orjson.dumps(result), media_type=AMZ_JSON)


async def _dispatch(service: Any, op: str, payload: dict[str, Any], region: str) -> dict[str, Any]:
    simple = {
        "CreateModel": lambda: service.create_model(payload, region),
        "DescribeModel": lambda: service.describe_model(payload),
        "DeleteModel": lambda: service.delete_model(payload),
        "ListModels": lambda: service.list_models(payload),
        "CreateEndpointConfig": lambda: service.create_endpoint_config(payload, region),
        "DescribeEndpointConfig": lambda: service.describe_endpoint_config(payload),
        "DeleteEndpointConfig": lambda: service.delete_endpoint_config(payload),
        "ListEndpointConfigs": lambda: service.list_endpoint_configs(payload),
        "DescribeEndpoint": lambda: service.describe_endpoint(payload),
        "ListEndpoints": lambda: service.list_endpoints(payload),
    }
    if op in simple:
        return await run_in_threadpool(simple[op])
    if op == "CreateEndpoint":
        result = await run_in_threadpool(service.create_endpoint, payload, region)
        endpoint_id = await run_in_threadpool(service.endpoint_id, payload["EndpointName"])
        service.spawn(service.provision(endpoint_id))
        return result
    if op == "DeleteEndpoint":
        endpoint_id = await run_in_threadpool(service.delete_endpoint, payload)

        async def delete() -> None:
            await service.plane.remove(f"sagemaker:{endpoint_id}")
            await run_in_threadpool(service.forget_endpoint, endpoint_id)

        service.spawn(delete())
        return {}
    if op in ("UpdateEndpoint", "UpdateEndpointWeightsAndCapacities"):
        update = service.update_endpoint if op == "UpdateEndpoint" else service.update_weights
        endpoint_id, result = await run_in_threadpool(update, payload)
        service.spawn(service.provision(endpoint_id, updating=True))
        return result
    raise validation(f"the operation {op!r} is not supported") if op else validation("no operation")


@router.post("/", operation_id="sagemaker_operation", openapi_extra=_OPERATION_DOC)
async def operation_at_root(request: Request) -> Response:
    """SageMaker hosting operations (CreateModel, CreateEndpointConfig, CreateEndpoint, DescribeEndpoint, ...),
    named by the X-Amz-Target header, SigV4-signed."""
    return await _operation(request)


@router.post("/sagemaker", operation_id="sagemaker_operation_prefixed", openapi_extra=_OPERATION_DOC)
async def operation_at_prefix(request: Request) -> Response:
    """The same, for clients whose endpoint_url has the /sagemaker path."""
    return await _operation(request)
