"""Dataiku API node services on the core.

A service holds generations (imported bundles) and a mapping that spreads traffic over them. Each endpoint id of a
service is one plane deployment (route `dataiku:<service>/<endpoint>`) whose variants are the generations that are
mapped or preloaded: preload starts a variant at weight 0, switchTo and setMapping change weights atomically, and a
generation that leaves the mapping drains and stops, the same code path as every other face's version switch.

The prediction hot path reads `views`, an in-memory copy of each service's state refreshed on every change, so it
never touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from modelport.domain.bundles import BundleManifest, Mapping, mapping_from_json, parse_manifest, parse_mapping
from modelport.domain.deployments import (
    Batching, DeploymentSpec, DeploymentStatus, ModelSpec, Scaling, VariantSpec,
)
from modelport.domain.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound, NotReady
from modelport.jobs.environments import normalise
from modelport.jobs.packages import ArchiveLimits, extract_zip
from modelport.serving.plane import ServingPlane
from modelport.services.bundles import check_extracted, read_manifest
from modelport.store.artifacts import ArtifactStore
from modelport.store.database import Database
from modelport.store.tables import DataikuEndpoint, DataikuGeneration, DataikuService, utcnow

log = logging.getLogger(__name__)

SERVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


@dataclass(frozen=True)
class ServiceView:
    """What the prediction API needs of a service, without I/O."""

    name: str
    enabled: bool
    mapping: Mapping | None
    generations: dict[str, BundleManifest] = field(default_factory=dict)
    live: frozenset[str] = frozenset()  # mapped or preloaded: the generations a request may be sent to


def _millis(value: Any) -> int:
    return int(value.timestamp() * 1000)


class DataikuServices:
    def __init__(self, db: Database, plane: ServingPlane, artifacts: ArtifactStore, root: Path, *,
                 import_roots: list[Path], max_bundle_bytes: int, limits: ArchiveLimits,
                 check_timeout_s: float) -> None:
        self.db = db
        self.plane = plane
        self.artifacts = artifacts
        self.root = root
        self.import_roots = import_roots
        self.max_bundle_bytes = max_bundle_bytes
        self.limits = limits
        self.check_timeout_s = check_timeout_s
        self.views: dict[str, ServiceView] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- services ---------------------------------------------------------------------------------------------------
    def create_service(self, name: Any) -> dict[str, Any]:
        import re

        if not isinstance(name, str) or not re.match(SERVICE_ID, name):
            raise InvalidInput("serviceId must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
                               "digit", field="serviceId")
        with self.db.session() as s:
            if s.scalar(select(DataikuService.id).where(DataikuService.name == name)) is not None:
                raise AlreadyExists(f"service {name!r} already exists", field="serviceId")
            s.add(DataikuService(name=name, enabled=True, created_at=utcnow()))
        self.refresh(name)
        return self.get_service(name)

    def _service(self, s: Any, name: str) -> DataikuService:
        row = s.scalar(select(DataikuService).where(DataikuService.name == name))
        if row is None:
            raise NotFound(f"service {name!r} not found", field="serviceId")
        return row

    def _generations(self, s: Any, service: DataikuService) -> list[DataikuGeneration]:
        return list(s.scalars(select(DataikuGeneration).where(DataikuGeneration.service_id == service.id)
                              .order_by(DataikuGeneration.id)))

    def list_services(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            names = list(s.scalars(select(DataikuService.name).order_by(DataikuService.id)))
        return [self.get_service(n) for n in names]

    def get_service(self, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            service = self._service(s, name)
            generations = self._generations(s, service)
        mapping = mapping_from_json(service.mapping)
        active = mapping.entries[0].generation if mapping and len(mapping.entries) == 1 else None
        endpoints: dict[str, dict[str, Any]] = {}
        for g in generations:
            if mapping and g.generation in mapping.generations or not endpoints:
                for e in parse_manifest(g.manifest).endpoints:
                    endpoints.setdefault(e.id, {"id": e.id, "type": e.dataiku_type, "modelRef": f"{g.generation}/{e.id}"})
        return {"serviceId": name, "enabled": service.enabled, "activeGeneration": active,
                "generationCount": len(generations), "mapping": mapping.to_json() if mapping else None,
                "endpoints": list(endpoints.values()), "createdOn": _millis(service.created_at)}

    async def delete_service(self, name: str) -> None:
        async with self._lock(name):
            endpoints = await run_in_threadpool(self._delete_service_rows, name)
            for endpoint_id in endpoints:
                await self.plane.remove(f"dataiku:{endpoint_id}")
            self.views.pop(name, None)

    def _delete_service_rows(self, name: str) -> list[int]:
        with self.db.session() as s:
            service = self._service(s, name)
            endpoints = list(s.scalars(select(DataikuEndpoint.id).where(DataikuEndpoint.service_id == service.id)))
            s.execute(delete(DataikuEndpoint).where(DataikuEndpoint.service_id == service.id))
            s.execute(delete(DataikuGeneration).where(DataikuGeneration.service_id == service.id))
            s.delete(service)
        return endpoints

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        with self.db.session() as s:
            self._service(s, name).enabled = enabled
        self.refresh(name)
        return self.get_service(name)

    # -- generations ------------------------------------------------------------------------------------------------
    def _summary(self, name: str, row: DataikuGeneration, mapping: Mapping | None, *,
                 detailed: bool = False) -> dict[str, Any]:
        proba = next((e.proba for e in mapping.entries if e.generation == row.generation), 0.0) if mapping else 0.0
        summary: dict[str, Any] = {
            "generationId": row.generation, "generation": row.generation, "createdOn": _millis(row.created_at),
            "active": proba > 0, "mappingProba": proba, "preloaded": self._loaded(name, row.generation),
            "bundleSha256": row.bundle_sha,
        }
        if detailed:
            manifest = parse_manifest(row.manifest)
            summary["description"] = manifest.description
            summary["endpoints"] = [{"id": e.id, "type": e.dataiku_type, "modelRef": f"{row.generation}/{e.id}",
                                     "framework": e.framework} for e in manifest.endpoints]
        return summary

    def _loaded(self, name: str, generation: str) -> bool:
        """True when every endpoint of the generation has running replicas."""
        view = self.views.get(name)
        manifest = view.generations.get(generation) if view else None
        if manifest is None:
            return False
        for endpoint in manifest.endpoints:
            live = self.plane.routes.get(f"dataiku:{name}/{endpoint.id}")
            variant = next((v for v in live.variants if v.name == generation), None) if live else None
            if variant is None or variant.status is not DeploymentStatus.RUNNING:
                return False
        return True

    def list_generations(self, name: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            service = self._service(s, name)
            rows = self._generations(s, service)
        mapping = mapping_from_json(service.mapping)
        return [self._summary(name, r, mapping) for r in rows]

    def get_generation(self, name: str, generation: str) -> dict[str, Any]:
        with self.db.session() as s:
            service = self._service(s, name)
            row = self._generation(s, service, generation)
        return self._summary(name, row, mapping_from_json(service.mapping), detailed=True)

    def _generation(self, s: Any, service: DataikuService, generation: str) -> DataikuGeneration:
        row = s.scalar(select(DataikuGeneration).where(DataikuGeneration.service_id == service.id,
                                                        DataikuGeneration.generation == generation))
        if row is None:
            raise NotFound(f"generation {generation!r} of service {service.name!r} not found", field="generationId")
        return row

    def resolve_import_path(self, file_path: str | None) -> Path:
        """`importFromArchive?filePath=`: only files inside the configured import folders (403 otherwise)."""
        if not file_path:
            raise InvalidInput("the filePath query parameter is required", field="filePath")
        if "\x00" in file_path or len(file_path) > 4096:
            raise InvalidInput("filePath is not a valid path", field="filePath")
        path = Path(file_path).expanduser()
        if not path.is_absolute():
            raise InvalidInput("filePath must be an absolute path on the server", field="filePath")
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.import_roots):
            raise Forbidden(f"{file_path} is outside the folders bundles may be imported from "
                            "(MODELPORT_DATAIKU_IMPORT_ROOTS)")
        if not resolved.is_file():
            raise NotFound(f"no bundle file at {file_path}", field="filePath")
        return resolved

    def import_generation(self, name: str, source: BinaryIO | Path) -> dict[str, Any]:
        """Check everything first (archive, manifest, models); store and record only a bundle that passed."""
        with self.db.session() as s:
            service = self._service(s, name)
        if isinstance(source, Path):
            if source.stat().st_size > self.max_bundle_bytes:
                raise InvalidInput(f"the bundle is larger than {self.max_bundle_bytes} bytes", field="file")
            with open(source, "rb") as handle:
                return self._import(service, handle)
        return self._import(service, source)

    def _import(self, service: DataikuService, source: BinaryIO) -> dict[str, Any]:
        manifest = read_manifest(source, self.limits)
        with self.db.session() as s:
            if s.scalar(select(DataikuGeneration.id).where(DataikuGeneration.service_id == service.id,
                                                            DataikuGeneration.generation == manifest.version)):
                raise AlreadyExists(f"generation {manifest.version!r} already exists in service {service.name!r}",
                                    field="generationId")
        blob = self.artifacts.put(source, max_bytes=self.max_bundle_bytes)
        folder = self.bundle_folder(blob.sha256)
        fresh = not folder.exists()
        try:
            if fresh:
                partial = folder.with_name(folder.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                extract_zip(self.artifacts.path_for(blob.sha256), partial, self.limits)
                check_extracted(manifest, partial, timeout_s=self.check_timeout_s)
                partial.rename(folder)
            else:
                check_extracted(manifest, folder, timeout_s=self.check_timeout_s)
        except BaseException:
            shutil.rmtree(folder.with_name(folder.name + ".partial"), ignore_errors=True)
            raise
        try:
            with self.db.session() as s:
                # The checks above take seconds: the service may have been deleted, or the same generation
                # imported, meanwhile. Both are the caller's 404 or 409, not a broken foreign key.
                if s.get(DataikuService, service.id) is None:
                    raise NotFound(f"service {service.name!r} was deleted during the import", field="serviceId")
                row = DataikuGeneration(service_id=service.id, generation=manifest.version, bundle_sha=blob.sha256,
                                        manifest=manifest.to_json(), preloaded=False, created_at=utcnow())
                s.add(row)
                known = set(s.scalars(select(DataikuEndpoint.endpoint)
                                      .where(DataikuEndpoint.service_id == service.id)))
                for endpoint in manifest.endpoints:
                    if endpoint.id not in known:
                        s.add(DataikuEndpoint(service_id=service.id, endpoint=endpoint.id))
        except IntegrityError:
            raise AlreadyExists(f"generation {manifest.version!r} already exists in service {service.name!r}",
                                field="generationId") from None
        self.refresh(service.name)
        return self._summary(service.name, row, mapping_from_json(service.mapping))

    def bundle_folder(self, sha: str) -> Path:
        return self.root / "bundles" / sha

    async def delete_generation(self, name: str, generation: str) -> None:
        async with self._lock(name):
            await run_in_threadpool(self._delete_generation_row, name, generation)
            await self._apply(name)

    def _delete_generation_row(self, name: str, generation: str) -> None:
        with self.db.session() as s:
            service = self._service(s, name)
            row = self._generation(s, service, generation)
            mapping = mapping_from_json(service.mapping)
            if mapping and generation in mapping.generations:
                raise Conflict(f"generation {generation!r} takes traffic in service {name!r}; switch away from it "
                               "first")
            s.delete(row)

    # -- what serves: preload, switch, mapping --------------------------------------------------------------------------
    async def preload(self, name: str, generation: str) -> dict[str, Any]:
        async with self._lock(name):
            await run_in_threadpool(self._mark_preloaded, name, generation)
            await self._apply(name, require=(generation,))
        return await run_in_threadpool(self.get_generation, name, generation)

    def _mark_preloaded(self, name: str, generation: str) -> None:
        with self.db.session() as s:
            self._generation(s, self._service(s, name), generation).preloaded = True

    async def switch(self, name: str, generation: str | None = None) -> dict[str, Any]:
        """All traffic to `generation` (the newest when None), once it is warm."""
        async with self._lock(name):
            target = await run_in_threadpool(self._set_mapping, name, None, generation)
            await self._apply(name, require=(target,))
        return await run_in_threadpool(self.get_service, name)

    async def set_mapping(self, name: str, body: Any) -> dict[str, Any]:
        mapping = parse_mapping(body)
        async with self._lock(name):
            await run_in_threadpool(self._set_mapping, name, mapping, None)
            await self._apply(name, require=mapping.generations)
        return await run_in_threadpool(self.get_service, name)

    def _set_mapping(self, name: str, mapping: Mapping | None, generation: str | None) -> str:
        with self.db.session() as s:
            service = self._service(s, name)
            rows = {r.generation: r for r in self._generations(s, service)}
            if mapping is None:
                if generation is None:
                    if not rows:
                        raise Conflict(f"service {name!r} has no generation to switch to")
                    generation = max(rows.values(), key=lambda r: (r.created_at, r.id)).generation
                elif generation not in rows:
                    raise NotFound(f"generation {generation!r} of service {name!r} not found", field="generationId")
                mapping = Mapping.single(generation)
            for entry in mapping.entries:
                if entry.generation not in rows:
                    raise NotFound(f"generation {entry.generation!r} of service {name!r} not found",
                                   field="generationId")
            for g in mapping.generations:
                rows[g].preloaded = False  # live because mapped: it stops when it leaves the mapping
            service.mapping = mapping.to_json()
            service.enabled = True
        return mapping.entries[0].generation

    def refresh(self, name: str) -> ServiceView | None:
        """Rebuild the in-memory view of one service from the database."""
        with self.db.session() as s:
            service = s.scalar(select(DataikuService).where(DataikuService.name == name))
            if service is None:
                self.views.pop(name, None)
                return None
            rows = self._generations(s, service)
        mapping = mapping_from_json(service.mapping)
        live = set(mapping.generations if mapping else ()) | {r.generation for r in rows if r.preloaded}
        view = ServiceView(name, service.enabled, mapping, {r.generation: parse_manifest(r.manifest) for r in rows},
                           frozenset(live))
        self.views[name] = view
        return view

    def _specs(self, name: str) -> tuple[list[DeploymentSpec], list[int]]:
        """One spec per endpoint that some live generation has; the ids of endpoints nothing serves any more."""
        view = self.refresh(name)
        assert view is not None
        with self.db.session() as s:
            service = self._service(s, name)
            endpoints = {e.endpoint: e.id for e in s.scalars(
                select(DataikuEndpoint).where(DataikuEndpoint.service_id == service.id))}
            shas = {r.generation: r.bundle_sha for r in self._generations(s, service)}
        weights = {e.generation: e.proba for e in view.mapping.entries} if view.mapping else {}
        specs, idle = [], []
        for endpoint, endpoint_pk in endpoints.items():
            variants = []
            for generation in sorted(view.live):
                definition = view.generations[generation].endpoint(endpoint)
                if definition is None:
                    continue
                folder = self._ensure_extracted(shas[generation])
                requirements: tuple[str, ...] = ()
                if definition.requirements:
                    requirements = tuple(normalise((folder / definition.requirements).read_text()))
                model = ModelSpec(f"{name}/{endpoint}", generation, shas[generation], definition.framework,
                                  str(folder / definition.file), requirements, entry=definition.function)
                variants.append(VariantSpec(generation, f"{generation}@{shas[generation][:12]}", 0, ((model,),),
                                            weight=weights.get(generation, 0.0), scaling=Scaling(),
                                            batching=Batching()))
            if variants:
                specs.append(DeploymentSpec(endpoint_pk, f"{name}/{endpoint}", 0, 0, name, tuple(variants),
                                            face="dataiku"))
            else:
                idle.append(endpoint_pk)
        return specs, idle

    def _ensure_extracted(self, sha: str) -> Path:
        folder = self.bundle_folder(sha)
        if not folder.exists():  # a new home folder over an old database, or files cleaned by hand
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            extract_zip(self.artifacts.path_for(sha), partial, self.limits)
            partial.rename(folder)
        return folder

    async def _apply(self, name: str, require: tuple[str, ...] = ()) -> None:
        specs, idle = await run_in_threadpool(self._specs, name)
        await asyncio.gather(*(self.plane.apply(spec) for spec in specs))
        for endpoint_pk in idle:
            await self.plane.remove(f"dataiku:{endpoint_pk}")
        failures = []
        for spec in specs:
            live = self.plane.deployments.get(spec.key)
            for generation in require:
                variant = next((v for v in live.variants if v.name == generation), None) if live else None
                if variant is not None and variant.status is DeploymentStatus.RUNNING:
                    continue
                reason = (variant.error if variant else None) or (live.error if live else None) or "did not start"
                if any(v.name == generation for v in spec.variants):
                    failures.append(f"{spec.name} ({generation}): {reason}")
        if failures:
            raise NotReady("generation could not be loaded: " + "; ".join(failures))

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def refresh_all(self) -> None:
        with self.db.session() as s:
            names = list(s.scalars(select(DataikuService.name)))
        for name in names:
            self.refresh(name)

    async def restore(self) -> None:
        """Bring back, after a restart, every generation that was mapped or preloaded."""
        for name in list(self.views):
            try:
                async with self._lock(name):
                    await self._apply(name)
            except Exception as exc:  # one broken service must not keep the others down
                log.warning("could not restore Dataiku service %s: %s", name, exc)

    def metrics(self) -> dict[str, Any]:
        """Request counts and latency per service, from the plane's Prometheus meters."""
        per_service: dict[str, dict[str, Any]] = {}
        total = errors = 0
        latency_sum = 0.0
        for family in self.plane.metrics.registry.collect():
            for sample in family.samples:
                route = sample.labels.get("deployment", "")
                if not route.startswith("dataiku:"):
                    continue
                service = route[len("dataiku:"):].split("/", 1)[0]
                entry = per_service.setdefault(service, {"requestCount": 0, "errorCount": 0, "latencySum": 0.0})
                if sample.name == "modelport_inference_requests_total":
                    entry["requestCount"] += int(sample.value)
                    total += int(sample.value)
                    if sample.labels.get("outcome") != "success":
                        entry["errorCount"] += int(sample.value)
                        errors += int(sample.value)
                elif sample.name == "modelport_inference_duration_seconds_sum":
                    entry["latencySum"] += sample.value
                    latency_sum += sample.value
        for entry in per_service.values():
            good = entry["requestCount"] - entry["errorCount"]
            entry["averageLatencyMs"] = round(entry.pop("latencySum") * 1000 / good, 3) if good else 0.0
        good = total - errors
        return {"totalRequests": total, "errorCount": errors,
                "averageLatencyMs": round(latency_sum * 1000 / good, 3) if good else 0.0,
                "serviceMetrics": per_service}
