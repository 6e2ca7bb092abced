"""The core, assembled: database, artifact store and services, with their background workers."""

from __future__ import annotations

from modelport.services.auth import AuthService
from modelport.services.pipelines import PipelineService
from modelport.services.registry import ModelVerifier, RegistryService
from modelport.settings import Settings
from modelport.store.artifacts import ArtifactStore
from modelport.store.database import Database


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url)
        self.artifacts = ArtifactStore(settings.artifacts_dir)
        self.auth = AuthService(self.db)
        self.registry = RegistryService(self.db, self.artifacts, max_upload_bytes=settings.max_upload_bytes)
        self.pipelines = PipelineService(self.db, self.registry)
        self._verifier = ModelVerifier(self.registry, timeout_s=settings.model_check_timeout_s)
        self.registry.verifier = self._verifier

    def start(self) -> str | None:
        """Migrate the schema, install the first admin token (returned in plaintext once), start background work."""
        self.db.migrate()
        admin_token = self.auth.bootstrap_admin(self.settings.admin_token)
        if admin_token is not None:
            path = self.settings.admin_token_file
            path.write_text(admin_token + "\n")
            path.chmod(0o600)
        self._verifier.start()
        return admin_token

    def stop(self) -> None:
        self._verifier.stop()
        self.db.close()
