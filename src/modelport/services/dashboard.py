"""What the dashboard shows, read from the services and the live plane: plain dicts for templates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from modelport.domain.jobs import describe_schedule
from modelport.domain.errors import NotFound
from modelport.serving.plane import LiveDeployment
from modelport.services.access import visible_workspaces
from modelport.store.tables import Deployment, DeploymentVariant, Pipeline, PipelineVersion

FACES = {"wallaroo": "Wallaroo", "sagemaker": "SageMaker", "dataiku": "Dataiku"}


class DashboardQueries:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    def workspaces(self) -> list[Any]:
        return self.platform.registry.list_workspaces()

    def models(self) -> list[Any]:
        return self.platform.registry.list_models()

    def pipelines(self) -> list[Any]:
        return self.platform.pipelines.list()

    # -- deployments ----------------------------------------------------------------------------------------------------
    def _live(self, live: LiveDeployment | None) -> dict[str, Any]:
        if live is None:
            return {"status": "Stopped", "variants": [], "error": None}
        variants = []
        for v in live.variants:
            variants.append({"name": v.name, "version": v.spec.pipeline_version, "weight": round(v.weight, 4),
                             "status": v.status.value, "error": v.error,
                             "replicas": [{"name": r.name, "state": r.state, "reason": r.reason}
                                          for r in v.replicas]})
        return {"status": live.status.value, "variants": variants, "error": live.error}

    def deployments(self) -> list[dict[str, Any]]:
        plane = self.platform.plane
        rows = []
        with self.platform.db.session() as s:
            visible = visible_workspaces(s)  # a non-admin sees the deployments of their workspaces only
            query = select(Deployment, Pipeline).join(Pipeline, Deployment.pipeline_id == Pipeline.id)
            if visible is not None:
                query = query.where(Deployment.workspace_id.in_(visible))
            for d, pipeline in s.execute(query.order_by(Deployment.id)):
                key = f"wallaroo:{d.id}"
                live = plane.deployments.get(key)
                rows.append({"key": key, "face": "Wallaroo", "name": d.name, "pipeline": pipeline.name,
                             "desired": d.desired_state, **self._live(live)})
        for key, live in sorted(plane.deployments.items()):
            if live.spec.face != "wallaroo" and (visible is None or live.spec.workspace_id in visible):
                rows.append({"key": key, "face": FACES.get(live.spec.face, live.spec.face), "name": live.spec.name,
                             "pipeline": live.spec.pipeline_name, "desired": "running", **self._live(live)})
        return rows

    def deployment(self, key: str) -> dict[str, Any]:
        for row in self.deployments():
            if row["key"] == key:
                row["versions"] = self._pipeline_versions(key) if key.startswith("wallaroo:") else []
                return row
        raise NotFound(f"deployment {key!r} not found")

    def _pipeline_versions(self, key: str) -> list[str]:
        deployment_id = int(key.split(":", 1)[1])
        with self.platform.db.session() as s:
            return list(s.scalars(select(PipelineVersion.version).join(
                DeploymentVariant, DeploymentVariant.pipeline_version_id == PipelineVersion.id)
                .where(DeploymentVariant.deployment_id == deployment_id)))

    def inference_logs(self, key: str, limit: int = 20) -> list[dict[str, Any]]:
        from datetime import datetime, timezone

        versions = self._pipeline_versions(key) if key.startswith("wallaroo:") else []
        logs = self.platform.inference_log.query(versions, limit) if versions else []
        for entry in logs:
            entry["at"] = datetime.fromtimestamp(entry["time"] / 1000, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]
        return logs

    def metrics(self, key: str) -> dict[str, Any]:
        """Cumulative counts and latency buckets for one deployment; the page turns two readings into rates."""
        self.deployment(key)  # one the caller may see
        live = self.platform.plane.deployments.get(key)
        if live is None:
            raise NotFound(f"deployment {key!r} is not live")
        route = live.spec.route
        requests = errors = 0
        buckets: list[tuple[float, float]] = []
        for family in self.platform.plane.metrics.registry.collect():
            for sample in family.samples:
                if sample.labels.get("deployment") != route:
                    continue
                if sample.name == "modelport_inference_requests_total":
                    requests += int(sample.value)
                    if sample.labels.get("outcome") != "success":
                        errors += int(sample.value)
                elif sample.name == "modelport_inference_duration_seconds_bucket":
                    bound = sample.labels["le"]
                    buckets.append((float("inf") if bound == "+Inf" else float(bound), sample.value))
        return {"requests": requests, "errors": errors, "buckets": sorted(buckets)}

    def undeploy(self, key: str) -> Any:
        deployment_id = self._wallaroo_id(key)
        with self.platform.db.session() as s:
            row = s.get(Deployment, deployment_id)
            pipeline_pk = row.pipeline_id if row else None
        return self.platform.deployments.undeploy(pipeline_pk, deployment_id)

    def redeploy(self, key: str) -> Any:
        """The same pipeline version and engine config again (after an undeploy, or to restart its replicas)."""
        deployment_id = self._wallaroo_id(key)
        with self.platform.db.session() as s:
            row = s.get(Deployment, deployment_id)
            variant = s.scalar(select(DeploymentVariant).where(DeploymentVariant.deployment_id == deployment_id))
            if row is None or variant is None:
                raise NotFound(f"deployment {key!r} not found")
            args = dict(pipeline_pk=row.pipeline_id, pipeline_version_pk=variant.pipeline_version_id, name=row.name,
                        engine_config=row.engine_config)
        return self.platform.deployments.deploy(**args)

    @staticmethod
    def _wallaroo_id(key: str) -> int:
        face, _, ident = key.partition(":")
        if face != "wallaroo" or not ident.isdigit():
            raise NotFound("only Wallaroo deployments are undeployed and redeployed here; use their own API for the "
                           "others")
        return int(ident)

    # -- jobs -----------------------------------------------------------------------------------------------------------
    def orchestrations(self) -> list[Any]:
        return self.platform.jobs.orchestrations()

    def tasks(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.platform.jobs.tasks():
            runs = self.platform.jobs.runs(t.id, limit=1)
            rows.append({"task": t, "schedule": describe_schedule(t.schedule) if t.schedule else None,
                         "last_run": runs[0] if runs else None})
        return rows

    def task(self, task_id: str) -> dict[str, Any]:
        task = self.platform.jobs.task(task_id)
        return {"task": task, "schedule": describe_schedule(task.schedule) if task.schedule else None,
                "runs": self.platform.jobs.runs(task_id, limit=50)}

    def run(self, run_id: str) -> Any:
        return self.platform.jobs.run(run_id)

    def log_tail(self, run_id: str, lines: int = 200) -> list[str]:
        return self.platform.jobs.logs(run_id, lines)
