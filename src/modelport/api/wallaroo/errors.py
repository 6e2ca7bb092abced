"""Wallaroo's error body: {"msg": "...", "code": <status>} (as its API answers, e.g. 'The provided model id was not
found.'); we add the offending field when there is one."""

from __future__ import annotations

from starlette.responses import Response

from modelport.api import openapi
from modelport.api.responses import JSON
from modelport.domain.errors import ModelportError, Unauthenticated


def render(error: ModelportError) -> Response:
    body = {"msg": error.message, "code": error.status, "error": error.code}
    if error.field:
        body["field"] = error.field
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSON(body, status_code=error.status, headers=headers)


# Example values of the objects a first session makes (README quickstart); ids are those of a fresh server.
EXAMPLE_WORKSPACE = "quickstart"
EXAMPLE_MODEL = "iris"
EXAMPLE_PIPELINE = "iris-pipeline"
EXAMPLE_DEPLOYMENT = "iris-pipeline-1"  # <deploy_id>-<deployment id>
# Server-made identifiers have no predictable value: these stand for them (the conformance test swaps in live ones).
EXAMPLE_PIPELINE_VERSION = "00000000-0000-4000-8000-00000000a001"
EXAMPLE_ORCHESTRATION = "00000000-0000-4000-8000-00000000a002"
EXAMPLE_TASK = "00000000-0000-4000-8000-00000000a003"
EXAMPLE_RUN = "00000000-0000-4000-8000-00000000a004"
EXAMPLE_KILLED_TASK = "00000000-0000-4000-8000-00000000a005"
EXAMPLE_SHA = "0000000000000000000000000000000000000000000000000000000000a00006"

openapi.describe(openapi.FaceDoc(
    name="Wallaroo", prefixes=("/v1/api/",),
    error_schema={"type": "object", "required": ["msg", "code", "error"], "properties": {
        "msg": {"type": "string"}, "code": {"type": "integer"}, "error": {"type": "string"},
        "field": {"type": "string"}}},
    statuses=(400, 401, 403, 404, 409, 413, 415, 503),
    parameter_examples={"deployment": EXAMPLE_DEPLOYMENT, "pipeline": EXAMPLE_PIPELINE},
))
