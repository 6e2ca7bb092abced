"""SageMaker runtime: `POST /endpoints/{name}/invocations`, raw body in and out, on the inference fast path."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from modelport.api import errors as error_faces
from modelport.api import fastpath, openapi
from modelport.api.sagemaker.auth import authenticate_body, authenticate_headers
from modelport.domain.errors import InvalidInput, ModelportError, NotFound, NotReady
from modelport.serving.codecs import DECODE_ERRORS, decoder
from modelport.serving.replica import BatchRejected
from modelport.services.access import acting
from modelport.services.sagemaker import SageMakerError

PREFIX = "/endpoints/"


def render(error: ModelportError) -> Response:
    code = getattr(error, "code", None)
    if not isinstance(error, SageMakerError):
        code = {400: "ValidationError", 404: "ValidationError", 413: "ValidationError", 415: "ValidationError",
                503: "ServiceUnavailable"}.get(error.status, "InternalFailure")
    status = 400 if code == "ValidationError" else error.status
    body = {"message": error.message}
    if code == "ModelError":
        body = {"Message": error.message, "OriginalStatusCode": 500, "OriginalMessage": error.message,
                "LogStreamArn": ""}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={"x-amzn-ErrorType": code})


error_faces.register_face(PREFIX, render, suffix="/invocations")
openapi.describe(openapi.FaceDoc(
    name="SageMakerRuntime", prefixes=(PREFIX,), suffix="/invocations",
    error_schema={"anyOf": [
        {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
        {"type": "object", "required": ["Message", "OriginalStatusCode", "OriginalMessage"], "properties": {
            "Message": {"type": "string"}, "OriginalStatusCode": {"type": "integer"},
            "OriginalMessage": {"type": "string"}, "LogStreamArn": {"type": "string"}}}]},
    statuses=(400, 401, 403, 424, 429, 503), security=({"sigv4": []},),
    parameter_examples={"EndpointName": "iris"},
))


@decoder
def decode(body: bytes, content_type: str) -> np.ndarray:
    """text/csv rows, application/json (a list or list of lists), application/x-npy: a 2-D feature matrix."""
    kind = (content_type or "application/json").split(";", 1)[0].strip().lower()
    try:
        if kind == "text/csv":
            rows = [line.split(",") for line in body.decode().splitlines() if line.strip()]
            matrix = np.array(rows, dtype=np.float64)
        elif kind == "application/json":
            data = orjson.loads(body)  # bounded nesting (json.loads recursed until RecursionError)
            if isinstance(data, dict):
                data = data.get("instances", data.get("inputs", data.get("features")))
            matrix = np.asarray(data, dtype=np.float64)
        elif kind == "application/x-npy":
            matrix = np.load(io.BytesIO(body), allow_pickle=False)
            if matrix.dtype.kind not in "biuf":
                raise InvalidInput(f"the .npy array holds {matrix.dtype}, not numbers")
        else:
            raise InvalidInput(f"content type {kind!r} is not supported: use text/csv, application/json or "
                               "application/x-npy")
    except DECODE_ERRORS as exc:
        raise InvalidInput(f"the body cannot be read as {kind}: {exc}") from None
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1) if matrix.size else matrix.reshape(0, 0)  # [] or an empty CSV: zero rows
    if matrix.ndim != 2:
        raise InvalidInput("the input must be one row or a list of rows of features")
    return matrix


def encode(predictions: np.ndarray, accept: str) -> tuple[bytes, bytes]:
    kind = (accept or "application/json").split(",", 1)[0].split(";", 1)[0].strip().lower()
    if kind in ("application/json", "*/*", ""):
        return orjson.dumps(predictions, option=orjson.OPT_SERIALIZE_NUMPY), b"application/json"
    if kind == "text/csv":
        if not len(predictions):
            return b"", b"text/csv"
        rows = predictions.reshape(len(predictions), -1)
        return "\n".join(",".join(str(v) for v in row) for row in rows.tolist()).encode() + b"\n", b"text/csv"
    if kind == "application/x-npy":
        buffer = io.BytesIO()
        np.save(buffer, predictions, allow_pickle=False)
        return buffer.getvalue(), b"application/x-npy"
    raise InvalidInput(f"Accept {kind!r} is not supported: use application/json, text/csv or application/x-npy")


async def invoke(request: fastpath.Request) -> fastpath.Reply:
    name = request.path[len(PREFIX):-len("/invocations")]
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.items()}
    authenticate_body(request.credentials, method="POST", path=request.path, query=request.query.decode(),
                      headers=headers, body=request.body)
    live = request.platform.plane.routes.get(f"sagemaker:{name}")
    if live is not None:  # an endpoint of another workspace does not exist for this key
        try:
            await request.platform.access.check_inference(acting(), live.spec.workspace_id, f"endpoint {name}")
        except NotFound:
            live = None
    if live is None:  # not serving: either it does not exist, or it is not InService (the database says which)
        from starlette.concurrency import run_in_threadpool

        try:
            described = await run_in_threadpool(request.platform.sagemaker.describe_endpoint, {"EndpointName": name})
        except SageMakerError:
            raise SageMakerError("ValidationError", f"Endpoint {name} of account "
                                 f"{request.platform.sagemaker.account_id} not found.", 400) from None
        raise SageMakerError("ModelNotReadyException",
                             f"Endpoint {name} is {described['EndpointStatus']}, not InService.", 429)
    if not any(v.batcher.replicas for v in live.variants):  # in memory: the hot path never reads the database
        raise SageMakerError("ModelNotReadyException", f"Endpoint {name} is not InService yet.", 429)
    plane = request.platform.plane
    try:
        variant = live.pick(headers.get("x-amzn-sagemaker-target-variant") or None)
        if variant.spec.steps[0][0].framework == "sagemaker-handler":  # the model's own inference.py
            body, kind, variant = await plane.invoke_raw(live, request.body, headers.get("content-type", ""),
                                                          headers.get("accept", ""), target=variant.name)
            content_type = kind.encode()
        else:
            matrix = decode(request.body, headers.get("content-type", ""))
            result = await plane.infer(live, {"inputs": matrix}, len(matrix), target=variant.name,
                                       outputs=frozenset({"predictions"}))
            predictions = result.outputs.get("predictions")
            body, content_type = encode(np.asarray(predictions if predictions is not None else ()),
                                        headers.get("accept", ""))
    except NotFound as exc:
        raise SageMakerError("ValidationError", exc.message, 400) from None
    except InvalidInput:
        raise
    except BatchRejected as exc:
        if exc.kind == "input":
            raise SageMakerError("ValidationError", str(exc), 400) from None
        raise SageMakerError("ModelError", f"Received server error (500) from primary with message \"{exc}\".",
                             424) from None
    except NotReady as exc:
        raise SageMakerError("ModelError", f"Received server error from primary with message \"{exc.message}\".",
                             424) from None
    extra = [(b"x-amzn-invoked-production-variant", variant.name.encode())]
    attributes = headers.get("x-amzn-sagemaker-custom-attributes")
    if attributes:
        extra.append((b"x-amzn-sagemaker-custom-attributes", attributes.encode()))
    return fastpath.Reply(body, content_type, headers=tuple(extra))


async def signed(request: fastpath.Request) -> Any:
    """SigV4 from the headers, before the body is read (the body's hash completes it in `invoke`)."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.items()}
    return await authenticate_headers(request.platform, method="POST", path=request.path,
                                      query=request.query.decode(), headers=headers)


fastpath.register(fastpath.Route(PREFIX, "/invocations", invoke, "/endpoints/{EndpointName}/invocations", {
    "operationId": "sagemaker_invoke_endpoint", "summary": "SageMaker runtime InvokeEndpoint (SigV4-signed)",
    "requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}, "example": "5.1,3.5,1.4,0.2"},
        "application/json": {"schema": {"type": "array"}, "example": [[5.1, 3.5, 1.4, 0.2]]},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {"200": {"description": "the predictions, as Accept asks", "content": {
        "application/json": {"schema": {}}, "text/csv": {"schema": {"type": "string"}},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}}},
    "tags": ["sagemaker"],
}, authenticate=False, gate=signed))
