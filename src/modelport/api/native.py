"""modelport's own API (`/modelport/v1`): what no vendor API covers, such as token management."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from modelport.api import openapi
from modelport.api.bodies import documented, json_body
from modelport.api.responses import JSON
from modelport.api.security import require_admin
from modelport.domain.entities import TokenInfo

router = APIRouter(prefix="/modelport/v1", dependencies=[Depends(require_admin)], tags=["modelport"])


EXAMPLE_TOKEN_ID = "00000000-0000-4000-8000-00000000e001"  # a server-made id: the conformance test swaps in a live one


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ci-bot"}]})
    name: str
    kind: str = "user"


def token_json(info: TokenInfo) -> dict:
    return {"id": info.id, "name": info.name, "kind": info.kind, "created_at": info.created_at,
            "revoked_at": info.revoked_at, "revoked": info.revoked_at is not None}


@router.post("/tokens", operation_id="modelport_create_token", status_code=201,
             openapi_extra=openapi.merge(documented(CreateToken), openapi.answers({"type": "object"}, status=201)))
async def create_token(request: Request, body: CreateToken = json_body(CreateToken)) -> JSON:
    """Create a token; its secret is in this reply only."""
    info, secret = await run_in_threadpool(request.app.state.platform.auth.create, body.name, body.kind)
    return JSON({**token_json(info), "token": secret}, status_code=201)


@router.get("/tokens", operation_id="modelport_list_tokens")
async def list_tokens(request: Request) -> JSON:
    tokens = await run_in_threadpool(request.app.state.platform.auth.list)
    return JSON({"tokens": [token_json(t) for t in tokens]})


@router.delete("/tokens/{token_id}", operation_id="modelport_revoke_token",
               openapi_extra=openapi.examples(token_id=EXAMPLE_TOKEN_ID))
async def revoke_token(token_id: str, request: Request) -> JSON:
    info = await run_in_threadpool(request.app.state.platform.auth.revoke, token_id)
    return JSON(token_json(info))
