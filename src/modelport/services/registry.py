"""Workspaces, models and model versions. Uploads are stored content-addressed and verified off the request path."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelport.backends import local
from modelport.domain.entities import ModelInfo, ModelVersionInfo, WorkspaceInfo
from modelport.domain.errors import AlreadyExists, InvalidInput, NotFound
from modelport.domain.models import Framework, ModelStatus
from modelport.domain.names import check_display_name, check_dns_name
from modelport.jobs.environments import EnvironmentBuildFailed, EnvironmentBuilder, normalise
from modelport.jobs.packages import inspect_zip
from modelport.store.artifacts import ArtifactStore
from modelport.store.database import Database
from modelport.services.access import (
    acting, memberships_changed, require_visible, require_workspace, visible_workspaces,
)
from modelport.store.tables import Model, ModelVersion, Pipeline, Workspace, WorkspaceMember, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelUpload:
    workspace_id: int
    name: str
    framework: Framework
    file: BinaryIO
    file_name: str
    visibility: str = "private"
    python_version: str | None = None
    requirements: list[Any] = field(default_factory=list)
    arch: str = "x86"
    accel: str = "none"
    framework_config: dict[str, Any] | None = None
    owner_id: str = ""


def python_model_requirements(path: Path) -> str:
    """The requirements.txt at the root of a python model's ZIP (validated like any untrusted archive)."""
    if not zipfile.is_zipfile(path):
        return ""
    listing = inspect_zip(path)
    if "requirements.txt" not in listing.files:
        return ""
    with zipfile.ZipFile(path) as archive:
        return archive.read("requirements.txt").decode("utf-8", errors="replace")


def version_info(row: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        id=row.id, model_pk=row.model_id, model_name=row.model.name, workspace_id=row.model.workspace_id,
        version=row.version, sha=row.sha, size=row.size, file_name=row.file_name, framework=row.framework,
        status=row.status, status_reason=row.status_reason, visibility=row.visibility, arch=row.arch, accel=row.accel,
        python_version=row.python_version, requirements=list(row.requirements or []), signature=row.signature,
        owner_id=row.owner_id, created_at=row.created_at, updated_at=row.updated_at,
    )


def model_info(row: Model) -> ModelInfo:
    return ModelInfo(row.id, row.workspace_id, row.name, row.owner_id, row.created_at, row.updated_at,
                     tuple(version_info(v) for v in row.versions))


def get_workspace_row(s: Session, workspace_id: object, *, owner: bool = False) -> Workspace:
    """The workspace, if the caller is a member (its owner when `owner`) or an admin (services/access.py)."""
    if isinstance(workspace_id, bool) or not isinstance(workspace_id, int):
        raise InvalidInput("workspace_id must be an integer", field="workspace_id")
    row = s.get(Workspace, workspace_id)
    if row is None:
        raise NotFound(f"workspace {workspace_id} not found", field="workspace_id")
    require_workspace(s, workspace_id, owner=owner)
    return row


class RegistryService:
    def __init__(self, db: Database, artifacts: ArtifactStore, *, max_upload_bytes: int) -> None:
        self.db = db
        self.artifacts = artifacts
        self.max_upload_bytes = max_upload_bytes
        self.verifier: ModelVerifier | None = None
        self.environments: EnvironmentBuilder | None = None

    # -- workspaces ---------------------------------------------------------------------------------------------
    def create_workspace(self, name: str, created_by: str = "") -> WorkspaceInfo:
        check_display_name(name, field="workspace_name", what="workspace")
        try:
            with self.db.session() as s:
                if s.scalar(select(Workspace.id).where(Workspace.name == name)) is not None:
                    raise AlreadyExists(f"workspace {name!r} already exists", field="workspace_name")
                row = Workspace(name=name, created_by=created_by, created_at=utcnow())
                s.add(row)
                s.flush()
                principal = acting()
                owner = principal.user_id if principal is not None else None
                if owner is not None:  # its creator owns it (Wallaroo's rule)
                    s.add(WorkspaceMember(workspace_id=row.id, user_id=owner, role="owner", created_at=utcnow()))
                info = WorkspaceInfo(row.id, row.name, row.created_by, row.archived, row.created_at)
        except IntegrityError:
            raise AlreadyExists(f"workspace {name!r} already exists", field="workspace_name") from None
        if owner is not None:
            memberships_changed(owner)  # inference in the new workspace is allowed at once
        return info

    def list_workspaces(self) -> list[WorkspaceInfo]:
        with self.db.session() as s:
            models: dict[int, list[int]] = {}
            for wid, mid in s.execute(select(Model.workspace_id, Model.id).order_by(Model.id)):
                models.setdefault(wid, []).append(mid)
            pipelines: dict[int, list[int]] = {}
            for wid, pid in s.execute(select(Pipeline.workspace_id, Pipeline.id).order_by(Pipeline.id)):
                pipelines.setdefault(wid, []).append(pid)
            query = select(Workspace).order_by(Workspace.id)
            visible = visible_workspaces(s)
            if visible is not None:
                query = query.where(Workspace.id.in_(visible))
            return [
                WorkspaceInfo(w.id, w.name, w.created_by, w.archived, w.created_at,
                              tuple(models.get(w.id, [])), tuple(pipelines.get(w.id, [])))
                for w in s.scalars(query)
            ]

    def get_workspace(self, workspace_id: int) -> WorkspaceInfo:
        with self.db.session() as s:
            w = get_workspace_row(s, workspace_id)
            return WorkspaceInfo(w.id, w.name, w.created_by, w.archived, w.created_at)

    # -- models -------------------------------------------------------------------------------------------------
    def upload_model(self, upload: ModelUpload) -> ModelVersionInfo:
        """Store the file, record a new version in `pending_load_native`, and queue its verification."""
        check_dns_name(upload.name, field="name", what="model")
        with self.db.session() as s:
            get_workspace_row(s, upload.workspace_id)
        blob = self.artifacts.put(upload.file, max_bytes=self.max_upload_bytes)
        try:
            if upload.framework is Framework.PYTHON:
                upload = replace(upload, requirements=sorted(set(upload.requirements) | set(
                    normalise(python_model_requirements(blob.path)))))
            info = self._record_version(upload, blob.sha256, blob.size)
        except BaseException:
            self.artifacts.discard(blob)
            raise
        if self.verifier is not None:
            self.verifier.submit(info.id)
        return info

    def _record_version(self, upload: ModelUpload, sha: str, size: int) -> ModelVersionInfo:
        for attempt in range(2):  # a concurrent first upload of the same name may win the insert of the Model row
            try:
                with self.db.session() as s:
                    model = s.scalar(select(Model).where(Model.workspace_id == upload.workspace_id,
                                                         Model.name == upload.name))
                    now = utcnow()
                    if model is None:
                        model = Model(workspace_id=upload.workspace_id, name=upload.name, owner_id=upload.owner_id,
                                      created_at=now, updated_at=now)
                        s.add(model)
                    model.updated_at = now
                    row = ModelVersion(
                        model=model, version=str(uuid.uuid4()), sha=sha, size=size,
                        file_name=upload.file_name[:255] or upload.name, framework=upload.framework.value,
                        status=ModelStatus.PENDING_LOAD.value, visibility=upload.visibility, arch=upload.arch,
                        accel=upload.accel, python_version=upload.python_version, requirements=upload.requirements,
                        framework_config=upload.framework_config, owner_id=upload.owner_id, created_at=now,
                        updated_at=now,
                    )
                    s.add(row)
                    s.flush()
                    return version_info(row)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def list_models(self, workspace_id: int | None = None) -> list[ModelInfo]:
        with self.db.session() as s:
            query = select(Model).options(selectinload(Model.versions)).order_by(Model.id)
            if workspace_id is not None:
                get_workspace_row(s, workspace_id)
                query = query.where(Model.workspace_id == workspace_id)
            elif (visible := visible_workspaces(s)) is not None:
                query = query.where(Model.workspace_id.in_(visible))
            return [model_info(m) for m in s.scalars(query)]

    def list_versions(self, model_name: str, models_pk_id: int | None) -> list[ModelVersionInfo]:
        """Versions of a model, oldest first. `models_pk_id` may be the model's id or one of its versions' ids:
        Wallaroo's upload reply gives the latter and its docs pass it here as the former."""
        with self.db.session() as s:
            model = None
            if models_pk_id is not None:
                model = s.get(Model, models_pk_id)
                if model is None or model.name != model_name:
                    version = s.get(ModelVersion, models_pk_id)
                    model = version.model if version is not None and version.model.name == model_name else None
            else:
                query = select(Model).where(Model.name == model_name)
                if (visible := visible_workspaces(s)) is not None:
                    query = query.where(Model.workspace_id.in_(visible))
                candidates = list(s.scalars(query))
                model = candidates[0] if len(candidates) == 1 else None
            if model is None:
                raise NotFound(f"model {model_name!r} (id {models_pk_id}) not found", field="model_id")
            require_visible(s, model.workspace_id, f"model {model_name!r} (id {models_pk_id})", "model_id")
            return [version_info(v) for v in model.versions]

    def get_version(self, version_pk: int) -> ModelVersionInfo:
        with self.db.session() as s:
            row = s.get(ModelVersion, version_pk)
            if row is None:
                raise NotFound(f"model version {version_pk} not found", field="model_version_id")
            require_visible(s, row.model.workspace_id, f"model version {version_pk}", "model_version_id")
            return version_info(row)

    def find_version(self, s: Session, workspace_id: int, name: str, version: str) -> ModelVersion | None:
        return s.scalar(
            select(ModelVersion).join(Model)
            .where(Model.workspace_id == workspace_id, Model.name == name, ModelVersion.version == version)
        )

    def artifact_path(self, sha: str) -> Path:
        return self.artifacts.path_for(sha)

    # -- verification -------------------------------------------------------------------------------------------
    def unverified_version_ids(self) -> list[int]:
        with self.db.session() as s:
            pending = (ModelStatus.PENDING_LOAD.value, ModelStatus.ATTEMPTING_LOAD.value)
            return list(s.scalars(select(ModelVersion.id).where(ModelVersion.status.in_(pending))))

    def verify(self, version_pk: int, timeout_s: float) -> ModelVersionInfo:
        with self.db.session() as s:
            row = s.get(ModelVersion, version_pk)
            if row is None:
                raise NotFound(f"model version {version_pk} not found")
            row.status = ModelStatus.ATTEMPTING_LOAD.value
            framework, sha, requirements = row.framework, row.sha, list(row.requirements or [])
        try:
            python = self.environments.python_for(requirements) if self.environments and requirements else None
        except EnvironmentBuildFailed as exc:
            result = local.CheckResult(False, f"could not install the model's requirements: {exc}")
        else:
            result = local.check_model(framework, self.artifacts.path_for(sha), timeout_s=timeout_s, python=python)
        with self.db.session() as s:
            row = s.get(ModelVersion, version_pk)
            assert row is not None
            row.status = (ModelStatus.READY if result.ok else ModelStatus.ERROR).value
            row.status_reason = result.reason
            row.signature = result.signature
            row.updated_at = utcnow()
            s.flush()
            return version_info(row)


class ModelVerifier:
    """A background thread that loads each new model version in a separate process and records the outcome."""

    def __init__(self, registry: RegistryService, *, timeout_s: float) -> None:
        self.registry = registry
        self.timeout_s = timeout_s
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="model-verifier", daemon=True)

    def start(self) -> None:
        for version_pk in self.registry.unverified_version_ids():  # left pending by a previous run of the server
            self._queue.put(version_pk)
        self._thread.start()

    def submit(self, version_pk: int) -> None:
        self._queue.put(version_pk)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while (version_pk := self._queue.get()) is not None:
            try:
                info = self.registry.verify(version_pk, self.timeout_s)
                log.info("model %s version %s: %s", info.model_name, info.version, info.status)
            except Exception:  # keep verifying the others; this one stays pending and is retried on restart
                log.exception("verifying model version %s failed", version_pk)
