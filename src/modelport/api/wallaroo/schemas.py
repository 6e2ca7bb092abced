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


class AddWorkspaceUser(Body):
    workspace_id: int
    email: str
    user_type: str = "COLLABORATOR"  # OWNER | COLLABORATOR


class RemoveWorkspaceUser(Body):
    workspace_id: int
    email: str | None = None
    user_id: str | None = None  # Wallaroo's SDK removes by user id


class ListWorkspaceUsers(Body):
    workspace_id: int


class Conversion(Body):
    framework: str = Field(default="onnx", max_length=32)
    python_version: str | None = Field(default=None, max_length=16)
    requirements: list[str] = Field(default_factory=list)
    arch: str = Field(default="x86", max_length=16)
    accel: str = Field(default="none", max_length=16)
    framework_config: dict[str, Any] | None = None


class UploadMetadata(Body):
    name: str
    workspace_id: int
    visibility: str = Field(default="private", max_length=16)
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


class StepModel(Body):
    name: str
    version: str
    sha: str


class DeployPipeline(Body):
    deploy_id: str
    pipeline_version_pk_id: int
    pipeline_id: int
    models: list[StepModel] | None = None
    model_ids: list[int] | None = None
    model_configs: list[int] | None = None
    engine_config: dict[str, Any] | str | None = None


class UndeployPipeline(Body):
    pipeline_id: int | None = None
    deployment_id: int


class DeploymentStatusQuery(Body):
    name: str


class ExternalUrl(Body):
    workspace_id: int
    pipeline_name: str


class InferenceLogsQuery(Body):
    pipeline_name: str
    workspace_id: int
    pipeline_version: str | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class UploadOrchestrationMetadata(Body):
    workspace_id: int
    name: str | None = Field(default=None, max_length=255)


class ListOrchestrations(Body):
    workspace_id: int


class ListAllOrchestrations(Body):
    workspace_ids: list[int] | None = None
    task_run_status: list[str] = Field(default_factory=list)


class RunTask(Body):
    workspace_id: int
    orch_id: str
    name: str | None = None
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    timeout: int | None = None
    debug: bool | None = None


class RunScheduledTask(RunTask):
    schedule: str
    overlap: str | None = None


class TaskById(Body):
    id: str
    run_limit: int = Field(default=10, ge=0, le=1000)


class ListTasks(Body):
    workspace_id: int
    killed: bool | None = None
    orch_id: str | None = None


class TasksBySha(Body):
    sha: str


class KillTask(Body):
    id: str


class ListTaskRuns(Body):
    task_id: str
    status: str | None = None
    limit: int | None = None


class RunLogs(Body):
    id: str
    lines: int | None = None
