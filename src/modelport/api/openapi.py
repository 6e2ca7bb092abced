"""The OpenAPI description, true by construction: FastAPI's document of the routes, then, per face, the parts FastAPI
cannot know. Each face describes itself once (`describe`): the body its errors have on the wire (the one its renderer
in `api/errors.py` writes), the statuses those errors take, how callers authenticate, and example values for its path
parameters. Every operation of the face gets those, so a new route is described as truly as the old ones.

Conventions a route may use (through `openapi_extra`): `security` (its own requirement), `responses` (its answers,
merged over the defaults: a JSON answer is an object unless the route says otherwise), and `x-errors` (more statuses
than its face's table). The conformance test (tests/test_openapi_conformance.py) runs schemathesis against the live
document to keep all of this honest.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Security
from fastapi.security import HTTPBearer

# Statuses and the phrase each one is documented with.
REASONS = {
    307: "Not finished yet: ask again at the Location (after the server held the request a while)",
    400: "The request is malformed or breaks a rule; the body names the offending field when there is one",
    401: "Missing or unknown credentials",
    403: "The credentials may not do this",
    404: "No such resource (or route)",
    405: "The path exists, the method does not",
    409: "The resource exists, or its state forbids the operation",
    413: "The request body is larger than the configured limit",
    415: "The Content-Type is not one this operation reads",
    424: "The model failed on this input",
    429: "The endpoint is not serving yet",
    503: "Not ready yet (loading, or scaling from zero past the wait limit)",
}

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A modelport token (`modelport token create`, or the admin token)."},
    "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
              "description": "AWS Signature Version 4 (service `sagemaker`) with a key pair from "
                             "`modelport token create NAME --aws`.", "x-amazon-apigateway-authtype": "awsSigv4"},
    "dataikuKey": {"type": "http", "scheme": "basic",
                   "description": "A Dataiku API key as the Basic user name, empty password (the official clients); "
                                  "the same key is accepted as a Bearer token."},
    "endpointToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "`EndpointToken <token>`: the token of a Craft AI endpoint deployment."},
}


@dataclass(frozen=True, eq=False)
class FaceDoc:
    """How one face looks on the wire, for the paths it serves (the same matching as `errors.register_face`)."""

    name: str
    prefixes: tuple[str, ...] = ()
    suffix: str = ""
    exact: tuple[str, ...] = ()
    error_schema: dict[str, Any] = field(default_factory=dict)
    error_media_type: str = "application/json"
    statuses: tuple[int, ...] = (400, 401, 403, 404, 409, 413, 415)
    security: tuple[dict[str, list[str]], ...] = ({"bearer": []},)
    parameter_examples: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = ()  # only these methods of its paths, when given

    def matches(self, path: str, method: str) -> int:
        """How well this face claims `path`: 0 not at all, else longer prefixes (and a matching suffix) win."""
        if self.methods and method not in self.methods:
            return 0
        if path in self.exact:
            return 10_000
        best = 0
        for prefix in self.prefixes:
            if path.startswith(prefix) and path.endswith(self.suffix):
                best = max(best, 2 * len(prefix) + (1 if self.suffix else 0))
        return best


NATIVE = FaceDoc(
    name="Modelport",
    error_schema={"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": ["string", "null"]}}}}},
)

_faces: list[FaceDoc] = []

# Credential-checking dependencies take `_: Any = openapi.CREDENTIALS`: FastAPI then marks every operation that
# depends on one (directly, or through its router) as secured, and `finish` swaps in the operation's face's schemes.
# The marker reads nothing and refuses nothing: the dependency itself does the checking.
_MARKER = "credentials"
CREDENTIALS = Security(HTTPBearer(auto_error=False, scheme_name=_MARKER))


def describe(face: FaceDoc) -> None:
    _faces.append(face)


def face_for(path: str, method: str) -> FaceDoc:
    best, score = NATIVE, 0
    for face in _faces:
        s = face.matches(path, method)
        if s > score:
            best, score = face, s
    return best


def body(schema: dict[str, Any], example: Any = None, *, media_type: str = "application/json",
         required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body by hand."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": required, "content": {media_type: content}}}


def answers(schema: dict[str, Any] | None = None, *, status: int = 200, media_type: str = "application/json",
            description: str = "Success", **more: Any) -> dict[str, Any]:
    """`openapi_extra` declaring a route's success answer (its schema; None for an empty body)."""
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {media_type: {"schema": schema}}
    response.update(more)
    return {"responses": {str(status): response}}


def query(name: str, schema: dict[str, Any], example: Any = None, *, required: bool = False,
          description: str = "") -> dict[str, Any]:
    """`openapi_extra` for a query parameter a route reads by hand."""
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": required, "schema": schema}
    if example is not None:
        parameter["example"] = example
    if description:
        parameter["description"] = description
    return {"parameters": [parameter]}


def examples(**values: Any) -> dict[str, Any]:
    """`openapi_extra` giving this operation's path parameters their own examples (e.g. a delete names an object
    of its own, so the objects other operations' examples name survive it)."""
    return {"x-parameter-examples": values}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    """Several `openapi_extra` pieces in one (nested dicts merged)."""
    out: dict[str, Any] = {}
    for part in parts:
        _deep_update(out, part)
    return out


def _deep_update(target: dict[str, Any], source: dict[str, Any]) -> None:
    """As FastAPI merges `openapi_extra`: nested objects merged, lists (parameters, required) joined."""
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        elif isinstance(value, list) and isinstance(target.get(key), list):
            target[key] = target[key] + [copy.deepcopy(v) for v in value if v not in target[key]]
        else:
            target[key] = copy.deepcopy(value)


# -- the document -------------------------------------------------------------------------------------------------

def _error_component(face: FaceDoc) -> str:
    return f"{face.name}Error"


def _is_placeholder(response: dict[str, Any]) -> bool:
    """FastAPI's guess for a route returning a Response subclass: a JSON string. Our JSON answers never are."""
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return schema == {"type": "string"}


def finish(document: dict[str, Any], app: FastAPI, extra_paths: dict[str, Any]) -> dict[str, Any]:
    """Complete FastAPI's `document` (in place) with each face's errors, security, parameters and examples."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["paths"].update(extra_paths)
    used: set[tuple[FaceDoc, int]] = set()  # (face, status) of every error response an operation refers to
    used_schemes: set[str] = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            face = face_for(path, method)
            declared = operation.get("security")
            if declared is None:  # a public route of FastAPI's, or a fast-path route (they all check credentials)
                operation["security"] = list(face.security) if path in extra_paths else []
            elif any(_MARKER in requirement for requirement in declared):
                operation["security"] = list(face.security)
            for requirement in operation["security"]:
                used_schemes.update(requirement)
            _path_parameters(path, operation, face)
            used.update((face, status) for status in _responses(operation, face))
    shared = components.setdefault("responses", {})
    for face, status in sorted(used, key=lambda pair: (pair[0].name, pair[1])):
        schemas[_error_component(face)] = face.error_schema
        reference = {"$ref": f"#/components/schemas/{_error_component(face)}"}
        shared[f"{face.name}{status}"] = {"description": REASONS.get(status, "Error"),
                                          "content": {face.error_media_type: {"schema": reference}}}
    components["securitySchemes"] = {name: SECURITY_SCHEMES[name] for name in sorted(used_schemes)}
    document.pop("security", None)
    return document


def _path_parameters(path: str, operation: dict[str, Any], face: FaceDoc) -> None:
    own = operation.pop("x-parameter-examples", {})
    parameters = operation.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    for name in re.findall(r"{([^}]+)}", path):
        if name not in declared:
            parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    for parameter in parameters:
        if parameter.get("in") != "path":
            continue
        schema = parameter.setdefault("schema", {"type": "string"})
        schema.pop("title", None)
        # A path segment never contains a slash (the router would not reach this operation), nor is it empty.
        if schema.get("type") == "string":
            schema.setdefault("pattern", "^[^/]+$")
        if parameter["name"] in own:
            parameter["example"] = own[parameter["name"]]
        elif "example" not in parameter and "examples" not in parameter and parameter["name"] in face.parameter_examples:
            parameter["example"] = face.parameter_examples[parameter["name"]]
    if not parameters:
        operation.pop("parameters")


def _responses(operation: dict[str, Any], face: FaceDoc) -> set[int]:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for status, response in responses.items():
        if status.startswith("2") and _is_placeholder(response):
            if len(response["content"]) > 1:  # the route declared its own media types: FastAPI's guess is not one
                del response["content"]["application/json"]
            else:
                response["content"] = {"application/json": {"schema": {"type": "object"}}}
    more = set(operation.pop("x-errors", ()))
    statuses = set(face.statuses) | more
    if not operation["security"] and 401 not in more:
        statuses.discard(401)
    for status in sorted(statuses):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{face.name}{status}"})
    return statuses


class Methods:
    """The methods the document lists for a concrete path: a 405's `Allow` header names all of them (FastAPI's
    names only those of the route that matched the path, one of several when each method is its own route)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.templates = [(re.compile("^" + re.sub(r"{[^}]+}", "[^/]+", re.escape(path).replace(r"\{", "{")
                                                   .replace(r"\}", "}")) + "$"),
                           sorted(m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")))
                          for path, item in document.get("paths", {}).items()]

    def of(self, path: str) -> list[str]:
        for pattern, methods in self.templates:
            if pattern.match(path):
                return methods
        return []
