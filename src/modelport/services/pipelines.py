"""Pipelines and their versions. Every create adds a version to the pipeline of that name (Wallaroo semantics)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelport.domain.entities import PipelineInfo, PipelineVersionInfo
from modelport.domain.errors import AlreadyExists, InvalidInput, NotFound
from modelport.domain.names import check_dns_name
from modelport.domain.pipelines import definition_dict, parse_definition
from modelport.services.access import require_visible, visible_workspaces
from modelport.services.registry import RegistryService, get_workspace_row
from modelport.store.database import Database
from modelport.store.tables import Pipeline, PipelineVersion, utcnow


def pipeline_version_info(row: PipelineVersion) -> PipelineVersionInfo:
    return PipelineVersionInfo(row.id, row.pipeline_id, row.version, row.definition, row.created_at)


def pipeline_info(row: Pipeline) -> PipelineInfo:
    return PipelineInfo(row.id, row.workspace_id, row.name, row.owner_id, row.created_at, row.updated_at,
                        tuple(pipeline_version_info(v) for v in row.versions))


def _check_version_uuid(value: str | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput("pipeline_version must be a UUID", field="pipeline_version") from None


class PipelineService:
    def __init__(self, db: Database, registry: RegistryService) -> None:
        self.db = db
        self.registry = registry

    def create(self, workspace_id: int, name: str, definition: Any, owner_id: str = "") -> tuple[PipelineInfo, PipelineVersionInfo]:
        """Create the pipeline if new and add a version with `definition`, whose models must exist in the workspace."""
        check_dns_name(name, field="pipeline_id", what="pipeline")
        steps = parse_definition(definition)
        with self.db.session() as s:
            get_workspace_row(s, workspace_id)
            self._check_models_exist(s, workspace_id, steps)
            return self._add_version(s, workspace_id, name, definition_dict(steps), owner_id)

    def _check_models_exist(self, s: Session, workspace_id: int, steps: list) -> None:
        for i, step in enumerate(steps):
            for j, ref in enumerate(step.models):
                at = f"definition.steps[{i}].ModelInference.models[{j}]"
                version = self.registry.find_version(s, workspace_id, ref.name, ref.version)
                if version is None:
                    raise InvalidInput(
                        f"{at}: model {ref.name!r} version {ref.version!r} does not exist in workspace {workspace_id}",
                        field=at,
                    )
                if version.sha != ref.sha:
                    raise InvalidInput(f"{at}.sha does not match model {ref.name!r} version {ref.version!r}",
                                       field=f"{at}.sha")

    def _add_version(self, s: Session, workspace_id: int, name: str, definition: dict[str, Any], owner_id: str,
                     version: str | None = None) -> tuple[PipelineInfo, PipelineVersionInfo]:
        now = utcnow()
        pipeline = s.scalar(select(Pipeline).where(Pipeline.workspace_id == workspace_id, Pipeline.name == name))
        if pipeline is None:
            pipeline = Pipeline(workspace_id=workspace_id, name=name, owner_id=owner_id, created_at=now, updated_at=now)
            s.add(pipeline)
        pipeline.updated_at = now
        row = PipelineVersion(pipeline=pipeline, version=_check_version_uuid(version), definition=definition,
                              created_at=now)
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise AlreadyExists("a pipeline or version with that name or id was created concurrently") from None
        s.refresh(pipeline, ["versions"])
        return pipeline_info(pipeline), pipeline_version_info(row)

    def get(self, pipeline_pk: int) -> PipelineInfo:
        with self.db.session() as s:
            row = s.get(Pipeline, pipeline_pk, options=[selectinload(Pipeline.versions)])
            if row is None:
                raise NotFound(f"pipeline {pipeline_pk} not found", field="pipeline_id")
            require_visible(s, row.workspace_id, f"pipeline {pipeline_pk}", "pipeline_id")
            return pipeline_info(row)

    def get_by_name(self, name: str, workspace_id: int | None = None) -> PipelineInfo:
        with self.db.session() as s:
            query = select(Pipeline).options(selectinload(Pipeline.versions)).where(Pipeline.name == name)
            if workspace_id is not None:
                get_workspace_row(s, workspace_id)
                query = query.where(Pipeline.workspace_id == workspace_id)
            elif (visible := visible_workspaces(s)) is not None:
                query = query.where(Pipeline.workspace_id.in_(visible))
            rows = list(s.scalars(query))
            if not rows:
                raise NotFound(f"pipeline {name!r} not found", field="pipeline_name")
            if len(rows) > 1:
                raise InvalidInput(f"pipeline {name!r} exists in several workspaces; give workspace_id",
                                   field="workspace_id")
            return pipeline_info(rows[0])

    def get_version(self, version_pk: int) -> PipelineVersionInfo:
        with self.db.session() as s:
            row = s.get(PipelineVersion, version_pk)
            if row is None:
                raise NotFound(f"pipeline version {version_pk} not found", field="pipeline_version_pk_id")
            require_visible(s, row.pipeline.workspace_id, f"pipeline version {version_pk}", "pipeline_version_pk_id")
            return pipeline_version_info(row)

    def list(self, workspace_id: int | None = None) -> list[PipelineInfo]:
        with self.db.session() as s:
            query = select(Pipeline).options(selectinload(Pipeline.versions)).order_by(Pipeline.id)
            if workspace_id is not None:
                get_workspace_row(s, workspace_id)
                query = query.where(Pipeline.workspace_id == workspace_id)
            elif (visible := visible_workspaces(s)) is not None:
                query = query.where(Pipeline.workspace_id.in_(visible))
            return [pipeline_info(p) for p in s.scalars(query)]

    def copy(self, source_pk: int, name: str, workspace_id: int, version: str | None = None,
             owner_id: str = "") -> tuple[PipelineInfo, PipelineVersionInfo]:
        """A new pipeline `name` in the source's workspace whose first version is the source's newest definition."""
        check_dns_name(name, field="name", what="pipeline")
        with self.db.session() as s:
            get_workspace_row(s, workspace_id)
            source = s.get(Pipeline, source_pk, options=[selectinload(Pipeline.versions)])
            if source is None or source.workspace_id != workspace_id:
                raise NotFound(f"pipeline {source_pk} not found in workspace {workspace_id}", field="source_pipeline")
            exists = s.scalar(select(Pipeline.id).where(Pipeline.workspace_id == workspace_id, Pipeline.name == name))
            if exists is not None:
                raise AlreadyExists(f"pipeline {name!r} already exists in workspace {workspace_id}", field="name")
            definition = source.versions[-1].definition if source.versions else {"steps": []}
            return self._add_version(s, workspace_id, name, definition, owner_id, version)
