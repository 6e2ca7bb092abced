"""All configuration in one typed object: environment variables MODELPORT_*, CLI flags override them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    home: Path = Field(default=Path(".modelport"), description="Folder for the SQLite database and artifacts.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in home.")
    admin_token: str | None = Field(default=None, min_length=16, description="Admin token to install on first start "
                                    "(automation); at least 16 characters.")
    secret_key: str | None = Field(default=None, description="Key that seals secrets at rest (a Fernet key or a "
                                   "passphrase of 32+ characters); default: <home>/secret.key, created on first "
                                   "start (0600). Servers sharing a database must share it.")
    session_ttl_s: float = Field(default=8 * 3600.0, description="Lifetime of a console (dashboard) session.")
    public_url: str | None = Field(default=None, description="Base URL clients use; default http://host:port.")
    artifacts: str | None = Field(default=None, description="Where model and package artifacts live: a folder (a "
                                  "mount every server of a platform shares) or s3://bucket/prefix (with "
                                  "MODELPORT_S3_ENDPOINT_URL and the standard AWS credentials); default "
                                  "<home>/artifacts.")

    max_upload_bytes: int = Field(default=2 * 1024**3, description="Largest accepted upload (model, package).")
    max_json_bytes: int = Field(default=16 * 1024**2, description="Largest accepted JSON control-plane body.")
    model_check_timeout_s: float = Field(default=300.0, description="Time a model gets to load in its check.")
    replica_start_timeout_s: float = Field(default=300.0, description="Time a replica gets to load its models.")
    cold_start_timeout_s: float = Field(default=120.0, description="How long a request waits for a replica when a "
                                        "deployment has scaled to zero, before a 503.")
    request_timeout_s: float = Field(default=300.0, gt=0, description="Deadline of one inference request, from its "
                                     "first byte to its reply (reading the body, waiting for a replica, the model, "
                                     "writing the answer); past it the request gets a 504 and a replica stuck on "
                                     "the batch is replaced.")
    scale_down_idle_s: float = Field(default=300.0, description="Idle time before an autoscaled deployment sheds "
                                     "a replica (engine_config autoscale.scale_down_idle_s overrides).")
    autoscale_interval_s: float = Field(default=1.0, description="How often autoscaling looks at queues.")
    inference_log_retention: int = Field(default=10_000, description="Inference log records kept per pipeline "
                                         "version.")
    inference_log_max_per_second: int = Field(default=1000, ge=0, description="Inference log records written per "
                                              "deployment per second; faster traffic is sampled evenly (every k-th "
                                              "request) and the rest counted in modelport_inference_log_skipped. "
                                              "0 logs every request.")
    run_history: int = Field(default=100, description="Task runs (and their logs) kept per task.")
    drain_timeout_s: float = Field(default=10.0, ge=0, description="On SIGTERM, how long requests in flight get to "
                                   "finish (no new connection is accepted meanwhile) before replicas and runs stop.")
    kill_grace_s: float = Field(default=5.0, description="Time between SIGTERM and SIGKILL when a run is stopped.")
    allow_second_schedules: bool = Field(default=False, description="Also accept 6-field cron with seconds "
                                         "(for tests; the public API takes 5 fields).")
    aws_account_id: str = Field(default="000000000000", description="Account id in SageMaker ARNs (12 digits).")
    sagemaker_file_roots: list[Path] = Field(default_factory=list, description="Folders a file:// ModelDataUrl may "
                                             "read from (JSON list); none by default.")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint for s3:// ModelDataUrl "
                                        "and s3:// artifacts (credentials from the standard AWS settings).")
    dataiku_import_roots: list[Path] = Field(default_factory=list, description="Folders `importFromArchive?filePath=` "
                                             "may read bundles from (JSON list); default: <home>/dataiku-imports.")
    max_archive_entries: int = Field(default=10_000, description="Most files an uploaded ZIP may hold.")
    max_archive_bytes: int = Field(default=4 * 1024**3, description="Most bytes an uploaded ZIP may unpack to.")
    max_compression_ratio: float = Field(default=200.0, description="Highest unpacked/packed ratio before a ZIP is "
                                         "refused as a zip bomb.")

    @property
    def resolved_import_roots(self) -> list[Path]:
        roots = self.dataiku_import_roots or [self.resolved_home / "dataiku-imports"]
        return [root.expanduser().resolve() for root in roots]

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'modelport.db'}"

    @property
    def artifacts_location(self) -> str:
        return self.artifacts or str(self.resolved_home / "artifacts")

    @property
    def artifact_cache_dir(self) -> Path:
        """With a bucket, the blobs this server has used, kept locally."""
        return self.resolved_home / "artifact-cache"

    @property
    def admin_token_file(self) -> Path:
        return self.resolved_home / "admin-token"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
