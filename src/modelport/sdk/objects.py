"""What the client returns: plain typed records built from the server's replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Workspace:
    id: int
    name: str
    models: list[int] = field(default_factory=list)
    pipelines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ModelVersion:
    id: int
    model_id: int
    name: str
    version: str
    sha: str
    framework: str
    status: str
    reason: str | None
    file_name: str
    workspace_id: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelVersion:
        return cls(id=data["id"], model_id=data["models_pk_id"], name=data["model_id"], version=data["model_version"],
                   sha=data["sha"], framework=data.get("framework", ""), status=data.get("status", ""),
                   reason=data.get("reason"), file_name=data.get("file_name", ""),
                   workspace_id=data.get("workspace_id", 0))

    def as_step_model(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha": self.sha}


@dataclass(frozen=True)
class PipelineVersion:
    id: int
    version: str
    definition: dict[str, Any]


@dataclass(frozen=True)
class Pipeline:
    id: int
    name: str
    workspace_id: int
    versions: list[PipelineVersion]

    @property
    def latest(self) -> PipelineVersion:
        return self.versions[-1]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pipeline:
        return cls(id=data["id"], name=data["name"], workspace_id=data["workspace_id"],
                   versions=[PipelineVersion(v["id"], v["version"], v["definition"]) for v in data["pipeline_versions"]])


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    kind: str
    revoked: bool
    secret: str | None = None


@dataclass(frozen=True)
class Deployment:
    """A live pipeline: `name` is `<deploy_id>-<id>`, the key of status and inference calls."""

    id: int
    deploy_id: str
    pipeline: Pipeline
    url: str | None = None

    @property
    def name(self) -> str:
        return f"{self.deploy_id}-{self.id}"
