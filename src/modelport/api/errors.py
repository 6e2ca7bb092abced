"""The one place where core errors become HTTP answers. Each face registers how its errors look on the wire; the
face is chosen by the request path, so a malformed request gets the error format of the API it was aimed at."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from modelport.api.responses import JSON
from modelport.domain.errors import (
    InternalError,
    ModelportError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

Renderer = Callable[[ModelportError], Response]


def render_native(error: ModelportError) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "field": error.field}}
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    return JSON(body, status_code=error.status, headers=headers)


_faces: list[tuple[str, str, Renderer]] = []


def register_face(prefix: str, renderer: Renderer, *, suffix: str = "") -> None:
    """Paths starting with `prefix` (and ending with `suffix`, when given) render errors with `renderer`; the
    longest prefix wins, and a suffix match beats a plain prefix of the same length."""
    _faces.append((prefix, suffix, renderer))
    _faces.sort(key=lambda item: (len(item[0]), bool(item[1])), reverse=True)


def renderer_for(path: str) -> Renderer:
    for prefix, suffix, renderer in _faces:
        if path.startswith(prefix) and path.endswith(suffix):
            return renderer
    return render_native


def render(request_path: str, error: ModelportError) -> Response:
    return renderer_for(request_path)(error)


def _validation_message(exc: RequestValidationError) -> InvalidInput:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(location) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidInput("the request body is not valid JSON", field=None)
    if kind == "missing":
        return InvalidInput(f"{field} is required", field=field)
    message = first.get("msg", "invalid request")
    return InvalidInput(f"{field}: {message}" if field else message, field=field)


def _from_http(exc: HTTPException) -> ModelportError:
    if exc.status_code == 404:
        return NotFound(str(exc.detail or "not found"))
    if exc.status_code == 413:
        return PayloadTooLarge(str(exc.detail))
    if exc.status_code == 415:
        return UnsupportedMediaType(str(exc.detail))
    error = ModelportError(str(exc.detail))
    error.status = exc.status_code
    error.code = "MethodNotAllowed" if exc.status_code == 405 else "BadRequest"
    return error


def _methods(app: FastAPI):  # type: ignore[no-untyped-def]
    """Every method the routes have for a path (built once, from FastAPI's own document of them)."""
    from modelport.api.openapi import Methods

    if getattr(app.state, "methods", None) is None:
        app.state.methods = Methods(app.openapi())
    return app.state.methods


def install(app: FastAPI) -> None:
    @app.exception_handler(ModelportError)
    async def _core(request: Request, exc: ModelportError) -> Response:
        return render(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return render(request.url.path, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        response = render(request.url.path, _from_http(exc))
        if exc.headers:  # e.g. 405's Allow, which RFC 9110 requires
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            methods = _methods(request.app).of(request.url.path)
            if methods:
                response.headers["Allow"] = ", ".join(methods)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(request.url.path, InternalError("internal error; see the server log"))
