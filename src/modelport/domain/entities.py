"""What the services hand to the faces: plain frozen records, detached from any database session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and kind (admin tokens may manage tokens). Service keys (kind
    "service") may only call the prediction API of `services` (all services when empty). A non-admin credential
    belongs to the user `user_id`; `workspace_id` is the workspace it is bound to (services/access.py)."""

    token_id: str
    name: str
    kind: str
    services: tuple[str, ...] = ()
    user_id: str | None = None
    workspace_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def is_service_key(self) -> bool:
        return self.kind == "service"

    def may_call(self, service: str) -> bool:
        return not self.is_service_key or not self.services or service in self.services


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    kind: str
    created_at: datetime
    revoked_at: datetime | None
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserInfo:
    id: str
    email: str
    created_at: datetime


@dataclass(frozen=True)
class CredentialInfo:
    """Any credential, whatever its kind (admin, user, dataiku, aws, craftai-endpoint); never its secret."""

    id: str
    kind: str
    name: str
    owner: str | None
    workspace_id: int | None
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class WorkspaceInfo:
    id: int
    name: str
    created_by: str
    archived: bool
    created_at: datetime
    model_ids: tuple[int, ...] = ()
    pipeline_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelVersionInfo:
    id: int
    model_pk: int
    model_name: str
    workspace_id: int
    version: str
    sha: str
    size: int
    file_name: str
    framework: str
    status: str
    status_reason: str | None
    visibility: str
    arch: str
    accel: str
    python_version: str | None
    requirements: list[Any]
    signature: dict[str, Any] | None
    owner_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ModelInfo:
    id: int
    workspace_id: int
    name: str
    owner_id: str
    created_at: datetime
    updated_at: datetime
    versions: tuple[ModelVersionInfo, ...] = field(default=())


@dataclass(frozen=True)
class PipelineVersionInfo:
    id: int
    pipeline_pk: int
    version: str
    definition: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class PipelineInfo:
    id: int
    workspace_id: int
    name: str
    owner_id: str
    created_at: datetime
    updated_at: datetime
    versions: tuple[PipelineVersionInfo, ...]

    @property
    def latest(self) -> PipelineVersionInfo:
        return self.versions[-1]
