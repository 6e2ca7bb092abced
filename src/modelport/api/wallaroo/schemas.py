"""Request bodies of the Wallaroo face, as the seed and the official SDK send them (unknown keys ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateWorkspace(Body):
    workspace_name: str


class ListWorkspaces(Body):
    user_id: str | None = None


class Conversion(Body):
    framework: str = "onnx"
    python_version: str | None = None
    requirements: list[str] = Field(default_factory=list)
    arch: str = "x86"
    accel: str = "none"
    framework_config: dict[str, Any] | None = None


class UploadMetadata(Body):
    name: str
    workspace_id: int
    visibility: str = "private"
    conversion: Conversion | None = None


class ListModels(Body):
    workspace_id: int | None = None


class ListVersions(Body):
    model_id: str
    models_pk_id: int | None = None


class VersionById(Body):
    model_version_id: int


class CreatePipeline(Body):
    pipeline_id: str
    workspace_id: int
    definition: dict[str, Any] | str | None = None


class PipelineByName(Body):
    pipeline_name: str
    workspace_id: int | None = None


class ListPipelines(Body):
    workspace_id: int | None = None


class CopyPipeline(Body):
    name: str
    workspace_id: int
    source_pipeline: int
    deploy: str | None = None
    engine_config: dict[str, Any] | str | None = None
    pipeline_version: str | None = None
