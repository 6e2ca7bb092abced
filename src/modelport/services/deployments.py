"""Deployments: persist the desired state, turn it into a DeploymentSpec, and have the serving plane make it true.

Deploy returns at once; readiness shows in the status (Starting -> Running | Error), as in Wallaroo.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool

from modelport.domain.deployments import Batching, DeploymentSpec, ModelSpec, Scaling, VariantSpec, parse_engine_config
from modelport.domain.errors import InvalidInput, NotFound
from modelport.domain.pipelines import parse_definition
from modelport.serving.plane import ServingPlane
from modelport.serving.plane import LiveDeployment
from modelport.services.access import Access, require_visible
from modelport.services.registry import RegistryService
from modelport.store.database import Database
from modelport.store.tables import Deployment, DeploymentVariant, Pipeline, PipelineVersion, utcnow

log = logging.getLogger(__name__)

MAIN_VARIANT = "main"


class DeploymentService:
    def __init__(self, db: Database, registry: RegistryService, plane: ServingPlane, *,
                 default_idle_s: float = 300.0, access: Access | None = None) -> None:
        self.db = db
        self.access = access or Access(db)
        self.registry = registry
        self.plane = plane
        self.default_idle_s = default_idle_s
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- control -----------------------------------------------------------------------------------------------------
    async def deploy(self, *, pipeline_pk: int, pipeline_version_pk: int, name: str,
                     engine_config: Any = None) -> DeploymentSpec:
        """Record the wanted state and start making it true (in the background); a failed request changes nothing."""
        scaling, batching = parse_engine_config(engine_config, default_idle_s=self.default_idle_s)
        spec = await run_in_threadpool(self._record, pipeline_pk, pipeline_version_pk, name, engine_config,
                                       scaling, batching)
        self._spawn(self.plane.apply(spec))
        return spec

    def check_deployable(self, definition: dict[str, Any], engine_config: Any) -> None:
        """Refuse now what `deploy` would refuse later, for operations that create something first (copy + deploy)."""
        parse_engine_config(engine_config, default_idle_s=self.default_idle_s)
        if not parse_definition(definition):
            raise InvalidInput("the pipeline has no steps to deploy", field="source_pipeline")

    def _record(self, pipeline_pk: int, pipeline_version_pk: int, name: str, engine_config: Any,
                scaling: Scaling, batching: Batching) -> DeploymentSpec:
        with self.db.session() as s:
            pipeline = s.get(Pipeline, pipeline_pk)
            if pipeline is None:
                raise NotFound(f"pipeline {pipeline_pk} not found", field="pipeline_id")
            require_visible(s, pipeline.workspace_id, f"pipeline {pipeline_pk}", "pipeline_id")
            if name != pipeline.name:
                raise InvalidInput(f"deploy_id must be the pipeline's name, {pipeline.name!r}", field="deploy_id")
            version = s.get(PipelineVersion, pipeline_version_pk)
            if version is None or version.pipeline_id != pipeline.id:
                raise NotFound(f"pipeline version {pipeline_version_pk} not found in pipeline {pipeline.name!r}",
                               field="pipeline_version_pk_id")
            self._variant_spec(s, pipeline.workspace_id, version, MAIN_VARIANT, 1.0, scaling, batching)  # validates
            deployment = s.scalar(select(Deployment).where(Deployment.pipeline_id == pipeline.id))
            now = utcnow()
            if deployment is None:
                deployment = Deployment(name=name, workspace_id=pipeline.workspace_id, pipeline_id=pipeline.id,
                                        desired_state="running", created_at=now)
                s.add(deployment)
            deployment.desired_state = "running"
            deployment.engine_config = engine_config if isinstance(engine_config, dict) else None
            deployment.updated_at = now
            deployment.variants.clear()
            s.flush()
            deployment.variants.append(DeploymentVariant(
                name=MAIN_VARIANT, pipeline_version_id=version.id, weight=1.0,
                scaling=scaling.__dict__, batching=batching.__dict__))
            s.flush()
            return self._spec(s, deployment)

    def _spec(self, s: Session, deployment: Deployment) -> DeploymentSpec:
        pipeline = s.get(Pipeline, deployment.pipeline_id)
        assert pipeline is not None
        variants = []
        for v in deployment.variants:
            version = s.get(PipelineVersion, v.pipeline_version_id)
            assert version is not None
            variants.append(self._variant_spec(s, deployment.workspace_id, version, v.name, v.weight,
                                               Scaling(**v.scaling), Batching(**v.batching)))
        return DeploymentSpec(deployment.id, deployment.name, deployment.workspace_id, pipeline.id, pipeline.name,
                              tuple(variants))

    def _variant_spec(self, s: Session, workspace_id: int, version: PipelineVersion, name: str, weight: float,
                      scaling: Scaling, batching: Batching) -> VariantSpec:
        steps = parse_definition(version.definition)
        if not steps:
            raise InvalidInput("the pipeline version has no steps to deploy", field="pipeline_version_pk_id")
        resolved = []
        for step in steps:
            models = []
            for ref in step.models:
                row = self.registry.find_version(s, workspace_id, ref.name, ref.version)
                if row is None:
                    raise InvalidInput(f"model {ref.name!r} version {ref.version!r} no longer exists", field="models")
                models.append(ModelSpec(ref.name, ref.version, row.sha, row.framework,
                                        str(self.registry.artifact_path(row.sha)), tuple(row.requirements or ())))
            resolved.append(tuple(models))
        return VariantSpec(name, version.version, version.id, tuple(resolved), weight, scaling, batching)

    async def undeploy(self, pipeline_pk: int | None, deployment_id: int) -> None:
        await run_in_threadpool(self._mark_stopped, pipeline_pk, deployment_id)
        await self.plane.remove(f"wallaroo:{deployment_id}")

    def _mark_stopped(self, pipeline_pk: int | None, deployment_id: int) -> None:
        with self.db.session() as s:
            deployment = s.get(Deployment, deployment_id)
            if deployment is None or deployment.desired_state != "running":
                raise NotFound(f"deployment {deployment_id} is not deployed", field="deployment_id")
            require_visible(s, deployment.workspace_id, f"deployment {deployment_id}", "deployment_id")
            if pipeline_pk is not None and deployment.pipeline_id != pipeline_pk:
                raise NotFound(f"deployment {deployment_id} does not belong to pipeline {pipeline_pk}",
                               field="pipeline_id")
            deployment.desired_state = "stopped"
            deployment.updated_at = utcnow()

    async def restore(self) -> None:
        """After a restart: make every deployment that should run, run again."""
        specs = await run_in_threadpool(self._running_specs)
        for spec in specs:
            self._spawn(self.plane.apply(spec))

    def _running_specs(self) -> list[DeploymentSpec]:
        with self.db.session() as s:
            rows = s.scalars(select(Deployment).options(selectinload(Deployment.variants))
                             .where(Deployment.desired_state == "running"))
            specs = []
            for row in rows:
                try:
                    specs.append(self._spec(s, row))
                except (InvalidInput, NotFound) as exc:
                    log.error("deployment %s cannot be restored: %s", row.name, exc.message)
            return specs

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("applying a deployment failed", exc_info=task.exception())

    # -- queries -------------------------------------------------------------------------------------------------------
    def live(self, route: str) -> LiveDeployment:
        """A live deployment by its route (`<deploy_id>-<id>`), if the caller may see it. Blocking (thread pool)."""
        live = self.plane.routes.get(route)
        if live is None or live.spec.route != route:
            raise NotFound(f"deployment {route!r} not found", field="name")
        self.access.require(live.spec.workspace_id, f"deployment {route!r}", "name")
        return live

    def find_running(self, workspace_id: int, pipeline_name: str) -> DeploymentSpec:
        """Blocking (thread pool): checks the caller's membership."""
        self.access.require(workspace_id, f"workspace {workspace_id}", "workspace_id", named=True)
        for live in self.plane.deployments.values():
            if live.spec.face == "wallaroo" and live.spec.workspace_id == workspace_id \
                    and live.spec.pipeline_name == pipeline_name:
                return live.spec
        raise NotFound(f"pipeline {pipeline_name!r} is not deployed in workspace {workspace_id}",
                       field="pipeline_name")
