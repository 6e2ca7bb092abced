"""Dataiku's error body, {"errorType", "message", "detailedMessage"}: the official client shows
"<errorType>: <detailedMessage>"; and the credentials both of its APIs accept."""

from __future__ import annotations

import base64
import binascii

from starlette.responses import Response

from modelport.api import openapi
from modelport.api.responses import JSON
from modelport.domain.errors import ModelportError, Unauthenticated

ADMIN_PREFIX = "/admin/api"
PUBLIC_PREFIX = "/public/api/"


def render(error: ModelportError) -> Response:
    detail = f"{error.message} (field: {error.field})" if error.field else error.message
    body = {"errorType": error.code, "message": error.message, "detailedMessage": detail}
    headers = {"WWW-Authenticate": 'Basic realm="modelport"'} if isinstance(error, Unauthenticated) else None
    return JSON(body, status_code=error.status, headers=headers)


def credential(authorization: str) -> str | None:
    """The key from `Basic base64(key:)` (the official clients) or `Bearer key` (the seed spec)."""
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            user, _, _ = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("the Basic credentials are not valid base64") from None
        return user or None
    return None


def normalise_path(path: str) -> str:
    """The official client joins URLs naively: a trailing slash on its base gives `//admin/api/...`, and
    `create_service` posts to `services/`. Both mean the plain path."""
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if len(path) > 1 and path.endswith("/") and path.startswith(ADMIN_PREFIX):
        path = path.rstrip("/")
    return path


# Examples in the OpenAPI document: the README's iris service; server-made values are stand-ins the conformance test
# replaces with live ones.
EXAMPLE_SERVICE = "iris"
EXAMPLE_GENERATION = "v1"
EXAMPLE_SERVICE_KEY_ID = "00000000-0000-4000-8000-00000000d001"
EXAMPLE_BUNDLE_PATH = "/srv/dataiku-imports/iris-v2.zip"

_ERROR = {"type": "object", "required": ["errorType", "message", "detailedMessage"], "properties": {
    "errorType": {"type": "string"}, "message": {"type": "string"}, "detailedMessage": {"type": "string"}}}
_SECURITY = ({"dataikuKey": []}, {"bearer": []})
openapi.describe(openapi.FaceDoc(
    name="Dataiku", prefixes=(ADMIN_PREFIX,), error_schema=_ERROR, statuses=(400, 401, 403, 404, 409, 413, 415, 503),
    security=_SECURITY, parameter_examples={"service_id": EXAMPLE_SERVICE, "generation": EXAMPLE_GENERATION,
                                            "key_id": EXAMPLE_SERVICE_KEY_ID}))
openapi.describe(openapi.FaceDoc(
    name="Dataiku", prefixes=(PUBLIC_PREFIX,), error_schema=_ERROR, statuses=(400, 401, 403, 404, 413, 503),
    security=_SECURITY, parameter_examples={"serviceId": EXAMPLE_SERVICE, "endpointId": "iris"}))
