"""The core, assembled: database, artifact store and services, with their background workers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.concurrency import run_in_threadpool

from modelport.backends import local
from modelport.backends.ledger import Recovery, ServerLedger
from modelport.domain.deployments import VariantSpec
from modelport.jobs.environments import EnvironmentBuilder
from modelport.jobs.packages import ArchiveLimits
from modelport.jobs.scheduler import Scheduler
from modelport.jobs.supervisor import RunSupervisor
from modelport.services.craftai import CraftAiService
from modelport.services.dataiku import DataikuServices
from modelport.services.jobs import JobService
from modelport.services.sagemaker import SageMakerService
from modelport.serving.plane import PlaneSettings, ServingPlane
from modelport.services.access import Access
from modelport.services.auth import AccessTokens, AuthService
from modelport.services.credentials import CredentialService
from modelport.services.sessions import SessionService
from modelport.services.users import UserService
from modelport.services.deployments import DeploymentService
from modelport.services.inference_log import InferenceLogService
from modelport.services.pipelines import PipelineService
from modelport.services.registry import ModelVerifier, RegistryService
from modelport.settings import Settings
from modelport.store.artifacts import open_artifact_store
from modelport.store.database import Database
from modelport.store.home import prepare_home
from modelport.store.secrets import SecretBox, seal_plain_rows


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        prepare_home(settings.resolved_home)
        if not settings.dataiku_import_roots:  # the default import folder exists, ready for bundles to be dropped in
            (settings.resolved_home / "dataiku-imports").mkdir(exist_ok=True)
        self.secrets = SecretBox.for_home(settings.resolved_home, settings.secret_key)
        self.db = Database(settings.resolved_database_url)
        self.ledger = ServerLedger(self.db, home=settings.resolved_home, url=settings.base_url)
        self.recovery = Recovery()
        self.artifacts = open_artifact_store(settings.artifacts_location, settings.artifact_cache_dir,
                                             s3_endpoint_url=settings.s3_endpoint_url)
        self.auth = AuthService(self.db)
        self.access = Access(self.db)
        self.users = UserService(self.db, self.auth, self.access, forget_key=lambda key: self.sagemaker.forget_key(key))
        self.credentials = CredentialService(self.db, self.auth, forget_key=lambda key: self.sagemaker.forget_key(key))
        self.sessions = SessionService(self.db, ttl_s=settings.session_ttl_s)
        self.registry = RegistryService(self.db, self.artifacts, max_upload_bytes=settings.max_upload_bytes)
        self.pipelines = PipelineService(self.db, self.registry)
        self._verifier = ModelVerifier(self.registry, timeout_s=settings.model_check_timeout_s)
        self.registry.verifier = self._verifier
        self.environments = EnvironmentBuilder(settings.resolved_home / "envs")
        self.registry.environments = self.environments
        self.plane = ServingPlane(PlaneSettings(
            replica_start_timeout_s=settings.replica_start_timeout_s,
            cold_start_timeout_s=settings.cold_start_timeout_s,
            request_timeout_s=settings.request_timeout_s,
            autoscale_interval_s=settings.autoscale_interval_s,
        ), resolve_environment=self._environment_for)
        self.deployments = DeploymentService(self.db, self.registry, self.plane,
                                             default_idle_s=settings.scale_down_idle_s, access=self.access)
        self.inference_log = InferenceLogService(self.db, retention=settings.inference_log_retention,
                                                  max_per_second=settings.inference_log_max_per_second)
        self.jobs = JobService(
            self.db, self.artifacts, self.environments, settings.resolved_home, max_upload_bytes=settings.max_upload_bytes,
            limits=ArchiveLimits(settings.max_archive_entries, settings.max_archive_bytes, settings.max_compression_ratio),
            allow_second_schedules=settings.allow_second_schedules, run_history=settings.run_history,
            server_id=self.ledger.id, secrets=self.secrets)
        self.supervisor = RunSupervisor(self.jobs, self.auth, self.environments, settings.base_url,
                                        kill_grace_s=settings.kill_grace_s)
        self.scheduler = Scheduler(self.jobs, self.supervisor)
        self.sagemaker = SageMakerService(
            self.db, self.plane, settings.resolved_home / "sagemaker", account_id=settings.aws_account_id,
            file_roots=settings.sagemaker_file_roots, s3_endpoint_url=settings.s3_endpoint_url,
            max_artifact_bytes=settings.max_upload_bytes, secrets=self.secrets)
        self.dataiku = DataikuServices(
            self.db, self.plane, self.artifacts, settings.resolved_home / "dataiku",
            import_roots=settings.resolved_import_roots, max_bundle_bytes=settings.max_upload_bytes,
            limits=ArchiveLimits(settings.max_archive_entries, settings.max_archive_bytes, settings.max_compression_ratio),
            check_timeout_s=settings.model_check_timeout_s)
        self.craftai = CraftAiService(self.db, self.artifacts, self.environments, settings.resolved_home / "craftai",
                                      max_upload_bytes=settings.max_upload_bytes,
                                      allow_second_schedules=settings.allow_second_schedules, secrets=self.secrets)
        self.craftai_tokens = AccessTokens(settings.resolved_home / "craftai-signing.key")
        self._background: set[asyncio.Task[Any]] = set()

    def start(self) -> str | None:
        """Migrate the schema, end what an earlier run of this server left, install the first admin token (returned
        in plaintext once), start background work."""
        self.db.migrate()
        self.recovery = self.ledger.register()  # before this server starts any process of its own
        local.install(self.ledger)
        seal_plain_rows(self.db, self.secrets)
        admin_token = self.auth.bootstrap_admin(self.settings.admin_token)
        if admin_token is not None:
            path = self.settings.admin_token_file
            path.write_text(admin_token + "\n")
            path.chmod(0o600)
        self._verifier.start()
        return admin_token

    async def start_serving(self) -> None:
        """Start the data plane and bring back every deployment that was running (needs the event loop)."""
        self.plane.start()
        self.inference_log.start()
        await self.deployments.restore()
        for endpoint_id in await run_in_threadpool(self.sagemaker.endpoints_to_restore):
            # not InService until its replicas are back: SageMaker's own word for that is SystemUpdating
            await run_in_threadpool(self.sagemaker.set_status, endpoint_id, "SystemUpdating")
            self.sagemaker.spawn(self.sagemaker.provision(endpoint_id))
        await run_in_threadpool(self.dataiku.refresh_all)
        self.background(self.dataiku.restore())
        await self.supervisor.recover()
        self.jobs.start()
        self.scheduler.start()
        self.craftai.start()
        await self.craftai.restore()

    async def stop_serving(self) -> None:
        await self.craftai.stop()
        await self.scheduler.stop()
        await self.supervisor.shutdown()
        self.jobs.stop()
        await self.plane.close()
        await self.inference_log.stop()

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` after the request that started it has been answered (kept referenced until done)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _environment_for(self, variant: VariantSpec) -> str | None:
        """Python models with requirements run in a cached environment built for exactly those requirements."""
        requirements = sorted({r for step in variant.steps for m in step for r in m.requirements})
        if not requirements:
            return None
        return await run_in_threadpool(self.environments.python_for, requirements)

    def stop(self) -> None:
        self._verifier.stop()
        local.install(None)
        self.ledger.deregister()
        self.db.close()
