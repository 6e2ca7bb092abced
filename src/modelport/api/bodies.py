"""JSON request bodies for every face: parsed whatever the Content-Type says (official clients send none, curl sends
form-urlencoded), validated by a pydantic model, with errors that name the offending field."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from modelport.domain.errors import InvalidInput

T = TypeVar("T", bound=BaseModel)

# Schemas referenced by request bodies, merged into the OpenAPI document's components by `app.py`.
component_schemas: dict[str, Any] = {}


def invalid_from_pydantic(exc: ValidationError, prefix: str = "") -> InvalidInput:
    first = exc.errors()[0]
    field = prefix + ".".join(str(p) for p in first["loc"]) if first["loc"] else prefix.rstrip(".") or None
    if first["type"] == "missing":
        return InvalidInput(f"{field} is required", field=field)
    if first["type"] == "extra_forbidden":
        return InvalidInput(f"{field} is not a known field", field=field)
    message = first["msg"]
    return InvalidInput(f"{field}: {message}" if field else message, field=field)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput("the request body is not valid JSON") from None


def validate(model: type[T], data: Any, prefix: str = "") -> T:
    if not isinstance(data, dict):
        raise InvalidInput(f"the {prefix.rstrip('.') or 'request body'} must be a JSON object",
                           field=prefix.rstrip(".") or None)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc, prefix) from None


def json_body(model: type[T]) -> Any:
    """A dependency yielding the validated body: `body: Model = json_body(Model)`."""

    async def parse(request: Request) -> T:
        return validate(model, parse_json(await request.body()))

    return Depends(parse)


def documented(model: type[BaseModel], content_type: str = "application/json") -> dict[str, Any]:
    """`openapi_extra` for a route whose body is parsed by `json_body`, so the OpenAPI document still shows it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    component_schemas.update(schema.pop("$defs", {}))
    # An empty body reads as {} (official clients send none): it is optional when no field is required.
    return {"requestBody": {"required": bool(schema.get("required")), "content": {content_type: {"schema": schema}}}}
