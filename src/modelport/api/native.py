"""modelport's own API (`/modelport/v1`): what no vendor API covers: tokens, every credential, users."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from modelport.api import openapi
from modelport.api.bodies import documented, json_body
from modelport.api.responses import JSON
from modelport.api.security import require_admin, require_principal
from modelport.domain.entities import CredentialInfo, TokenInfo, UserInfo
from modelport.domain.errors import InvalidInput

router = APIRouter(prefix="/modelport/v1", dependencies=[Depends(require_admin)], tags=["modelport"])
# credentials: admins see and revoke all of them, a user their own (services/credentials.py decides)
own = APIRouter(prefix="/modelport/v1", dependencies=[Depends(require_principal)], tags=["modelport"])


EXAMPLE_TOKEN_ID = "00000000-0000-4000-8000-00000000e001"  # a server-made id: the conformance test swaps in a live one
EXAMPLE_CREDENTIAL_ID = "00000000-0000-4000-8000-00000000e002"  # likewise
EXAMPLE_USER = "retired@example.com"  # a user of its own for the example that removes one


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ci-bot"}]})
    name: str
    kind: str = "user"
    user: str | None = None  # the user (email or id) a user token belongs to; default: a user named like the token
    workspace_id: int | None = None  # the workspace faces without workspaces act in (services/access.py)


class CreateCredential(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ci-bot-2"}]})
    name: str
    kind: Literal["admin", "user", "aws"] = "user"
    user: str | None = None
    workspace_id: int | None = None


class CreateUser(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"email": "new-user@example.com"}]})
    email: str


def token_json(info: TokenInfo) -> dict:
    return {"id": info.id, "name": info.name, "kind": info.kind, "created_at": info.created_at,
            "revoked_at": info.revoked_at, "revoked": info.revoked_at is not None}


def credential_json(info: CredentialInfo) -> dict:
    return {"id": info.id, "kind": info.kind, "name": info.name, "owner": info.owner,
            "workspace_id": info.workspace_id, "created_at": info.created_at, "last_used_at": info.last_used_at,
            "revoked_at": info.revoked_at, "revoked": info.revoked_at is not None}


def user_json(info: UserInfo) -> dict:
    return {"id": info.id, "email": info.email, "created_at": info.created_at}


def _create(platform, name: str, kind: str, user: str | None, workspace_id: int | None) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """A token or key pair; returns (its record, its secret fields). Non-admin kinds belong to a user."""
    user_id = None
    if user is not None:
        user_id = platform.users.get(user).id
    elif kind == "user":
        user_id = platform.users.ensure(name).id
    if workspace_id is not None:
        platform.registry.get_workspace(workspace_id)  # exists
    if kind == "aws":
        key, secret = platform.sagemaker.create_key(name, user_id=user_id, workspace_id=workspace_id)
        info = next(c for c in platform.credentials.list("aws") if c.id == key)
        return credential_json(info), {"aws_access_key_id": key, "aws_secret_access_key": secret}
    if kind == "admin" and user_id is not None:
        raise InvalidInput("an admin token belongs to no user", field="user")
    info, secret = platform.auth.create(name, kind, user_id=user_id, workspace_id=workspace_id)
    return token_json(info), {"token": secret}


@router.post("/tokens", operation_id="modelport_create_token", status_code=201,
             openapi_extra=openapi.merge(documented(CreateToken), openapi.answers({"type": "object"}, status=201)))
async def create_token(request: Request, body: CreateToken = json_body(CreateToken)) -> JSON:
    """Create a token; its secret is in this reply only."""
    record, secret = await run_in_threadpool(_create, request.app.state.platform, body.name, body.kind, body.user,
                                             body.workspace_id)
    return JSON({**record, **secret}, status_code=201)


@router.get("/tokens", operation_id="modelport_list_tokens")
async def list_tokens(request: Request) -> JSON:
    tokens = await run_in_threadpool(request.app.state.platform.auth.list)
    return JSON({"tokens": [token_json(t) for t in tokens]})


@router.delete("/tokens/{token_id}", operation_id="modelport_revoke_token",
               openapi_extra=openapi.examples(token_id=EXAMPLE_TOKEN_ID))
async def revoke_token(token_id: str, request: Request) -> JSON:
    info = await run_in_threadpool(request.app.state.platform.auth.revoke, token_id)
    return JSON(token_json(info))


# -- every credential ---------------------------------------------------------------------------------------------------

@router.post("/credentials", operation_id="modelport_create_credential", status_code=201,
             openapi_extra=openapi.merge(documented(CreateCredential), openapi.answers({"type": "object"}, status=201)))
async def create_credential(request: Request, body: CreateCredential = json_body(CreateCredential)) -> JSON:
    """A token (admin, user) or an AWS key pair (aws), optionally bound to a user and a workspace; its secret is in
    this reply only."""
    record, secret = await run_in_threadpool(_create, request.app.state.platform, body.name, body.kind, body.user,
                                             body.workspace_id)
    return JSON({**record, **secret}, status_code=201)


@own.get("/credentials", operation_id="modelport_list_credentials")
async def list_credentials(request: Request, kind: str | None = None) -> JSON:
    """Every credential (admin, user, dataiku, aws, craftai-endpoint): kind, name, owner, created, last used; never
    a secret. A non-admin sees their own."""
    items = await run_in_threadpool(request.app.state.platform.credentials.list, kind)
    return JSON({"credentials": [credential_json(c) for c in items]})


@own.delete("/credentials/{credential_id}", operation_id="modelport_revoke_credential",
            openapi_extra=openapi.examples(credential_id=EXAMPLE_CREDENTIAL_ID))
async def revoke_credential(credential_id: str, request: Request) -> JSON:
    """Revoke at once (on this server; others within the auth cache period, 5 s)."""
    info = await run_in_threadpool(request.app.state.platform.credentials.revoke, credential_id)
    return JSON(credential_json(info))


# -- users --------------------------------------------------------------------------------------------------------------

@router.post("/users", operation_id="modelport_create_user", status_code=201,
             openapi_extra=openapi.merge(documented(CreateUser), openapi.answers({"type": "object"}, status=201)))
async def create_user(request: Request, body: CreateUser = json_body(CreateUser)) -> JSON:
    return JSON(user_json(await run_in_threadpool(request.app.state.platform.users.create, body.email)),
                status_code=201)


@router.get("/users", operation_id="modelport_list_users")
async def list_users(request: Request) -> JSON:
    return JSON({"users": [user_json(u) for u in await run_in_threadpool(request.app.state.platform.users.list)]})


@router.delete("/users/{user}", operation_id="modelport_remove_user", openapi_extra=openapi.examples(user=EXAMPLE_USER))
async def remove_user(user: str, request: Request) -> JSON:
    """Revokes the user's credentials (ending their console sessions) and memberships, then removes them."""
    return JSON(user_json(await run_in_threadpool(request.app.state.platform.users.remove, user)))
