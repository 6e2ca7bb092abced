"""Wallaroo's error body: {"msg": "...", "code": <status>} (as its API answers, e.g. 'The provided model id was not
found.'); we add the offending field when there is one."""

from __future__ import annotations

from starlette.responses import Response

from modelport.api.responses import JSON
from modelport.domain.errors import ModelportError, Unauthenticated


def render(error: ModelportError) -> Response:
    body = {"msg": error.message, "code": error.status, "error": error.code}
    if error.field:
        body["field"] = error.field
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSON(body, status_code=error.status, headers=headers)
