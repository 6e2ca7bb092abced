"""Craft AI's errors ({"message", "name", "request_id", "additional_data"}) and its credentials: the SDK trades its
refresh token (a modelport token) for a short-lived signed access token (`services.auth.AccessTokens`) that it
sends as Bearer."""

from __future__ import annotations

from typing import Any

import uuid

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from modelport.api import openapi
from modelport.api.responses import JSON
from modelport.domain.entities import Principal
from modelport.domain.errors import Forbidden, ModelportError, Unauthenticated
from modelport.services.access import act_as

PREFIXES = ("/api/v1/", "/endpoints/")


def render(error: ModelportError) -> Response:
    body = {"message": error.message, "name": error.code, "request_id": uuid.uuid4().hex,
            "additional_data": {"field": error.field} if error.field else None}
    return JSON(body, status_code=error.status)


async def require_user(request: Request, _: Any = openapi.CREDENTIALS) -> Principal:
    """Bearer: an access token from /auth/refresh, or a modelport token itself. A revoked modelport token's
    access tokens stop working too (the token behind them is checked on each call, through the auth cache)."""
    platform = request.app.state.platform
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthenticated("missing credentials: send Authorization: Bearer <access token>")
    if value.count(".") == 2:  # a JWT
        token_id = platform.craftai_tokens.subject(value)
        principal = await run_in_threadpool(platform.auth.principal_by_id, token_id)
    else:
        principal = platform.auth.cached(value) or await run_in_threadpool(platform.auth.authenticate, value)
    if principal.is_service_key:
        raise Forbidden("a service key may only call the prediction API of its services")
    request.state.principal = principal
    act_as(principal)
    return principal


# Examples in the OpenAPI document (stand-ins for server-made values are replaced by the conformance test).
EXAMPLE_PIPELINE = "iris-score"
EXAMPLE_ENDPOINT = "iris-endpoint"
EXAMPLE_ENDPOINT_TOKEN = "example-endpoint-token-0123456789"
EXAMPLE_EXECUTION = "iris-score-00000000c001"
EXAMPLE_ENDPOINT_EXECUTION = "iris-score-00000000c002"
EXAMPLE_RETIRED_EXECUTION = "iris-score-00000000c003"
EXAMPLE_REFRESH_TOKEN = "mp_00000000000000000000000000c004"
EXAMPLE_SIGNATURE = "00000000000000000000000000000000000000000000000000000000000c0005"
EXAMPLE_EXPIRES = 4102444800

openapi.describe(openapi.FaceDoc(
    name="CraftAi", prefixes=PREFIXES,
    error_schema={"type": "object", "required": ["message", "name"], "properties": {
        "message": {"type": "string"}, "name": {"type": "string"}, "request_id": {"type": ["string", "null"]},
        "additional_data": {"type": ["object", "null"]}}},
    statuses=(400, 401, 403, 404, 409, 413, 415, 503),
    parameter_examples={"name": EXAMPLE_PIPELINE, "execution_id": EXAMPLE_EXECUTION, "path": EXAMPLE_ENDPOINT,
                        "output_name": "report"},
))
