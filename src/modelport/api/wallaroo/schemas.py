"""Request bodies of the Wallaroo face, as the seed and the official SDK send them (unknown keys ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelport.api.wallaroo.errors import (
    EXAMPLE_DEPLOYMENT,
    EXAMPLE_KILLED_TASK,
    EXAMPLE_MODEL,
    EXAMPLE_ORCHESTRATION,
    EXAMPLE_PIPELINE,
    EXAMPLE_RUN,
    EXAMPLE_SHA,
    EXAMPLE_TASK,
)


class Body(BaseModel):
    """Strict: a JSON `false` is not an integer, nor `0` a boolean (what the OpenAPI schema says is what is read)."""

    model_config = ConfigDict(extra="ignore", strict=True)


def example(**values: Any) -> ConfigDict:
    """The model's config with an example body (in the OpenAPI document; names the README quickstart's objects)."""
    return ConfigDict(extra="ignore", strict=True, json_schema_extra={"examples": [values]})


class CreateWorkspace(Body):
    model_config = example(workspace_name="scratch")
    workspace_name: str


class ListWorkspaces(Body):
    model_config = example()
    user_id: str | None = None


class AddWorkspaceUser(Body):
    model_config = example(workspace_id=1, email="member@example.com", user_type="COLLABORATOR")
    workspace_id: int
    email: str
    user_type: str = "COLLABORATOR"  # OWNER | COLLABORATOR


class RemoveWorkspaceUser(Body):
    model_config = example(workspace_id=1, email="departing@example.com")
    workspace_id: int
    email: str | None = None
    user_id: str | None = None  # Wallaroo's SDK removes by user id


class ListWorkspaceUsers(Body):
    model_config = example(workspace_id=1)
    workspace_id: int


class Conversion(Body):
    framework: str = Field(default="onnx", max_length=32)
    python_version: str | None = Field(default=None, max_length=16)
    requirements: list[str] = Field(default_factory=list)
    arch: str = Field(default="x86", max_length=16)
    accel: str = Field(default="none", max_length=16)
    framework_config: dict[str, Any] | None = None


class UploadMetadata(Body):
    model_config = example(name="scratch-model", workspace_id=1, conversion={"framework": "sklearn"})
    name: str
    workspace_id: int
    visibility: str = Field(default="private", max_length=16)
    conversion: Conversion | None = None


class ListModels(Body):
    model_config = example(workspace_id=1)
    workspace_id: int | None = None


class ListVersions(Body):
    model_config = example(model_id=EXAMPLE_MODEL, models_pk_id=1)
    model_id: str
    models_pk_id: int | None = None


class VersionById(Body):
    model_config = example(model_version_id=1)
    model_version_id: int


class CreatePipeline(Body):
    model_config = example(pipeline_id="scratch-pipeline", workspace_id=1, definition={"steps": []})
    pipeline_id: str
    workspace_id: int
    definition: dict[str, Any] | str | None = None


class PipelineByName(Body):
    model_config = example(pipeline_name=EXAMPLE_PIPELINE, workspace_id=1)
    pipeline_name: str
    workspace_id: int | None = None


class ListPipelines(Body):
    model_config = example(workspace_id=1)
    workspace_id: int | None = None


class CopyPipeline(Body):
    model_config = example(name="iris-pipeline-copy", workspace_id=1, source_pipeline=1)
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
    model_config = example(deploy_id=EXAMPLE_PIPELINE, pipeline_version_pk_id=1, pipeline_id=1)
    deploy_id: str
    pipeline_version_pk_id: int
    pipeline_id: int
    models: list[StepModel] | None = None
    model_ids: list[int] | None = None
    model_configs: list[int] | None = None
    engine_config: dict[str, Any] | str | None = None


class UndeployPipeline(Body):
    model_config = example(pipeline_id=2, deployment_id=2)
    pipeline_id: int | None = None
    deployment_id: int


class DeploymentStatusQuery(Body):
    model_config = example(name=EXAMPLE_DEPLOYMENT)
    name: str


class ExternalUrl(Body):
    model_config = example(workspace_id=1, pipeline_name=EXAMPLE_PIPELINE)
    workspace_id: int
    pipeline_name: str


class InferenceLogsQuery(Body):
    model_config = example(pipeline_name=EXAMPLE_PIPELINE, workspace_id=1)
    pipeline_name: str
    workspace_id: int
    pipeline_version: str | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class UploadOrchestrationMetadata(Body):
    model_config = example(workspace_id=1, name="scratch-orchestration")
    workspace_id: int
    name: str | None = Field(default=None, max_length=255)


class ListOrchestrations(Body):
    model_config = example(workspace_id=1)
    workspace_id: int


class ListAllOrchestrations(Body):
    model_config = example(workspace_ids=[1])
    workspace_ids: list[int] | None = None
    task_run_status: list[str] = Field(default_factory=list)


class RunTask(Body):
    model_config = example(workspace_id=1, orch_id=EXAMPLE_ORCHESTRATION, json={"greeting": "hi"}, timeout=60)
    workspace_id: int
    orch_id: str
    name: str | None = None
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    timeout: int | None = None
    debug: bool | None = None


class RunScheduledTask(RunTask):
    model_config = example(workspace_id=1, orch_id=EXAMPLE_ORCHESTRATION, json={"greeting": "hi"}, schedule="0 0 1 1 *")
    schedule: str
    overlap: str | None = None


class TaskById(Body):
    model_config = example(id=EXAMPLE_TASK)
    id: str
    run_limit: int = Field(default=10, ge=0, le=1000)


class ListTasks(Body):
    model_config = example(workspace_id=1)
    workspace_id: int
    killed: bool | None = None
    orch_id: str | None = None


class TasksBySha(Body):
    model_config = example(sha=EXAMPLE_SHA)
    sha: str


class KillTask(Body):
    model_config = example(id=EXAMPLE_KILLED_TASK)
    id: str


class ListTaskRuns(Body):
    model_config = example(task_id=EXAMPLE_TASK)
    task_id: str
    status: str | None = None
    limit: int | None = None


class RunLogs(Body):
    model_config = example(id=EXAMPLE_RUN)
    id: str
    lines: int | None = None
